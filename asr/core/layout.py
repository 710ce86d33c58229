"""Where every stage's output lives: one typed folder per stage.

This module is the only place that spells the file names of a stage's output: the
stage that writes a folder and every stage or command that reads it go through the
class here, so renaming a file is one edit. Stage wrappers themselves stay in the
library module of their concern (``features.stage``, ``train.stage``, ...), next to
the code they run, as the design sketch asks ("every stage is an importable
function"); they find their inputs through these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORD = "record.json"  # every stage output: cache key, config, times, counts (written last)
DATA_STAMPS = "data.json"  # a stage's data fingerprint, file by file, next to its record
RESULTS = "RESULTS.md"  # the score stage's summary, exported to the work directory
POOLED_RECORD = "pooled.json"  # the prepare stage's record of the corpora pooled into its training sets
MODEL = "model.pt"  # the export stage's shipped model file, also exported to the work directory
FEATURES_DATA = ".f32"  # a feature set's frames: <set>.f32 (then <set>.shard1.f32, ... past features.shard_hours) ...
FEATURES_INDEX = ".index.jsonl"  # ... and its index: <set>.index.jsonl


def shard_path(prefix: str | Path, shard: int) -> Path:
    """Shard ``shard`` of a feature set's frames: ``<prefix>.f32``, then ``<prefix>.shard<k>.f32``."""
    return Path(f"{prefix}{f'.shard{shard}' if shard else ''}{FEATURES_DATA}")


@dataclass(frozen=True)
class FeaturesDir:
    """The ``features`` stage: one ``<set>.f32`` + ``<set>.index.jsonl`` per set, config and CMVN."""

    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "features.json"

    @property
    def cmvn(self) -> Path:
        return self.root / "cmvn.json"

    @property
    def bad(self) -> Path:
        return self.root / "bad.txt"

    def prefix(self, name: str) -> Path:
        """``<root>/<set>``: the set's files are this plus ``.f32`` and ``.index.jsonl``."""
        return self.root / name

    def data(self, name: str, shard: int = 0) -> Path:
        return shard_path(self.root / name, shard)

    def index(self, name: str) -> Path:
        return self.root / f"{name}{FEATURES_INDEX}"


@dataclass(frozen=True)
class LexiconDir:
    """The ``lexicon`` stage: the pronunciation dictionary, and the G2P's pronunciations of the transcripts'
    words it lacks (both Kaldi ``lexicon.txt`` format); empty for a model of characters."""

    root: Path

    @property
    def dictionary(self) -> Path:
        return self.root / "lexicon.txt"

    @property
    def g2p(self) -> Path:
        return self.root / "g2p.txt"


@dataclass(frozen=True)
class LmDir:
    """The ``lm`` stage: an ARPA model, its word list and the lexicon spelling each word in units."""

    root: Path

    @property
    def arpa(self) -> Path:
        return self.root / "lm.arpa"

    @property
    def lexicon(self) -> Path:
        return self.root / "lexicon.txt"

    @property
    def words(self) -> Path:
        return self.root / "words.txt"

    @property
    def unigrams(self) -> Path:
        """Extra words (``word<TAB>frequency``) from a large word list, mixed with the n-gram."""
        return self.root / "unigrams.tsv"

    @property
    def general(self) -> Path:
        """A general n-gram model of the language over the word list (``lm.general``), mixed with the
        in-domain one in place of the word list's unigrams."""
        return self.root / "general.arpa"

    @property
    def tokens_arpa(self) -> Path:
        """An n-gram model over the model's units (characters and the word separator), for
        lexicon-free, open-vocabulary decoding."""
        return self.root / "tokens.arpa"


@dataclass(frozen=True)
class TrainDir:
    """The ``train`` stage: the model file, its training summary and curves."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / MODEL

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def too_short(self) -> Path:
        return self.root / "too_short.txt"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"


@dataclass(frozen=True)
class CheckpointDir:
    """The train stage's partial folder: what a killed training resumes from."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    def snapshot(self, n: int) -> Path:
        """The model at the ``n``-th dev evaluation (1-based), kept for averaging."""
        return self.root / f"eval{n}.pt"

    def snapshots(self) -> list[Path]:
        """The kept evaluation models, oldest first."""
        return sorted(self.root.glob("eval*.pt"), key=self.snapshot_number)

    @staticmethod
    def snapshot_number(path: Path) -> int:
        return int(path.stem[4:])

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"


@dataclass(frozen=True)
class ReportDir:
    """A decoded set: hypotheses and references (Kaldi text), speakers; the score stage adds the report."""

    root: Path

    @property
    def hyp(self) -> Path:
        return self.root / "hyp.txt"

    @property
    def greedy(self) -> Path:
        return self.root / "greedy.txt"

    @property
    def greedy_ref(self) -> Path:
        """Phone models of word transcripts: the references in phones, which ``greedy.txt`` is scored against."""
        return self.root / "greedy_ref.txt"

    @property
    def ref(self) -> Path:
        return self.root / "ref.txt"

    @property
    def utt2spk(self) -> Path:
        return self.root / "utt2spk"

    @property
    def audio(self) -> Path:
        """``utterance path`` lines: the recordings the page links to."""
        return self.root / "audio.txt"

    @property
    def groups(self) -> Path:
        """``{grouping: {utterance: value}}`` (JSON), when the manifest has groups (age, gender): the page's."""
        return self.root / "groups.json"

    @property
    def page(self) -> Path:
        return self.root / "index.html"

    @property
    def alignments(self) -> Path:
        return self.root / "alignments.txt"

    @property
    def speakers(self) -> Path:
        return self.root / "speakers.txt"

    @property
    def confusions(self) -> Path:
        return self.root / "confusions.txt"

    @property
    def ref_trn(self) -> Path:
        return self.root / "ref.trn"

    @property
    def hyp_trn(self) -> Path:
        return self.root / "hyp.trn"

    @property
    def summary(self) -> Path:
        return self.root / "wer"


@dataclass(frozen=True)
class DecodeDir:
    """The ``decode`` stage: the tuned settings and one :class:`ReportDir` per decoded set."""

    root: Path

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    def set(self, name: str) -> ReportDir:
        return ReportDir(self.root / name)

    def sets(self) -> list[str]:
        """Names of the decoded sets, sorted."""
        return sorted(str(p.parent.relative_to(self.root)) for p in self.root.rglob(ReportDir(Path()).hyp.name))


@dataclass(frozen=True)
class ScoreDir:
    """The ``score`` stage: one report per set and ``RESULTS.md``."""

    root: Path

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def training_page(self) -> Path:
        """The training run's page: loss, dev error rates and learning rate over the updates, and its settings."""
        return self.root / "training.html"

    def set(self, name: str) -> ReportDir:
        return ReportDir(self.root / name)

    @property
    def folds(self) -> Path:
        """A cross-validation recipe's score stage: each fold's WER and their mean (JSON)."""
        return self.root / "folds.json"


@dataclass(frozen=True)
class ExportDir:
    """The ``export`` stage: the model file a user ships (copied to the work directory)."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / MODEL
