"""The ``asr`` command: thin wrappers over the library, one subcommand each.

The library is imported inside each command, not at the top: ``asr --help`` and
``asr wer`` then start without loading torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from asr.core.errors import AsrError
from asr.search.hotwords import DEFAULT_BOOST, read_hotwords
from asr.search.options import METHODS, default
from asr.text.phones import PHONE_MAPS

# torch threads of `asr transcribe` / `evaluate`: one (docs/benchmarks.md, python -m asr.benchmarks.threads: as fast
# as one per core alone on these small networks, and many times faster beside other work)
DECODE_THREADS = 1


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe name (e.g. fsdd, custom) or path to a recipe.py")
    p.add_argument("--work-dir", help="where stage outputs go (default: data/<recipe>)")
    p.add_argument(
        "--corpus-dir", help="folder holding local corpus copies (default: $ASR_CORPORA; else the corpus is downloaded)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set features.n_mfcc=20 (repeatable)",
    )


def cmd_run(args) -> int:
    from asr.pipeline import recipe
    from asr.pipeline.runner import config_summary

    pipe = recipe.pipeline(args.recipe, args.work_dir, args.overrides, args.corpus_dir)
    if args.show_config:
        print(config_summary(pipe.config))
        return 0
    pipe.run(args.stage, args.stop_stage, force=args.force, nj=args.nj, threads=args.threads)
    return 0


def cmd_stages(args) -> int:
    from asr.corpora import pool
    from asr.pipeline import recipe

    pipe = recipe.pipeline(args.recipe, args.work_dir, args.overrides, args.corpus_dir)
    print(f"work dir: {pipe.work_dir}")
    for s, state, why in pipe.status():
        print(f"{s.number:>3}  {s.name:<12} {state:<8} {why}")
    print(pool.status(pipe.config["prepare"], pipe.out_dir("prepare")))
    return 0


def cmd_convert(args) -> int:
    from pathlib import Path

    from asr.data.manifest import check, load_data, write_kaldi_dir, write_manifest

    utts = load_data(args.src)
    check(utts, args.src, check_audio=not args.no_audio_check)
    if args.dst.endswith(".jsonl"):
        write_manifest(args.dst, utts)
    else:
        write_kaldi_dir(Path(args.dst), utts)
    print(f"{len(utts)} utterances: {args.src} -> {args.dst}")
    return 0


def _threads(text: str) -> int:
    n = int(text) if text.isdigit() else -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is no thread count: give 1, 2, ... (0: one per core)")
    return n


def _add_threads(p: argparse.ArgumentParser, default: int, what: str) -> None:
    p.add_argument("--threads", type=_threads, default=default, help=f"{what} (default {default}; 0: one per core)")


def _add_decoder_args(p: argparse.ArgumentParser) -> None:
    # defaults are DecodeOptions' own (shown by the help text); only what is given overrides them
    p.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="decoder (default: the one the recipe tuned, stored in an exported model file; for a "
        "train-stage model file lexicon_lm with --lm, else greedy); beam_lm: open vocabulary, "
        "lexicon-free with the unit n-gram",
    )
    p.add_argument(
        "--lm",
        help="the lm stage's output folder (e.g. data/fsdd/lm) or an ARPA file (words; "
        "units for beam_lm), instead of the LM an exported model file holds",
    )
    # the stored decoding's value, else DecodeOptions' default (named from the dataclass, not restated)
    for flag, kind, what in [
        ("lm_weight", float, "LM weight"),
        ("word_score", float, "score added per word"),
        ("beam_size", int, "hypotheses kept per frame"),
        ("beam_threshold", float, "pruning distance from the best hypothesis"),
        ("beam_size_token", int, "units tried per frame, the most likely first (0: all)"),
    ]:
        p.add_argument(f"--{flag.replace('_', '-')}", type=kind, help=f"{what} (default {default(flag)})")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="longer audio is decoded in chunks")
    p.add_argument(
        "--hotwords",
        metavar="FILE",
        help="words and phrases to recognise (names, terms): one a line, optionally followed by ' :BOOST'; words "
        "the model's lexicon lacks are added (lexicon decoders)",
    )
    p.add_argument(
        "--ensemble",
        metavar="MODEL",
        action="append",
        default=[],
        help="another model file of the same recipe (trained with another seed), repeatable: every model scores the "
        "word sequences each one's lexicon search proposes, the best wins (the time grows with their number)",
    )
    p.add_argument(
        "--hotword-boost",
        type=float,
        default=None,
        help=f"boost per word of a hotword line without one (default {DEFAULT_BOOST})",
    )


def _decoder_overrides(args) -> dict:
    """The decoding options given on the command line (those left out keep the model's or the defaults)."""
    given = {
        "method": args.method,
        "lm_weight": args.lm_weight,
        "word_score": args.word_score,
        "beam_size": args.beam_size,
        "beam_threshold": args.beam_threshold,
        "beam_size_token": args.beam_size_token,
    }
    return {k: v for k, v in given.items() if v is not None}


def _recognizer(args):
    from asr.recognize.recognizer import load_model

    return load_model(
        args.model,
        lm=args.lm,
        chunk_seconds=args.chunk_seconds,
        threads=args.threads,
        vad=getattr(args, "vad", True),
        hotwords=_hotwords(args),
        ensemble=args.ensemble,
        **_decoder_overrides(args),
    )


def _hotwords(args) -> list:
    """``--hotwords FILE`` (boosted by ``--hotword-boost`` where a line gives none)."""
    if args.hotwords is None:
        if args.hotword_boost is not None:
            raise AsrError("--hotword-boost needs --hotwords FILE")
        return []
    return read_hotwords(args.hotwords, DEFAULT_BOOST if args.hotword_boost is None else args.hotword_boost)


def _shown(path: str) -> str:
    """A path as text that can always be printed (undecodable bytes of a file name as \\xNN)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _stream(rec, args) -> int:
    """``asr transcribe MODEL --stream FILE|-``: partial and final lines as the audio arrives."""
    import json

    from asr.data.audio import live_audio
    from asr.serve.vosk import vosk_result

    rate, blocks = live_audio(args.audio[0], args.rate)
    stream = rec.stream(rate)
    shown = ""

    def final(t) -> None:
        if args.json:  # Vosk's messages
            print(json.dumps(vosk_result(t), ensure_ascii=False), flush=True)
        else:
            print(f"final\t{t.text}", flush=True)

    for block in blocks:
        update = stream.accept(block)
        for t in update.finished:
            final(t)
            shown = ""
        if update.text != shown:
            shown = update.text
            print(json.dumps({"partial": shown}, ensure_ascii=False) if args.json else f"partial\t{shown}", flush=True)
    for t in stream.finish():
        final(t)
    return 0


def cmd_transcribe(args) -> int:
    from asr.recognize.batch import expand, transcribe_all

    if args.stream:
        if len(args.audio) != 1:
            print("asr transcribe: error: --stream takes one source: a file, or - for standard input", file=sys.stderr)
            return 2
        try:
            return _stream(_recognizer(args), args)
        except AsrError as e:
            print(f"asr transcribe: error: {_shown(str(e))}", file=sys.stderr)
            return 1
    if args.output_dir is not None:
        from asr.core.fsutil import check_output_folder

        check_output_folder(args.output_dir, "--output-dir")
    elif args.skip_existing:
        print("asr transcribe: error: --skip-existing needs --output-dir (the outputs it looks for)", file=sys.stderr)
        return 2
    problems: list[str] = []
    inputs = expand(args.audio, problems)
    for problem in problems:
        print(f"asr transcribe: error: {_shown(problem)}", file=sys.stderr)
    names = dict(inputs)
    todo = [p for p, name in inputs if not (args.skip_existing and _written(args, name))]
    if len(todo) < len(inputs):
        print(f"asr transcribe: {len(inputs) - len(todo)} input(s) already transcribed, skipped", file=sys.stderr)
    failed = len(problems)
    for path, t, error in transcribe_all(lambda: _recognizer(args), todo, args.nj):
        if t is None:
            print(f"asr transcribe: error: {_shown(error)}", file=sys.stderr)
            failed += 1
            continue
        t.path = _shown(path)
        _write_transcript(t, path, names[path], args)
    return 1 if failed else 0


def _format(args) -> str | None:
    """``--format`` (``--json`` is ``json``); None: the default line ``path<TAB>text``."""
    return "json" if args.json else args.format


def _formats(args) -> list[str]:
    """The formats written into ``--output-dir`` (txt without ``--format``)."""
    from asr.text.formats import FORMATS

    fmt = _format(args)
    return list(FORMATS) if fmt == "all" else [fmt or "txt"]


def _written(args, name: str) -> bool:
    """Every output of ``name`` is in ``--output-dir`` already (``--skip-existing``)."""
    return all((Path(args.output_dir) / f"{name}.{f}").is_file() for f in _formats(args))


def _write_transcript(t, path: str, name: str, args) -> None:
    """One file's transcript: printed (a line of text, or ``--format``), or written into ``--output-dir``."""
    import json

    from asr.text.formats import render

    fmt = _format(args)
    if args.output_dir is None:
        if fmt is None:
            print(f"{path}\t{t.text}", flush=True)  # stdout writes a file name's original bytes back
        elif fmt == "json":
            print(json.dumps(t.to_dict(), ensure_ascii=False))
        else:
            print(render(t, fmt, Path(name).name), end="", flush=True)
        return
    from asr.core.fsutil import atomic_write_text

    for f in _formats(args):  # written last by atomic renames: a killed batch leaves whole files only
        out = Path(args.output_dir) / f"{name}.{f}"
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, render(t, f, Path(name).name))


def cmd_evaluate(args) -> int:
    from asr.core.fsutil import check_output_folder
    from asr.data.manifest import utterance_groups
    from asr.score.evaluate import evaluate
    from asr.score.report import write_report
    from asr.score.wer import compare, score

    if args.out is not None:
        check_output_folder(args.out, "--out")
    rec = _recognizer(args)
    ev = evaluate(rec, args.data, args.phone_map, not args.raw_references, args.nj, lambda: _recognizer(args))
    for warning in ev.warnings:
        print(f"asr evaluate: warning: {warning}", file=sys.stderr)
    for uid, why in ev.unread:
        print(f"asr evaluate: error: {uid}: {_shown(why)}", file=sys.stderr)
    other = None
    if args.compare is not None:
        from asr.core.layout import ReportDir
        from asr.core.textfiles import read_text

        theirs = read_text(ReportDir(Path(args.compare)).hyp)
        other = (str(args.compare), score(ev.refs, {u: theirs.get(u, "") for u in ev.refs}))
        print(f"%WER of {args.compare}: {100 * other[1].words.rate:.2f}")
        print(f"probability that this run improves on {args.compare}: {compare(ev.score, other[1]):.3f}")
    if args.out is not None:
        write_report(
            args.out,
            ev.score,
            {u.id: u.speaker for u in ev.utts},
            name=str(args.data),
            facts=[("model", str(args.model)), ("data", str(args.data)), ("decoding", rec.options.summary())],
            audio={u.id: u.audio for u in ev.utts},
            other=other,
            embed_audio=args.embed_audio,
            groups=utterance_groups(ev.utts),
        )
    print(ev.score.words.line("PER" if args.phone_map else "WER"))
    print(ev.score.chars.line("CER"))
    if ev.unread:
        print(
            f"asr evaluate: {len(ev.unread)} of {ev.total} utterances could not be read and were left out of the "
            "score (listed above)",
            file=sys.stderr,
        )
    if args.out is not None:
        print(
            f"report (a page: {Path(args.out) / 'index.html'}; hypotheses, alignments, per speaker, confusions, "
            f"sclite trn): {args.out}",
            file=sys.stderr,
        )
    else:
        print(
            "give --out DIR for a report (hypotheses, alignments, per speaker, confusions, sclite trn)", file=sys.stderr
        )
    return 1 if ev.unread else 0


def cmd_info(args) -> int:
    from asr.model.info import describe

    print(describe(args.model))
    return 0


def cmd_export(args) -> int:
    from asr.model.onnx_export import to_onnx

    meta = to_onnx(args.model, args.onnx)
    print(
        f"{args.onnx}: ONNX network ({meta['parameters']:,} parameters) with the units, features, CMVN"
        + (f", decoding {meta['decoding']['method']} and its LM files" if meta.get("decoding") else "")
        + f" of {args.model}; run it with `asr transcribe {args.onnx} FILE` (no torch needed)"
    )
    return 0


def cmd_serve(args) -> int:
    from asr.serve.launch import serve

    serve(
        args.model,
        args.host,
        args.port,
        args.workers,
        args.max_mb,
        args.max_seconds,
        args.lm,
        _decoder_overrides(args),
        args.chunk_seconds,
        args.timeout,
        args.max_connections,
        args.api_docs,
        _hotwords(args),
        args.ensemble,
    )
    return 0


def cmd_wer(args) -> int:
    from asr.core.fsutil import check_output_folder
    from asr.core.textfiles import read_text
    from asr.score.report import write_report
    from asr.score.wer import compare, score
    from asr.text.phones import fold_text
    from asr.text.written import as_written

    written = _written_by(args.model) if args.model else None

    def read(path):
        texts = read_text(path)
        if written is not None:
            texts = {k: as_written(v, written) for k, v in texts.items()}
        return {k: fold_text(v, args.phone_map) for k, v in texts.items()}

    refs = read(args.ref)
    if written is not None:
        changed = sum(refs[k] != fold_text(v, args.phone_map) for k, v in read_text(args.ref).items())
        print(
            f"asr wer: {changed} of {len(refs)} references (and the hypotheses) normalised as {args.model} writes its "
            "words (case, punctuation)",
            file=sys.stderr,
        )
    s = score(refs, read(args.hyp), args.missing_as_deletions, ref_name=args.ref, hyp_name=args.hyp)
    print(s.words.line("PER" if args.phone_map else "WER"))
    print(s.chars.line("CER"))
    if args.bootstrap:
        lo, hi = s.bootstrap()
        print(f"95% confidence interval of the WER: [{100 * lo:.2f}, {100 * hi:.2f}]")
    other = None
    if args.compare:
        other = score(refs, read(args.compare), args.missing_as_deletions, ref_name=args.ref, hyp_name=args.compare)
        print(f"%WER of {args.compare}: {100 * other.words.rate:.2f}")
        print(f"probability that {args.hyp} improves on {args.compare}: {compare(s, other):.3f}")
    if args.out is not None:
        check_output_folder(args.out, "--out")
        write_report(args.out, s, name=str(args.hyp), other=(str(args.compare), other) if other else None)
        print(f"report: {Path(args.out) / 'index.html'}", file=sys.stderr)
    return 0


def _written_by(model: str) -> set[str]:
    """The characters a model file's words hold (its network is not run)."""
    if model.endswith(".onnx"):
        from asr.model.onnxrt import load

        return load(model)[0].written_characters
    from asr.model.network import load

    return load(model).written_characters


def _add_phone_map(p) -> None:
    p.add_argument(
        "--phone-map",
        default="",
        choices=["", *PHONE_MAPS],
        help="phone transcripts: fold references and hypotheses first (timit39: TIMIT's 39 phones) "
        "and report the phone error rate",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr",
        description="Staged speech recognition: audio -> MFCC -> "
        "BiLSTM/GRU CTC -> decoding -> WER, every stage cached.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_stages(sub)
    _add_convert(sub)
    _add_transcribe(sub)
    _add_evaluate(sub)
    _add_info(sub)
    _add_export(sub)
    _add_serve(sub)
    _add_wer(sub)
    return parser


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a recipe's stages (skipping those already done)")
    _add_recipe_args(p)
    p.add_argument("--stage", help="first stage to run (number or name)")
    p.add_argument("--stop-stage", help="last stage to run (number or name)")
    p.add_argument("--force", action="store_true", help="re-run the selected stages even if up to date")
    p.add_argument("--nj", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument(
        "--threads",
        type=_threads,
        default=0,
        help="CPU threads of a stage's own computation (training); default 0: this machine's cores shared among "
        "the asr runs going on when the stage starts",
    )
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_run)


def _add_stages(sub) -> None:
    p = sub.add_parser("stages", help="list a recipe's stages as done, stale (and why) or missing")
    _add_recipe_args(p)
    p.set_defaults(func=cmd_stages)


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert between a JSONL manifest and a Kaldi data directory (validating every entry)"
    )
    p.add_argument("src", help="a .jsonl manifest or a Kaldi data directory")
    p.add_argument("dst", help="a .jsonl path, or a directory to write Kaldi files into")
    p.add_argument("--no-audio-check", action="store_true", help="do not check that audio files exist")
    p.set_defaults(func=cmd_convert)


def _add_transcribe(sub) -> None:
    p = sub.add_parser("transcribe", help="print the text of audio files (any format, rate, channels)")
    p.add_argument("model", help="a model file (e.g. data/fsdd/model.pt)")
    p.add_argument(
        "audio",
        nargs="+",
        help="audio files, folders (their audio files, recursively) and @list.txt files (an input a line); with "
        "--stream: one file, or - for standard input",
    )
    p.add_argument("--json", action="store_true", help="print path, text and word times (seconds) as JSON")
    p.add_argument(
        "--stream",
        action="store_true",
        help="transcribe as the audio arrives (a streaming model), printing partial and final lines; - reads "
        "standard input, WAV or raw 16-bit little-endian mono PCM (arecord -f S16_LE -r 16000 | asr transcribe "
        "MODEL --stream -)",
    )
    p.add_argument("--rate", type=int, default=16_000, help="the sample rate of raw PCM on standard input")
    p.add_argument(
        "--format",
        choices=("txt", "json", "srt", "vtt", "tsv", "ctm", "all"),
        help="print (or with --output-dir write) each file's transcript as text, JSON with segments and word times, "
        "SRT or WebVTT subtitles, whisper's TSV, or sclite's CTM; all: every one (default: a line 'path<TAB>text')",
    )
    p.add_argument("--output-dir", help="write one file per input and format, named after the input (a.wav: a.srt)")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="with --output-dir: leave out the inputs whose outputs are there already (resume a batch)",
    )
    p.add_argument("--nj", type=int, default=1, help="worker processes decoding files in parallel (default 1)")
    p.add_argument(
        "--no-vad",
        dest="vad",
        action="store_false",
        help="cut a recording longer than --chunk-seconds into fixed chunks instead of at the pauses a voice "
        "activity detector finds",
    )
    _add_threads(p, DECODE_THREADS, "CPU threads for the network")
    _add_decoder_args(p)
    p.set_defaults(func=cmd_transcribe)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="decode and score a JSONL manifest or Kaldi data directory")
    p.add_argument("model", help="a model file")
    p.add_argument("data", help="a .jsonl manifest or a Kaldi data directory")
    p.add_argument(
        "--out",
        help="write the decode report into this folder (hypotheses, alignments, speakers, "
        "sclite trn, and the page index.html); without it, only the scores are printed",
    )
    p.add_argument(
        "--compare",
        metavar="DIR",
        help="another run's report folder (its hyp.txt) on the same data: the page shows the paired comparison",
    )
    p.add_argument(
        "--embed-audio",
        action="store_true",
        help="put each recording in the page (Ogg Opus, about 2 kB a second) instead of linking it: a page to share",
    )
    p.add_argument(
        "--raw-references",
        action="store_true",
        help="score the references as given (default: in the form the model writes: its case, its punctuation)",
    )
    p.add_argument(
        "--nj", type=int, default=1, help="worker processes decoding utterances in parallel (default 1), with progress"
    )
    _add_phone_map(p)
    _add_threads(p, DECODE_THREADS, "CPU threads for the network")
    _add_decoder_args(p)
    p.set_defaults(func=cmd_evaluate)


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="what a model file holds: network, units, features, decoding, training, results")
    p.add_argument("model", help="a model file (e.g. data/fsdd/model.pt)")
    p.set_defaults(func=cmd_info)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a model file as ONNX (runs with onnxruntime, without torch)")
    p.add_argument("model", help="a model file (e.g. data/fsdd/model.pt)")
    p.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    p.set_defaults(func=cmd_export)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="an HTTP transcription service (OpenAI-compatible endpoint) and a web page")
    p.add_argument("model", help="a model file (e.g. data/fsdd/model.pt, or an .onnx export)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one, printed)")
    p.add_argument("--workers", type=int, default=1, help="processes, each with the model loaded (default 1)")
    p.add_argument("--max-mb", type=float, default=25.0, help="largest upload accepted (default 25 MB)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest audio accepted (default 600 s)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="a connection whose request headers, or a request whose body, stop arriving this long gets a 408; "
        "a stream without a message this long is closed (default 30 s)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="open transcription requests and streams per worker before new ones get a 503 or a close 1013 "
        "(default 64; /health is always answered)",
    )
    p.add_argument("--api-docs", action="store_true", help="also serve the API's pages /docs and /openapi.json")
    _add_decoder_args(p)
    p.set_defaults(func=cmd_serve)


def _add_wer(sub) -> None:
    p = sub.add_parser("wer", help="score Kaldi-style text files (utt-id word word ...)")
    p.add_argument("ref", help="reference text file")
    p.add_argument("hyp", help="hypothesis text file")
    p.add_argument(
        "--missing-as-deletions",
        action="store_true",
        help="count references without a hypothesis as deleted instead of failing",
    )
    p.add_argument("--bootstrap", action="store_true", help="add a 95%% bootstrap confidence interval")
    p.add_argument(
        "--model",
        help="a model file: references and hypotheses put in the form it writes its words (case, punctuation), as "
        "its recipe scored them",
    )
    _add_phone_map(p)
    p.add_argument("--compare", metavar="HYP2", help="probability that HYP improves on HYP2 (paired bootstrap)")
    p.add_argument("--out", help="write the report and its page (index.html; with --compare, the comparison) here")
    p.set_defaults(func=cmd_wer)


def _configure_logging(command: str) -> None:
    """The library logs (``logging.getLogger("asr....")``); the command shows its progress (INFO: stage lines,
    training) on stdout and its warnings on stderr, as the command's own lines."""
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter(f"asr {command}: %(message)s"))
    logging.getLogger().handlers[:] = [err]
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    out.setFormatter(logging.Formatter("%(message)s"))
    package = logging.getLogger("asr")
    package.setLevel(logging.INFO)
    package.handlers[:] = [out]


def main(argv: list[str] | None = None) -> int:
    # stage logs appear as they happen, also through a pipe; a file name that is not valid UTF-8
    # (given on the command line, so held as surrogates) is written back as its original bytes
    sys.stdout.reconfigure(line_buffering=True, errors="surrogateescape")
    args = build_parser().parse_args(argv)
    _configure_logging(args.command)
    try:
        return args.func(args)
    except AsrError as e:
        print(f"asr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`asr ... | head`): not an error of ours
        sys.stdout = None
        return 141
    except OSError as e:  # a path the system refused (no such folder, no permission, disk full): name it
        where = f"{e.filename}: " if e.filename else ""
        print(
            f"asr {args.command}: error: {where}{e.strerror or e} (check the path, its permissions and the free space)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted; finished stages are kept, re-run to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
