"""A model a user can ship: one file that holds everything ``asr.load_model`` needs.

The ``export`` stage adds to the train stage's model file the decoding the recipe tuned
on dev (method, beam, LM weight, word score, mixing weight), the lexicon and language
models that decoding reads (as text), the training summary and the scored results, and
copies it to ``data/<recipe>/model.pt`` beside ``RESULTS.md``. It is plain data: it loads
with ``torch.load(..., weights_only=True)``. :func:`to_onnx` writes the network as ONNX with
the rest in its metadata, for :mod:`asr.model.onnxrt`; :func:`describe` is ``asr info``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from asr.core.context import StageContext
from asr.core.errors import AsrError
from asr.core.fsutil import check_output_file
from asr.core.layout import RECORD, DecodeDir, ExportDir, LmDir, TrainDir
from asr.core.provenance import git_commit
from asr.model import onnxrt
from asr.model.modelfile import OPTIONAL_LM_FILES, ModelFile, needed_lm_files, stored_options
from asr.model.network import AcousticModel, build_from_checkpoint, length_reversal, load, read_checkpoint
from asr.search.options import DecodeOptions

_GENERAL = LmDir(Path()).general.name  # lm.general's model among an exported file's LM files

VERSION = 1  # of the export stage's output: bump when what the shipped file holds changes


@dataclass(frozen=True)
class ExportConfig:
    """The ``export`` stage's config section: nothing to choose yet (everything comes from the stages before)."""


def lm_files(options: DecodeOptions, lm_dir: Path | None) -> dict[str, str]:
    """The lm stage's files a decoding reads, by file name, as text (none for greedy and beam)."""
    names = needed_lm_files(options)
    if not names:
        return {}
    if lm_dir is None:
        raise AsrError(f"decoding {options.method!r} needs the lm stage's output, and there is none")
    paths = [Path(lm_dir) / name for name in names if name not in OPTIONAL_LM_FILES or (Path(lm_dir) / name).is_file()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise AsrError(f"the decoding {options.method!r} needs {', '.join(missing)}, which the lm stage did not write")
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


def bundle(model_path: Path, lm_dir: Path | None, settings: dict, results: dict, training: dict) -> dict:
    """The shipped model: the trained model file plus decoding, LM files, training summary and results."""
    ckpt = read_checkpoint(model_path)
    options = stored_options({"decoding": settings}, "the decode stage's settings")
    ckpt["decoding"] = {**dataclasses.asdict(options), "tuned_on": settings.get("tuned_on", [])}
    ckpt["lm_files"] = lm_files(options, lm_dir)
    ckpt["training"] = training
    ckpt["results"] = results
    ckpt["git_commit"] = git_commit()
    return ckpt


def stage(ctx: StageContext) -> dict:
    """The ``export`` stage: write ``model.pt`` (copied to the work directory) with the tuned decoding."""
    settings = json.loads(DecodeDir(ctx.inputs["decode"]).settings.read_text())
    results = json.loads((Path(ctx.inputs["score"]) / RECORD).read_text()).get("metrics", {})
    summary = TrainDir(ctx.inputs["train"]).summary
    training = json.loads(summary.read_text()) if summary.is_file() else {}
    ckpt = bundle(TrainDir(ctx.inputs["train"]).model, ctx.inputs.get("lm"), settings, results, training)
    out = ExportDir(ctx.out).model
    torch.save(ckpt, out)
    ctx.log(f"export: {out.name} with decoding {stored_options(ckpt).summary()}, {out.stat().st_size / 1e6:.1f} MB")
    return {"method": settings["method"], "bytes": out.stat().st_size, "lm_files": sorted(ckpt["lm_files"])}


def _network_line(model: ModelFile, params: int) -> str:
    m = model.config
    inter_units = {"char": "character", "phone": "phone"}.get((model.inter_tokenizer or {}).get("type"), "")
    return (
        f"network: {m.rnn.upper()} {m.num_layers}x{m.hidden}{' bidirectional' if m.bidirectional else ''}"
        f"{', projection ' + str(m.proj) if m.proj else ''}, "
        + (
            f"after 2 convolutions of {m.conv} channels (x{m.stack} in time), "
            if m.conv
            else f"x{m.stack} frame stacking, "
        )
        + f"dropout {m.dropout}"
        + (
            f", intermediate CTC after layer {m.inter_ctc}"
            + (f" over {m.inter_vocab} {inter_units or 'other'} units" if m.inter_vocab else "")
            + " (training only)"
            if m.inter_ctc
            else ""
        )
        + f"; {params:,} parameters"
    )


def _units_and_features_lines(model: ModelFile) -> list[str]:
    tok, f = model.data["tokenizer"], model.features
    kind = {
        "char": "characters (blank and word separator included)",
        "sentencepiece": "sentencepiece subwords (blank included)",
        "phone": "phones (blank and word separator included)"
        if model.spells_words_in_phones
        else "phones (blank included)",
    }.get(tok.get("type"), tok.get("type"))
    features = f"{f.n_mels} log-mel" if f.kind == "fbank" else f"{f.n_mfcc} MFCC"
    lines = [
        f"units: {len(model.tokenizer.units)} {kind}",
        f"features: {features}{' + deltas' * min(1, f.deltas)}{' + delta-deltas' if f.deltas == 2 else ''} "
        f"({model.input_dim} per frame) at {f.sample_rate} Hz, {f.win_ms} ms windows every "
        f"{f.hop_ms} ms; CMVN {model.cmvn.kind}",
    ]
    m = model.config
    if m.streaming:
        step = f.hop_ms * m.stack
        c, r = m.chunk * step, m.right_context * step
        lines.append(
            f"streaming: chunks of {m.chunk} steps ({c:g} ms) read with {m.right_context} steps "
            f"({r:g} ms) of right context: {c + r:g} ms latency (asr transcribe --stream, asr serve's /v1/stream)"
        )
    return lines


def _decoding_lines(model: ModelFile) -> list[str]:
    options = model.tuned
    if options is None:
        return ["decoding: none stored (a train-stage model file): greedy unless --method/--lm say otherwise"]
    tuned = model.tuned_on
    lines = [f"decoding: {options.summary()}" + (f"; tuned on {', '.join(tuned)}" if tuned else "")]
    files = model.lm_files
    if files:
        lines.append(
            "embedded LM files: " + ", ".join(f"{n} ({len(t.encode()) / 1e3:.1f} kB)" for n, t in sorted(files.items()))
        )
    if files.get("lexicon.txt"):
        entries = [line.split(maxsplit=1)[0] for line in files["lexicon.txt"].splitlines() if line.strip()]
        spelled = "pronunciations" if model.is_phone_model else "spellings"
        lines.append(f"lexicon: {len(set(entries)):,} words, {len(entries):,} {spelled}")
    if files.get(_GENERAL):  # lm.general: its ARPA header's counts
        counts = re.findall(r"^ngram (\d+)=(\d+)$", files[_GENERAL][:1000], re.MULTILINE)
        lines.append(
            "general LM: "
            + ", ".join(f"{int(c):,} {n}-grams" for n, c in counts)
            + f" over the lexicon, mixed with the in-domain n-gram (its share {options.mix_weight})"
        )
    return lines


def _training_lines(model: ModelFile) -> list[str]:
    training, cfg, chosen = model.training, model.train_config, model.data.get("chosen")
    lines = []
    if training or cfg:
        sched = training.get("schedule") or {}
        lines.append(
            f"training: sets {', '.join(cfg.get('train_sets', [])) or '?'}"
            + (f", {training['train_utterances']} utterances" if "train_utterances" in training else "")
            + (f", {sched['hours']:.2f} h of audio" if "hours" in sched else "")
            + (f", {training['updates']} updates" if "updates" in training else "")
            + (f"; kept {training.get('chosen') or chosen}" if training or chosen else "")
        )
        if "dev_wer" in training:
            lines.append(
                f"dev ({', '.join(cfg.get('dev_sets', []))}): greedy WER {100 * training['dev_wer']:.2f}%, "
                f"CER {100 * training['dev_cer']:.2f}%"
            )
    for name, r in model.results.items():
        ci = r.get("wer_ci")
        lines.append(
            f"result {name}: WER {100 * r['wer']:.2f}%"
            + (f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else "")
            + f", CER {100 * r['cer']:.2f}%, greedy {'PER' if r.get('greedy_units') == 'phones' else 'WER'} "
            f"{100 * r['greedy_wer']:.2f}% "
            f"({r.get('utterances')} utterances)"
        )
    return lines


def describe(path: str | Path) -> str:
    """What a model file holds, as ``asr info`` prints it."""
    if str(path).endswith(".onnx"):
        model = onnxrt.load(path)[0]
        params = model.data.get("parameters", 0)
    else:
        model = load(path)
        params = sum(v.numel() for v in model.data["state_dict"].values() if isinstance(v, torch.Tensor))
    return "\n".join(
        [
            f"model file: {path}",
            _network_line(model, params),
            *_units_and_features_lines(model),
            *_decoding_lines(model),
            *_training_lines(model),
            f"git commit: {model.data.get('git_commit') or 'not recorded'}",
        ]
    )


# --- ONNX -------------------------------------------------------------------------------------------


class _Unrolled(torch.nn.Module):
    """The network with one single-layer, one-direction RNN per layer and direction (ONNX's LSTM/GRU op),
    each reverse direction fed every utterance reversed within its own length, as :class:`AcousticModel`
    does on the CPU, so padded batches of any lengths give each utterance's own result."""

    def __init__(self, model: AcousticModel):
        super().__init__()
        cfg, rnn = model.cfg, model.rnn
        if cfg.proj:
            raise AsrError(
                "ONNX export of LSTM projections is not supported (ONNX's LSTM has none); "
                "train with train.model.proj=0 to export"
            )
        self.cfg, self.output, self.front = cfg, model.output, model.front
        cls = torch.nn.LSTM if cfg.rnn == "lstm" else torch.nn.GRU
        self.cells = torch.nn.ModuleList()
        for layer in range(cfg.num_layers):
            for suffix in ["", "_reverse"][: 2 if cfg.bidirectional else 1]:
                inp = getattr(rnn, f"weight_ih_l{layer}{suffix}").shape[1]
                cell = cls(inp, cfg.hidden, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, f"{name}_l0").data.copy_(getattr(rnn, f"{name}_l{layer}{suffix}").data)
                self.cells.append(cell)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = feats.shape
        s = self.cfg.stack
        if self.front is not None:
            x = self.front(feats, lengths)
        else:
            feats = feats * (torch.arange(t)[None, :, None] < lengths[:, None, None]).to(feats.dtype)
            pad = (s - t % s) % s
            feats = torch.cat([feats, feats.new_zeros(b, pad, d)], dim=1)
            x = feats.reshape(b, -1, d * s)
        out_lengths = torch.div(lengths + s - 1, s, rounding_mode="floor")
        valid, reverse = length_reversal(out_lengths, x.shape[1])
        dirs = 2 if self.cfg.bidirectional else 1
        h = x
        for layer in range(self.cfg.num_layers):
            outs = []
            for k in range(dirs):
                cell = self.cells[layer * dirs + k]
                outs.append(reverse(cell(reverse(h))[0]) if k else cell(h)[0])
            h = torch.cat(outs, dim=-1) if dirs > 1 else outs[0]
        return self.output(h * valid.to(h.dtype)).log_softmax(dim=-1), out_lengths


class _StreamStep(_Unrolled):
    """A streaming model's chunk step (:meth:`AcousticModel.step`) as one graph: ``window`` ``(1, T, D * stack)``
    whose first ``n_main`` steps are the chunk and the rest its right context, ``n_valid`` of the ``T`` steps
    real (the runtime appends at least one padding step, so the context is never empty), and the forward
    directions' states ``h0``, ``c0`` ``(layers, 1, hidden)`` (``c0`` passes through a GRU) -> the chunk's
    ``(n_main, V)`` log-probabilities and the states after it."""

    def forward(self, window, n_main, n_valid, h0, c0):
        steps = window.shape[1]
        main_idx = torch.arange(n_main[0])
        ctx_idx = torch.arange(n_main[0], steps)
        _, reverse = length_reversal(n_valid, steps)
        dirs, lstm = 2 if self.cfg.bidirectional else 1, self.cfg.rnn == "lstm"
        h, hs, cs = window, [], []
        for layer in range(self.cfg.num_layers):
            fwd = self.cells[layer * dirs]
            state = (h0[layer : layer + 1], c0[layer : layer + 1]) if lstm else h0[layer : layer + 1]
            y_main, after = fwd(h.index_select(1, main_idx), state)
            y_ctx, _ = fwd(h.index_select(1, ctx_idx), after)
            hs.append(after[0] if lstm else after)
            cs.append(after[1] if lstm else c0[layer : layer + 1])
            outs = [torch.cat([y_main, y_ctx], 1)]
            if dirs > 1:
                outs.append(reverse(self.cells[layer * dirs + 1](reverse(h))[0]))
            h = torch.cat(outs, -1) if dirs > 1 else outs[0]
        log_probs = self.output(h[0].index_select(0, main_idx)).log_softmax(dim=-1)
        return log_probs, torch.cat(hs), torch.cat(cs)


def _export_offline(network: _Unrolled, ckpt: dict, tmp: Path) -> None:
    feats = torch.randn(2, 23, ckpt["input_dim"])
    torch.onnx.export(
        network,
        (feats, torch.tensor([23, 11])),
        str(tmp),
        dynamo=False,
        opset_version=17,
        input_names=["feats", "lengths"],
        output_names=["log_probs", "out_lengths"],
        dynamic_axes={
            "feats": {0: "batch", 1: "time"},
            "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "steps"},
            "out_lengths": {0: "batch"},
        },
    )


def _export_stream_step(network: _StreamStep, ckpt: dict, tmp: Path) -> None:
    cfg = network.cfg
    width = ckpt["input_dim"] * cfg.stack
    state = torch.zeros(cfg.num_layers, 1, cfg.hidden)
    args = (torch.randn(1, 9, width), torch.tensor([4]), torch.tensor([7]), state, state)
    torch.onnx.export(
        network,
        args,
        str(tmp),
        dynamo=False,
        opset_version=17,
        input_names=["window", "n_main", "n_valid", "h0", "c0"],
        output_names=["log_probs", "h", "c"],
        dynamic_axes={"window": {1: "steps"}, "log_probs": {0: "chunk"}},
    )


def to_onnx(model_path: str | Path, out: str | Path) -> dict:
    """Write a model file's network as ONNX (dynamic batch and time axes) with the rest of the file
    (units, features, CMVN, decoding, LM files, training summary, results) in its metadata.

    Returns:
        the metadata written (see :mod:`asr.model.onnxrt`).
    """
    out = check_output_file(out, "--onnx")
    ckpt = load(model_path).data
    model = build_from_checkpoint(ckpt, str(model_path))
    network = (_StreamStep if model.cfg.streaming else _Unrolled)(model).eval()
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation; it does the job
            warnings.simplefilter("ignore")
            # a streaming model: its chunk step, the states as inputs and outputs
            (_export_stream_step if model.cfg.streaming else _export_offline)(network, ckpt, tmp)
        meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
        meta["parameters"] = sum(v.numel() for v in ckpt["state_dict"].values())
        graph = onnx.load(str(tmp))
        graph.metadata_props.add(key=onnxrt.META_KEY, value=json.dumps(meta))
        onnx.save(graph, str(tmp))
        os.replace(tmp, check_output_file(out, "--onnx"))  # checked again: it may have changed meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return meta
