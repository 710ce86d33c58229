"""The acoustic model's shape, as plain data (no torch): what the train config sets and a model file holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    """The acoustic model's shape (the ``model`` part of the train config)."""

    rnn: Literal["lstm", "gru"] = "lstm"
    bidirectional: bool = True
    num_layers: int = 3
    hidden: int = 256  # units per direction
    proj: int = 0  # LSTM output projection size (0: none); ignored for GRU
    dropout: float = 0.1  # between RNN layers and before the output layer
    stack: int = 1  # frames stacked per step: x1, x2 or x3 subsampling before the RNN
    # streaming, a latency-controlled BiLSTM/BiGRU (Zhang et al. 2016): 0 (the default) is the offline model, whose
    # backward direction reads the whole utterance; N > 0: the backward direction of every layer reads chunks of N
    # RNN steps plus ``right_context`` steps after them, the forward direction carries its state from chunk to
    # chunk. Training runs the same chunked computation as streaming, so both give the same outputs.
    chunk: int = 0
    right_context: int = 0
    # a convolutional front end (DeepSpeech2, ESPnet's VGG-BLSTM): N > 0 channels of two 2-D convolutions over
    # (time, feature), before the RNN; the first strides `stack` steps in time (the subsampling), both halve the
    # feature axis. Meant for log-mel input without deltas (features.kind=fbank, features.deltas=0). 0: none
    conv: int = 0
    # intermediate CTC (Lee & Watanabe 2021, InterCTC): N > 0 puts a second linear CTC layer, over the same units,
    # on the output of RNN layer N (of num_layers); training adds its CTC loss (train.inter_ctc_weight), so the
    # lower layers must already tell the units apart. Decoding reads the top layer only. 0: none
    inter_ctc: int = 0
    # the intermediate layer's unit count when its units are not the model's (train.inter_units: phones below
    # characters, as in hierarchical multi-task CTC, or the reverse); 0: the model's own units
    inter_vocab: int = 0

    def __post_init__(self):
        if self.rnn not in ("lstm", "gru"):
            raise ValueError(f"rnn must be 'lstm' or 'gru', got {self.rnn!r}")
        if self.stack not in (1, 2, 3):
            raise ValueError(f"stack must be 1, 2 or 3, got {self.stack}")
        if self.proj and (self.rnn != "lstm" or self.proj >= self.hidden):
            raise ValueError("proj needs rnn=lstm and proj < hidden")
        if self.num_layers < 1 or self.hidden < 1:
            raise ValueError("num_layers and hidden must be positive")
        if self.chunk < 0 or self.right_context < 0 or (self.right_context and not self.chunk):
            raise ValueError(
                f"chunk and right_context are RNN steps >= 0, right_context only with a chunk; got chunk "
                f"{self.chunk}, right_context {self.right_context}"
            )
        if self.chunk and self.proj:
            raise ValueError("a streaming model (chunk > 0) has no LSTM projection: set proj=0")
        if self.conv < 0 or (self.conv and self.chunk):
            raise ValueError(
                f"conv is a channel count >= 0, and a streaming model (chunk > 0) has none; got {self.conv}"
            )
        if not 0 <= self.inter_ctc < self.num_layers or (self.inter_ctc and self.proj):
            raise ValueError(
                f"inter_ctc is an RNN layer below the top (0 < N < num_layers={self.num_layers}), in a model without "
                f"an LSTM projection; got {self.inter_ctc}"
            )
        if self.inter_vocab < 0 or (self.inter_vocab and not self.inter_ctc):
            raise ValueError(f"inter_vocab is a unit count >= 0, for a model with inter_ctc; got {self.inter_vocab}")

    @property
    def streaming(self) -> bool:
        return self.chunk > 0
