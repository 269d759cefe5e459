"""Two training schedules that ganbench does not ship.

- ``cosine``: both learning rates follow a half cosine from 1 down to ``final_scale`` at the last
  iteration (Loshchilov & Hutter 2017, SGDR, without restarts).
- ``critic_warmup``: more D updates per iteration early on and at regular intervals, as the WGAN
  reference code does (Arjovsky et al. 2017: 100 critic steps for the first 25 generator
  iterations and every 500th, otherwise 5), so G always trains against a near-optimal critic.

A schedule's ``plan(step, total_steps)`` must be a pure function of its arguments: the trainer may
ask for the same step more than once (ganbench.testing checks it).
"""
from __future__ import annotations

import math

from ganbench import GanbenchError, Schedule, StepPlan


def _count(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GanbenchError(f"schedule parameter {name} must be an integer >= {low}, got {value!r}")
    return value


class CosineSchedule(Schedule):
    """Constant D/G step counts; both learning-rate multipliers ``cosine_factor(step, total)``."""

    def __init__(self, d_steps: int = 1, g_steps: int = 1, final_scale: float = 0.0):
        self.d_steps = _count("d_steps", d_steps, 1)
        self.g_steps = _count("g_steps", g_steps, 1)
        if not (isinstance(final_scale, (int, float)) and 0 <= final_scale <= 1):
            raise GanbenchError(f"schedule parameter final_scale must be in [0, 1], got {final_scale!r}")
        self.final_scale = float(final_scale)

    def factor(self, step: int, total_steps: int) -> float:
        """``final + (1 - final) * (1 + cos(pi * step / (total - 1))) / 2``: 1 at the first step,
        ``final_scale`` at the last. A one-step run keeps the full rate (it has nothing to decay)."""
        if total_steps <= 1:
            return 1.0
        progress = min(step, total_steps - 1) / (total_steps - 1)
        return self.final_scale + (1.0 - self.final_scale) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def plan(self, step: int, total_steps: int) -> StepPlan:
        f = self.factor(step, total_steps)
        return StepPlan(self.d_steps, self.g_steps, f, f)


class CriticWarmupSchedule(Schedule):
    """``warmup_d_steps`` D updates for the first ``warmup_steps`` iterations and on every
    ``every``-th iteration (``every=0``: never again), ``d_steps`` otherwise; constant learning rates."""

    def __init__(self, d_steps: int = 5, g_steps: int = 1, warmup_d_steps: int = 100, warmup_steps: int = 25,
                 every: int = 500):
        self.d_steps = _count("d_steps", d_steps, 1)
        self.g_steps = _count("g_steps", g_steps, 1)
        self.warmup_d_steps = _count("warmup_d_steps", warmup_d_steps, 1)
        self.warmup_steps = _count("warmup_steps", warmup_steps, 0)
        self.every = _count("every", every, 0)

    def d_steps_at(self, step: int) -> int:
        heavy = step < self.warmup_steps or (self.every > 0 and step % self.every == 0)
        return self.warmup_d_steps if heavy else self.d_steps

    def plan(self, step: int, total_steps: int) -> StepPlan:
        return StepPlan(self.d_steps_at(step), self.g_steps)


def cosine(d_steps: int = 1, g_steps: int = 1, final_scale: float = 0.0) -> Schedule:
    """Cosine decay of both learning rates from 1 to final_scale over the run (SGDR without restarts)."""
    return CosineSchedule(d_steps, g_steps, final_scale)


def critic_warmup(d_steps: int = 5, g_steps: int = 1, warmup_d_steps: int = 100, warmup_steps: int = 25,
                  every: int = 500) -> Schedule:
    """Extra D steps for the first warmup_steps iterations and every `every` iterations (WGAN reference code)."""
    return CriticWarmupSchedule(d_steps, g_steps, warmup_d_steps, warmup_steps, every)
