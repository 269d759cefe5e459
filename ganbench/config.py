"""Sweep configs (TOML) -> a frozen SweepConfig that expands into validated TrialSpecs.

    name = "default"                 # default study name
    description = "..."
    plugins = ["my_plugin_module"]   # optional: -p modules the workers load too

    [trial]                          # any TrialSpec setting; dotted keys set component params
    dataset = "digits"
    arch = "dcgan"
    steps = 400
    eval_every = 200
    "arch.base_channels" = 16

    [grid]                           # axes: every combination runs exactly once
    loss = ["nonsaturating", "hinge"]
    seed = [0, 1]
    "loss.gp_weight" = [1.0, 10.0]   # applies only where the chosen loss has this parameter

    [search]                         # TPE ranges (used without --grid)
    lr_d = { low = 1e-5, high = 1e-3, log = true }

Unknown keys, names and mistyped values are errors before any training starts.
"""
from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .api import GanbenchError
from .spec import COMPONENTS, TrialSpec

TOP_KEYS = {"name", "description", "plugins", "trial", "grid", "search"}
SEARCH_KEYS = {"low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class SweepConfig:
    name: str
    description: str = ""
    plugins: tuple[str, ...] = ()
    trial: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    search: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "plugins": list(self.plugins),
                "trial": dict(self.trial), "grid": {k: list(v) for k, v in self.grid.items()},
                "search": {k: dict(v) for k, v in self.search.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "SweepConfig":
        unknown = sorted(set(data) - TOP_KEYS)
        if unknown:
            raise GanbenchError(f"{source}: unknown key {unknown[0]!r}; valid top-level keys: {', '.join(sorted(TOP_KEYS))}")
        grid = {}
        for axis, values in dict(data.get("grid", {})).items():
            if not isinstance(values, list) or not values:
                raise GanbenchError(f"{source}: grid axis {axis!r} must be a non-empty list, got {values!r}")
            grid[axis] = tuple(values)
        search = {}
        for key, rng in dict(data.get("search", {})).items():
            if not isinstance(rng, dict) or not (set(rng) <= SEARCH_KEYS) or not ({"low", "high"} <= set(rng) or "choices" in rng):
                raise GanbenchError(f"{source}: search range {key!r} must be a table with low/high (log, step) or choices")
            search[key] = _checked_range(key, dict(rng), source)
        for key in ("trial",):
            if not isinstance(data.get(key, {}), dict):
                raise GanbenchError(f"{source}: [{key}] must be a table")
        return cls(name=str(data.get("name", "sweep")), description=str(data.get("description", "")),
                   plugins=tuple(data.get("plugins", ())), trial=_flatten(data.get("trial", {})),
                   grid=grid, search=search)

    # -- expansion --------------------------------------------------------------------------

    def base_spec(self, overrides: Mapping[str, Any] = {}) -> TrialSpec:
        return TrialSpec().with_overrides({**self.trial, **overrides})

    def grid_specs(self, pm: Any, overrides: Mapping[str, Any] = {}) -> list[TrialSpec]:
        """Every distinct grid point as a validated TrialSpec, in a stable order."""
        return _expand(self.base_spec(overrides), self.grid, pm, "grid axis")

    def check_search(self, pm: Any, overrides: Mapping[str, Any] = {}) -> None:
        """Validate each [search] range before anything trains: its key names a setting or a
        parameter of a component in the sweep, and its end points (or choices) are valid values."""
        base = self.base_spec(overrides)
        for key, rng in self.search.items():
            values = tuple(rng["choices"]) if "choices" in rng else (rng["low"], rng["high"])
            _expand(base, {**self.grid, key: values}, pm, "search range")


def _expand(base: TrialSpec, grid: Mapping[str, tuple[Any, ...]], pm: Any, what: str) -> list[TrialSpec]:
    """The distinct validated specs of a grid; a parameter axis that no component in the grid takes
    is an error (a misspelling would otherwise be dropped from every point)."""
    axes = list(grid)
    seen: dict[str, TrialSpec] = {}
    used: set[str] = set()
    for values in itertools.product(*(grid[a] for a in axes)):
        spec = apply_point(base, dict(zip(axes, values)), pm, used)
        seen.setdefault(spec.key(), spec)
    for axis in axes:
        if "." in axis and axis not in used:
            head, _, param = axis.partition(".")
            kind = COMPONENTS[head]
            names = sorted({getattr(s, head) for s in seen.values()})
            takes = "; ".join(f"{n}: {', '.join(pm.registries[kind].get(n).params) or 'none'}" for n in names)
            raise GanbenchError(f"{what} {axis!r}: no {kind} in the sweep has a parameter {param!r} ({takes})")
    return list(seen.values())


def _checked_range(key: str, rng: dict[str, Any], source: str) -> dict[str, Any]:
    if "choices" in rng:
        if not isinstance(rng["choices"], list) or not rng["choices"]:
            raise GanbenchError(f"{source}: search range {key!r}: choices must be a non-empty list")
        return rng
    low, high = rng["low"], rng["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise GanbenchError(f"{source}: search range {key!r}: need numbers low < high, got low={low!r}, high={high!r}")
    if rng.get("log") and low <= 0:
        raise GanbenchError(f"{source}: search range {key!r}: a log range needs low > 0, got {low!r}")
    return rng


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"gp_weight": 5}}`` (TOML's reading of ``loss.gp_weight = 5``) -> dotted keys."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_point(base: TrialSpec, point: Mapping[str, Any], pm: Any, used: set[str] | None = None) -> TrialSpec:
    """Set one grid point on a spec. Component names first, then parameter axes, which are
    dropped where the chosen component has no such parameter (so `loss.gp_weight` only
    multiplies the losses that take it); the keys that were applied are added to ``used``."""
    names = {k: v for k, v in point.items() if "." not in k}
    params = {k: v for k, v in point.items() if "." in k}
    spec = base.with_overrides(names)
    applicable = {}
    for key, value in params.items():
        head, _, param = key.partition(".")
        if head in COMPONENTS:
            component = pm.registries[COMPONENTS[head]].get(getattr(spec, head))
            if param not in component.params:
                continue
        applicable[key] = value
    if used is not None:
        used.update(applicable)
    return spec.with_overrides(applicable).validated(pm)


def load_config(path: str | Path | None = None, name: str | None = None) -> SweepConfig:
    """Read a sweep config from a TOML file, or a named one shipped with the package."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise GanbenchError(f"config file not found: {p}")
        try:
            text, source = p.read_text(encoding="utf-8"), str(p)
        except (OSError, UnicodeDecodeError) as exc:
            raise GanbenchError(f"cannot read config file {p}: {exc}") from None
    else:
        name = name or "default"
        available = shipped_configs()
        if name not in available:
            raise GanbenchError(f"unknown sweep {name!r}; shipped sweeps: {', '.join(available)}")
        text, source = resources.files("ganbench.configs").joinpath(f"{name}.toml").read_text(), f"sweep {name!r}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GanbenchError(f"{source}: invalid TOML: {exc}") from None
    return SweepConfig.from_dict(data, source)


def shipped_configs() -> list[str]:
    root = resources.files("ganbench.configs")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))
