"""The acoustic model and its file: the network (torch), its config, the model-file object every reader asks,
the ONNX runtime and export, ``asr info`` and the export stage."""
