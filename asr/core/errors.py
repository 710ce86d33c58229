"""The exceptions the toolkit raises for bad user input.

Every error names what it is about (a file, an utterance id, a config key) and,
where there is one, what the user can do about it. Checks never use ``assert``,
which ``python -O`` removes.
"""

from __future__ import annotations

from pathlib import Path


class AsrError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class AudioError(AsrError):
    """An audio file that cannot be used.

    Attributes:
        path: the file.
        reason: what is wrong with it.
    """

    def __init__(self, path: str | Path, reason: str, hint: str | None = None):
        self.path = str(path)
        self.reason = reason
        message = f"{self.path}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class AudioTooLarge(AudioError):
    """Audio over a stated limit (decoded samples), not unreadable."""


class ManifestError(AsrError):
    """One or more bad manifest entries; ``problems`` holds every one of them.

    Attributes:
        problems: ``(utterance id, reason)`` pairs, all of them, not only the first.
    """

    MAX_SHOWN = 20

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {len(self.problems)} bad entr{'y' if len(self.problems) == 1 else 'ies'}:"]
        lines += [f"  {uid}: {reason}" for uid, reason in self.problems[: self.MAX_SHOWN]]
        if len(self.problems) > self.MAX_SHOWN:
            lines.append(f"  ... and {len(self.problems) - self.MAX_SHOWN} more")
        super().__init__("\n".join(lines))


class TokenizerError(AsrError):
    """Text holding characters the tokenizer has no unit for."""


class CorpusError(AsrError):
    """A corpus that cannot be found, downloaded, verified or parsed."""


class ConfigError(AsrError):
    """A bad configuration value or an unknown key."""
