"""FSDD with a streaming model: the fsdd recipe's data, stages and settings, the network latency-controlled.

    asr run fsdd_stream [--corpus-dir DIR] [--stage N] [--stop-stage M] [--set key=value ...]

The BiLSTM's backward direction reads chunks of 6 RNN steps (x3 stacked 10 ms frames: 180 ms) plus 5 steps
(150 ms) of right context, its forward direction carries its state across chunks; the features are causal
(no floor below the utterance's loudest frame, online CMVN), so ``asr transcribe --stream`` and ``asr serve``'s
``/v1/stream`` give partial text while the audio arrives, and the same final text as the decode stage. The
exported model is ``data/fsdd_stream/model.pt``; docs/streaming.md compares it with the offline fsdd model.
"""

import dataclasses

from asr.pipeline.recipe import load

fsdd = load("fsdd")

STAGES = fsdd.STAGES

_train = fsdd.CONFIG["train"]
CONFIG = {
    **fsdd.CONFIG,
    "features": dataclasses.replace(fsdd.CONFIG["features"], cmvn="online", top_db=0.0),
    "train": dataclasses.replace(_train, model=dataclasses.replace(_train.model, chunk=6, right_context=5)),
}
