"""Builds frozen dataclasses from parsed YAML, with one-line errors that name the key.

The dataclass is the schema: its type hints say what each key accepts, its defaults are the
defaults, and a field's metadata may carry a `check` that returns a problem (or None) and a
`convert` that turns the checked value into something richer. Unknown keys are errors, so a
typo cannot pass silently. Errors read `targets[1].redis.port: must be 1-65535, got 70000`.
"""

# ruff: noqa: ANN401  -- a schema walker takes and returns values of any configured type

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from redis_autoheal.errors import ConfigError

T = TypeVar("T")
Check = Callable[[Any], str | None]


def field(
    default: Any = dataclasses.MISSING,
    *,
    check: Check | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field with an optional value check run when built from YAML."""
    metadata = {"check": check} if check else {}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def internal(default: Any, *, refuse: str) -> Any:
    """A field set by the loader, never from YAML; `refuse` says what to write instead."""
    return dataclasses.field(default=default, repr=False, metadata={"refuse": refuse})


def build(cls: type[T], data: object, key: str, base_dir: Path) -> T:
    """Build dataclass `cls` from `data` found at `key`; relative paths resolve in `base_dir`."""
    return typing.cast("T", _convert(cls, data, key, base_dir))


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def _build_dataclass(cls: type[Any], data: object, key: str, base_dir: Path) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"must be a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if "refuse" not in f.metadata}
    for name in data:
        if name not in fields:
            _refuse_key(cls, str(name), list(fields), key)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = _join(key, name)
        if name in data:
            kwargs[name] = _checked(f, _convert(hints[name], data[name], sub, base_dir), sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, "is required")
        # Defaults are built like written values, so default paths expand and anchor too.
        elif isinstance(f.default, Path):
            kwargs[name] = _convert(Path, str(f.default), sub, base_dir)
        elif dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _convert(hints[name], {}, sub, base_dir)
    return cls(**kwargs)


def _checked(f: dataclasses.Field[Any], value: Any, key: str) -> Any:
    check: Check | None = f.metadata.get("check")
    if check is not None and value is not None:
        problem = check(value)
        if problem:
            raise ConfigError(key, problem)
    return value


def _refuse_key(cls: type[Any], name: str, known: list[str], key: str) -> None:
    for f in dataclasses.fields(cls):
        if f.name == name and "refuse" in f.metadata:
            raise ConfigError(_join(key, name), f"not allowed here: {f.metadata['refuse']}")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(_join(key, name), f"unknown key{hint}")


def _convert(tp: Any, value: object, key: str, base_dir: Path) -> Any:  # noqa: C901, PLR0911, PLR0912
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key, base_dir)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build_dataclass(tp, value, key, base_dir)
    if origin is tuple:  # tuple[X, ...]: a YAML list, kept immutable
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {_describe(value)}")
        (inner, _) = typing.get_args(tp)
        return tuple(_convert(inner, v, f"{key}[{i}]", base_dir) for i, v in enumerate(value))
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            names = ", ".join(str(c) for c in choices)
            raise ConfigError(key, f"must be one of {names}, got {_describe(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"must be a non-empty string, got {_describe(value)}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"must be a path, got {_describe(value)}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base_dir / path
    raise TypeError(f"schema: unsupported type {tp!r} at {key}")  # a bug in a dataclass


def in_range(low: float, high: float | None = None) -> Check:
    """A check that a number lies in [low, high] (no upper bound when high is None)."""

    def check(value: float) -> str | None:
        if value < low or (high is not None and value > high):
            bounds = f"{low:g}-{high:g}" if high is not None else f">= {low:g}"
            return f"must be {bounds}, got {value:g}"
        return None

    return check
