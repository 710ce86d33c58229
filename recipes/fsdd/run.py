"""Run the FSDD recipe: ``python recipes/fsdd/run.py [asr run options]`` == ``asr run fsdd ...``."""

import sys

from asr.cli import main

sys.exit(main(["run", "fsdd", *sys.argv[1:]]))
