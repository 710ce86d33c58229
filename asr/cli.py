"""The ``asr`` command: thin wrappers over the library, one subcommand each."""

from __future__ import annotations

import argparse
import sys

from asr.errors import AsrError


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe name (e.g. fsdd, custom) or path to a recipe.py")
    p.add_argument("--work-dir", help="where stage outputs go (default: data/<recipe>)")
    p.add_argument("--corpus-dir", help="folder holding local corpus copies (default: $ASR_CORPORA; "
                                        "else the corpus is downloaded)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set features.n_mfcc=20 (repeatable)")


def cmd_run(args) -> int:
    from asr import recipe
    from asr.stages import config_summary

    pipe = recipe.pipeline(args.recipe, args.work_dir, args.overrides, args.corpus_dir)
    if args.show_config:
        print(config_summary(pipe.config))
        return 0
    pipe.run(args.stage, args.stop_stage, force=args.force, nj=args.nj)
    return 0


def cmd_stages(args) -> int:
    from asr import recipe

    pipe = recipe.pipeline(args.recipe, args.work_dir, args.overrides, args.corpus_dir)
    print(f"work dir: {pipe.work_dir}")
    for s, state, why in pipe.status():
        print(f"{s.number:>3}  {s.name:<12} {state:<8} {why}")
    return 0


def cmd_convert(args) -> int:
    from pathlib import Path

    from asr.manifest import check, load_data, write_kaldi_dir, write_manifest

    utts = load_data(args.src)
    check(utts, args.src, check_audio=not args.no_audio_check)
    if args.dst.endswith(".jsonl"):
        write_manifest(args.dst, utts)
    else:
        write_kaldi_dir(Path(args.dst), utts)
    print(f"{len(utts)} utterances: {args.src} -> {args.dst}")
    return 0


def _add_decoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=["greedy", "beam", "lexicon", "lexicon_lm"], default=None,
                   help="decoder (default: lexicon_lm with --lm, else greedy)")
    p.add_argument("--lm", help="the lm stage's output folder (e.g. data/fsdd/lm) or an ARPA file")
    p.add_argument("--lm-weight", type=float, default=1.0)
    p.add_argument("--word-score", type=float, default=0.0)
    p.add_argument("--beam-size", type=int, default=16)
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="longer audio is decoded in chunks")


def _recognizer(args):
    from asr.transcribe import load_model

    method = args.method or ("lexicon_lm" if args.lm else "greedy")
    return load_model(args.model, method=method, lm=args.lm, beam_size=args.beam_size, lm_weight=args.lm_weight,
                      word_score=args.word_score, chunk_seconds=args.chunk_seconds)


def cmd_transcribe(args) -> int:
    import json

    rec = _recognizer(args)
    failed = 0
    for path in args.audio:
        try:
            t = rec.transcribe(path)
        except AsrError as e:
            print(f"asr transcribe: error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(t.to_dict()) if args.json else f"{path}\t{t.text}", flush=True)
    return 1 if failed else 0


def cmd_evaluate(args) -> int:
    import tempfile

    from asr.features import load_utterance
    from asr.manifest import check, load_data
    from asr.scoring import score, write_report

    rec = _recognizer(args)
    utts = load_data(args.data)
    check(utts, args.data)
    hyps = {}
    for u in utts:
        hyps[u.id] = rec.transcribe(load_utterance(u, rec.sample_rate), rec.sample_rate).text
    s = score({u.id: u.text for u in utts}, hyps)
    out = args.out or tempfile.mkdtemp(prefix="asr-evaluate-")
    write_report(out, s, {u.id: u.speaker for u in utts}, name=str(args.data))
    print(s.words.line("WER"))
    print(s.chars.line("CER"))
    print(f"report (hypotheses, alignments, per speaker, confusions, sclite trn): {out}", file=sys.stderr)
    return 0


def cmd_wer(args) -> int:
    from asr.scoring import compare, read_text, score

    refs = read_text(args.ref)
    s = score(refs, read_text(args.hyp), args.missing_as_deletions, ref_name=args.ref, hyp_name=args.hyp)
    print(s.words.line("WER"))
    print(s.chars.line("CER"))
    if args.bootstrap:
        lo, hi = s.bootstrap()
        print(f"95% confidence interval of the WER: [{100 * lo:.2f}, {100 * hi:.2f}]")
    if args.compare:
        other = score(refs, read_text(args.compare), args.missing_as_deletions, ref_name=args.ref,
                      hyp_name=args.compare)
        print(f"%WER of {args.compare}: {100 * other.words.rate:.2f}")
        print(f"probability that {args.hyp} improves on {args.compare}: {compare(s, other):.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Staged speech recognition: audio -> MFCC -> "
                                     "BiLSTM/GRU CTC -> decoding -> WER, every stage cached.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a recipe's stages (skipping those already done)")
    _add_recipe_args(p)
    p.add_argument("--stage", help="first stage to run (number or name)")
    p.add_argument("--stop-stage", help="last stage to run (number or name)")
    p.add_argument("--force", action="store_true", help="re-run the selected stages even if up to date")
    p.add_argument("--nj", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("stages", help="list a recipe's stages as done, stale (and why) or missing")
    _add_recipe_args(p)
    p.set_defaults(func=cmd_stages)

    p = sub.add_parser("convert", help="convert between a JSONL manifest and a Kaldi data directory "
                                       "(validating every entry)")
    p.add_argument("src", help="a .jsonl manifest or a Kaldi data directory")
    p.add_argument("dst", help="a .jsonl path, or a directory to write Kaldi files into")
    p.add_argument("--no-audio-check", action="store_true", help="do not check that audio files exist")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("transcribe", help="print the text of audio files (any format, rate, channels)")
    p.add_argument("model", help="a model file (e.g. data/fsdd/train/model.pt)")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--json", action="store_true", help="print path, text and word times (seconds) as JSON")
    _add_decoder_args(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("evaluate", help="decode and score a JSONL manifest or Kaldi data directory")
    p.add_argument("model", help="a model file")
    p.add_argument("data", help="a .jsonl manifest or a Kaldi data directory")
    p.add_argument("--out", help="write the decode report here (hypotheses, alignments, speakers, sclite trn)")
    _add_decoder_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("wer", help="score Kaldi-style text files (utt-id word word ...)")
    p.add_argument("ref", help="reference text file")
    p.add_argument("hyp", help="hypothesis text file")
    p.add_argument("--missing-as-deletions", action="store_true",
                   help="count references without a hypothesis as deleted instead of failing")
    p.add_argument("--bootstrap", action="store_true", help="add a 95%% bootstrap confidence interval")
    p.add_argument("--compare", metavar="HYP2", help="probability that HYP improves on HYP2 (paired bootstrap)")
    p.set_defaults(func=cmd_wer)
    return parser


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # stage logs appear as they happen, also through a pipe
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AsrError as e:
        print(f"asr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted; finished stages are kept, re-run to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
