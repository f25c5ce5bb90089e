"""Typed architecture settings: the base of every family's architecture dataclass.

A family declares its settings as a frozen dataclass deriving from :class:`ArchConfig`, with
defaults per kind of data (:meth:`ArchConfig.for_data`: ``"vectors"``, ``"showers"`` or
``"fields"``). Settings from Python keywords, a saved ``model.json`` or the command line
(``--arch KEY=VALUE``, :meth:`ArchConfig.parse`) are checked against the field types here, so
a wrong key or type is one clear error whatever its source.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Arch(ArchConfig):
    ...     hidden: tuple[int, ...] = (64,)
    ...     depth: int = 2
    >>> Arch.parse(["hidden=32,32", "depth=3"])
    {'hidden': (32, 32), 'depth': 3}
    >>> Arch().replace(depth=4).to_dict()
    {'hidden': [64], 'depth': 4}
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from typing import Any, Self, Union

from simulators.errors import UserError

__all__ = ["DATA_KINDS", "ArchConfig"]

#: the kinds of data that have their own default architectures
DATA_KINDS = ("vectors", "showers", "fields")


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """Base class of a family's architecture settings (a frozen dataclass)."""

    @classmethod
    def for_data(cls, kind: str) -> Self:
        """The defaults for ``kind`` of data (one of :data:`DATA_KINDS`)."""
        return cls()

    @classmethod
    def _types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    def replace(self, **settings: Any) -> Self:
        """These settings with ``settings`` changed, each checked against its field's type."""
        types_ = self._types()
        unknown = sorted(set(settings) - set(types_))
        if unknown:
            raise UserError(
                f"unknown {self._family()} setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(types_)}"
            )
        values = {k: _coerce(k, v, types_[k]) for k, v in settings.items()}
        return dataclasses.replace(self, **values)

    @classmethod
    def parse(cls, items: Sequence[str]) -> dict[str, Any]:
        """``KEY=VALUE`` strings (values as JSON where they parse, else text; lists also as
        ``a,b``) -> checked settings."""
        types_ = cls._types()
        out: dict[str, Any] = {}
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise UserError(f"an architecture setting is KEY=VALUE, got {item!r}")
            if key not in types_:
                raise UserError(
                    f"unknown {cls._family()} setting {key!r}; known: {', '.join(types_)}"
                )
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text.strip()
            out[key] = _coerce(key, value, types_[key])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def _family(cls) -> str:
        return cls.__name__.removesuffix("Arch") or cls.__name__


def _describe(tp: Any, *, plural: bool = False) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0], plural=True)}"
    names = {int: "integer", float: "number", str: "string", bool: "true or false",
             type(None): "null"}  # fmt: skip
    name = names.get(tp, getattr(tp, "__name__", str(tp)))
    if tp in (int, float, str):
        name = f"{name}s" if plural else f"an {name}" if name[0] in "aeiou" else f"a {name}"
    return name


def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except UserError:
                pass
    elif origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()] if value.strip() else []
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # one width
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(name, v, args[0]) for v in value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise UserError(f"{name} must be {_describe(tp)}, got {value!r}")
