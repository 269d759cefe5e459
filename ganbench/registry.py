"""Validated name -> factory registries, one per component kind.

A component's factory signature is its schema: keyword parameters with defaults are its
parameters; ``create`` checks names and types against them before anything is built.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .api import GanbenchError

KINDS = ("architecture", "loss", "schedule", "dataset", "metric")
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
# Factory arguments the framework supplies itself; they are not user parameters.
_SUPPLIED = {"architecture": ("data_spec", "z_dim")}


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    annotation: str

    def describe(self) -> str:
        return f"{self.name}={self.default!r}"


@dataclass
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    provider: str
    description: str = ""
    params: dict[str, Param] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _signature_params(kind: str, name: str, factory: Callable[..., Any]) -> dict[str, Param]:
    params = {}
    for p in inspect.signature(factory).parameters.values():
        if p.name in _SUPPLIED.get(kind, ()) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise GanbenchError(f"{kind} {name!r}: parameter {p.name!r} needs a default (the signature is the schema)")
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        params[p.name] = Param(p.name, p.default, "" if ann is inspect.Parameter.empty else str(ann))
    return params


def coerce(value: Any, default: Any, where: str) -> Any:
    """Convert ``value`` to the type of ``default`` (bool/int/float/str/tuple), or fail clearly."""
    if default is None or value is None:
        return value
    t = type(default)
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
            return int(value)
    elif t is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif t is str:
        if isinstance(value, str):
            return value
    elif t in (tuple, list):
        if isinstance(value, (list, tuple)):
            return t(value)
        if isinstance(value, str):
            return t(v.strip() for v in value.split(",") if v.strip())
    else:
        return value
    raise GanbenchError(f"{where}: expected {t.__name__}, got {value!r}")


class Registry:
    """Components of one kind. Plugins call :meth:`add` from their registration hook."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        self.kind = kind
        self._items: dict[str, Component] = {}
        self.provider = "?"  # set by the plugin manager while a plugin's hook runs
        self.unavailable: dict[str, str] = {}  # plugin name -> error, for "did a broken plugin provide it?"

    def add(self, name: str, factory: Callable[..., Any], *, description: str = "", **meta: Any) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise GanbenchError(f"{self.kind} name {name!r} is invalid: use lower-case letters, digits, '_' or '-'")
        if not callable(factory):
            raise GanbenchError(f"{self.kind} {name!r}: factory is not callable")
        if name in self._items:
            other = self._items[name].provider
            raise GanbenchError(f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {self.provider!r}")
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        self._items[name] = Component(self.kind, name, factory, self.provider, doc,
                                      _signature_params(self.kind, name, factory), dict(meta))

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._items.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Component:
        try:
            return self._items[name]
        except KeyError:
            hint = ""
            if self.unavailable:
                broken = ", ".join(f"{p!r} ({e})" for p, e in self.unavailable.items())
                hint = f"; plugins that failed to load and may provide it: {broken}"
            raise GanbenchError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names()) or '(none)'}{hint}") from None

    def validate(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Check ``params`` against the factory signature; return them coerced to their types."""
        comp = self.get(name)
        out = {}
        for key, value in params.items():
            if key not in comp.params:
                valid = ", ".join(comp.params) or "(none)"
                raise GanbenchError(f"{self.kind} {name!r} has no parameter {key!r}; valid: {valid}")
            out[key] = coerce(value, comp.params[key].default, f"{self.kind} {name!r} parameter {key!r}")
        return out

    def create(self, name: str, params: dict[str, Any] | None = None, **supplied: Any) -> Any:
        comp = self.get(name)
        kwargs = self.validate(name, params or {})
        return comp.factory(**supplied, **kwargs)

    def remove_provider(self, provider: str) -> None:
        """Drop everything one plugin registered (used when its registration fails half-way)."""
        for name in [n for n, c in self._items.items() if c.provider == provider]:
            del self._items[name]


class Registries:
    """One registry per kind, as a plugin manager builds them."""

    def __init__(self) -> None:
        self.by_kind = {k: Registry(k) for k in KINDS}

    def __getitem__(self, kind: str) -> Registry:
        return self.by_kind[kind]

    architectures = property(lambda self: self.by_kind["architecture"])
    losses = property(lambda self: self.by_kind["loss"])
    schedules = property(lambda self: self.by_kind["schedule"])
    datasets = property(lambda self: self.by_kind["dataset"])
    metrics = property(lambda self: self.by_kind["metric"])
