"""Recipe configuration: one frozen dataclass per stage section, overridden with ``--set``.

A recipe's config is a dict ``{section name: dataclass instance}``; ``--set
features.n_mfcc=20`` replaces one field, converted to the field's declared type.
Unknown sections or keys are rejected with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from asr.errors import ConfigError

Config = Mapping[str, Any]  # section name -> frozen dataclass


def _convert(text: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(text, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: cannot read {text!r} as {annotation}")
    if origin is typing.Literal:
        if text not in args:
            raise ConfigError(f"{key}: {text!r} is not one of {list(args)}")
        return text
    if origin in (tuple, list):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = [v for v in text.split(",") if v]
        if not isinstance(value, list):
            value = [value]
        item = args[0] if args else str
        return origin(_convert(str(v), item, key) for v in value)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: {text!r} is not a boolean (true/false)")
    if annotation in (int, float, str):
        try:
            return annotation(text)
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not a valid {annotation.__name__}") from None
    raise ConfigError(f"{key}: cannot set a field of type {annotation} from the command line")


def apply_overrides(config: Config, overrides: Iterable[str]) -> dict[str, Any]:
    """Return a new config with ``section.key=value`` overrides applied.

    Raises:
        ConfigError: malformed override, unknown section or key, bad value.
    """
    out = dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"bad override {item!r}: expected section.key=value, e.g. features.n_mfcc=20")
        if section not in out:
            raise ConfigError(f"unknown config section {section!r} in {item!r}; sections: {sorted(out)}")
        obj = out[section]
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if field not in fields:
            raise ConfigError(f"unknown key {key!r}; valid keys of {section!r}: {sorted(fields)}")
        hints = typing.get_type_hints(type(obj))
        value = _convert(text.strip(), hints[field], key)
        try:
            out[section] = dataclasses.replace(obj, **{field: value})
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{key}={text}: {e}") from None
    return out


def to_dict(section: Any) -> dict:
    """A config section as plain JSON-able data (for cache keys and records)."""
    return json.loads(json.dumps(dataclasses.asdict(section), default=str))


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config section from :func:`to_dict` output (JSON lists back to tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
