"""TrialSpec: everything that defines one trial, frozen, validated, and serialisable.

A sweep config expands into TrialSpecs; ``ganbench train`` builds one from flags. ``--set``
overrides use dotted keys: ``steps=500``, ``loss.gp_weight=5``, ``arch.spectral_norm=true``,
``metric.fidelity.num_samples=500``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from .api import GanbenchError
from .registry import coerce

COMPONENTS = {"dataset": "dataset", "arch": "architecture", "loss": "loss", "schedule": "schedule"}


@dataclass(frozen=True)
class TrialSpec:
    dataset: str = "digits"
    arch: str = "dcgan"
    loss: str = "nonsaturating"
    schedule: str = "alternating"
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    arch_params: Mapping[str, Any] = field(default_factory=dict)
    loss_params: Mapping[str, Any] = field(default_factory=dict)
    schedule_params: Mapping[str, Any] = field(default_factory=dict)
    #: Iterations of the schedule; each runs ``d_steps`` D updates then ``g_steps`` G updates.
    steps: int = 1000
    batch_size: int = 64
    z_dim: int = 32
    lr_d: float = 2e-4
    lr_g: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    #: Evaluate metrics every this many iterations (and always at the end); 0 = only at the end.
    eval_every: int = 250
    #: Metric names; empty = the dataset's defaults.
    metrics: tuple[str, ...] = ()
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    # -- identity ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GanbenchError(f"unknown trial setting {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        d = dict(d)
        if "metrics" in d:
            d["metrics"] = tuple(d["metrics"])
        return cls(**d)

    def key(self) -> str:
        """A stable id of this exact trial (configuration + seed + budget)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def config_label(self) -> str:
        """Human-readable configuration name without the seed (what leaderboards group by)."""
        parts = [self.arch, self.loss, self.schedule]
        for prefix, params in (("arch", self.arch_params), ("loss", self.loss_params), ("schedule", self.schedule_params)):
            parts += [f"{prefix}.{k}={v}" for k, v in sorted(params.items())]
        return " ".join(parts)

    # -- overrides --------------------------------------------------------------------------

    def with_overrides(self, assignments: Mapping[str, Any]) -> "TrialSpec":
        """Apply ``{"steps": "500", "loss.gp_weight": "5"}``-style overrides (strings are coerced)."""
        spec = self
        for key, value in assignments.items():
            spec = spec._with(key, value)
        return spec

    def _with(self, key: str, value: Any) -> "TrialSpec":
        head, _, rest = key.partition(".")
        if rest:
            if head in ("dataset", "arch", "loss", "schedule"):
                attr = f"{head}_params"
                return replace(self, **{attr: {**getattr(self, attr), rest: value}})
            if head == "metric":
                name, _, param = rest.partition(".")
                if not param:
                    raise GanbenchError(f"--set {key}: use metric.NAME.PARAM=VALUE")
                mp = {k: dict(v) for k, v in self.metric_params.items()}
                mp.setdefault(name, {})[param] = value
                return replace(self, metric_params=mp)
            raise GanbenchError(f"unknown setting {key!r}; dotted keys start with dataset., arch., loss., schedule. or metric.")
        scalar = {f.name: f for f in fields(self) if not f.name.endswith("_params")}
        if key not in scalar:
            raise GanbenchError(f"unknown setting {key!r}; valid: {', '.join(sorted(scalar))}")
        if key == "metrics":
            value = tuple(coerce(value, (), "metrics"))
        else:
            value = coerce(value, getattr(self, key), f"setting {key!r}")
        return replace(self, **{key: value})

    # -- validation -------------------------------------------------------------------------

    def validated(self, pm: Any) -> "TrialSpec":
        """Check every name and parameter against the registries; return the spec with typed params.

        Raises GanbenchError naming the bad key and the valid choices, before anything trains.
        """
        for attr in ("steps", "batch_size", "z_dim"):
            if getattr(self, attr) < 1:
                raise GanbenchError(f"setting {attr!r} must be >= 1, got {getattr(self, attr)}")
        if self.eval_every < 0:
            raise GanbenchError("setting 'eval_every' must be >= 0")
        for attr in ("lr_d", "lr_g"):
            if not (math.isfinite(getattr(self, attr)) and getattr(self, attr) > 0):
                raise GanbenchError(f"setting {attr!r} must be a finite number > 0, got {getattr(self, attr)}")
        for attr in ("beta1", "beta2"):
            if not 0 <= getattr(self, attr) < 1:
                raise GanbenchError(f"setting {attr!r} (Adam) must be in [0, 1), got {getattr(self, attr)}")
        typed = {}
        for attr, kind in COMPONENTS.items():
            registry = pm.registries[kind]
            typed[f"{attr}_params"] = registry.validate(getattr(self, attr), dict(getattr(self, f"{attr}_params")))
        metric_params = {}
        for name, params in self.metric_params.items():
            metric_params[name] = pm.registries["metric"].validate(name, dict(params))
        for name in self.metrics:
            pm.registries["metric"].get(name)
        return replace(self, **typed, metric_params=metric_params)
