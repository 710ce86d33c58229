"""Recipe configuration: one frozen dataclass per stage section, overridden with ``--set``.

A recipe's config is a dict ``{section name: dataclass instance}``; ``--set
features.n_mfcc=20`` replaces one field, converted to the field's declared type, and
``--set train.model.hidden=128`` one field of a nested dataclass. Unknown sections or
keys are rejected with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from asr.core.errors import ConfigError

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


def _replace_path(obj: Any, path: list[str], text: str, key: str) -> Any:
    """``obj`` with the field at ``path`` (nested dataclasses) set from ``text``."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    name = path[0]
    if name not in fields:
        prefix = key[: len(key) - len(".".join(path))]
        raise ConfigError(f"unknown key {key!r}; valid keys of {prefix.rstrip('.')!r}: {sorted(fields)}")
    current = getattr(obj, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown key {key!r}: {name!r} has no keys below it")
        value = _replace_path(current, path[1:], text, key)
    elif dataclasses.is_dataclass(current):
        raise ConfigError(
            f"{key} is a group of keys: set one of {[f'{key}.{f.name}' for f in dataclasses.fields(current)]}"
        )
    else:
        value = _convert(text.strip(), typing.get_type_hints(type(obj))[name], key)
    try:
        return dataclasses.replace(obj, **{name: value})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}={text}: {e}") from None


def apply_overrides(config: Config, overrides: Iterable[str]) -> dict[str, Any]:
    """Return a new config with ``section.key=value`` (or ``section.group.key=value``) overrides applied.

    Raises:
        ConfigError: malformed override, unknown section or key, bad value.
    """
    out = dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        section, *path = key.split(".")
        if not sep or not path or not all(path):
            raise ConfigError(f"bad override {item!r}: expected section.key=value, e.g. features.n_mfcc=20")
        if section not in out:
            raise ConfigError(f"unknown config section {section!r} in {item!r}; sections: {sorted(out)}")
        out[section] = _replace_path(out[section], path, text, key)
    return out


def to_dict(section: Any) -> dict:
    """A config section as plain JSON-able data (for cache keys and records); nested sections nest."""
    return json.loads(json.dumps(dataclasses.asdict(section), default=str))


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config section from :func:`to_dict` output (JSON lists back to tuples, nested sections too).

    Raises:
        ConfigError: unknown or bad fields (e.g. a file written by another version).
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}")
    values = {}
    for k, v in data.items():
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            v = from_dict(hints[k], v)
        elif isinstance(v, list):
            v = tuple(v)
        values[k] = v
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None


def flatten(section: Any, prefix: str = "") -> dict[str, Any]:
    """``{"key": value, "group.key": value}`` of a section: a dataclass (its values as they are) or its
    :func:`to_dict` (JSON values)."""
    if dataclasses.is_dataclass(section):
        items = [(f.name, getattr(section, f.name)) for f in dataclasses.fields(section)]
    else:
        items = list(section.items())
    out = {}
    for k, v in items:
        if isinstance(v, dict) or dataclasses.is_dataclass(v):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
