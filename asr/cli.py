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
    return parser


def main(argv: list[str] | None = None) -> int:
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
