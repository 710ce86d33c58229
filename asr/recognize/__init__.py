"""Recognition with a model file: the recognizer behind ``asr.load_model`` and live streams."""
