"""What a model file holds, as ``asr info`` prints it (a ``.pt`` or an ONNX export)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from asr.core.layout import LmDir
from asr.model import onnxrt
from asr.model.modelfile import ModelFile
from asr.model.network import Network, load

_GENERAL = LmDir(Path()).general.name  # lm.general's model among an exported file's LM files
_LEXICON = LmDir(Path()).lexicon.name


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
    if files.get(_LEXICON):
        entries = [line.split(maxsplit=1)[0] for line in files[_LEXICON].splitlines() if line.strip()]
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
        Network(model)  # its weights built and run once (ModelFile.check_network), as transcribing would
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
