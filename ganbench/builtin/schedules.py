"""Built-in training schedules and the EMA update the trainer uses.

One class, :class:`PiecewiseLinearSchedule`, backs every preset: constant D/G step counts,
constant learning-rate multipliers (TTUR), an optional linear warm-up and linear decay of both
learning rates, and an optional EMA of G. Each preset factory exposes only its own parameters.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ganbench.api import GanbenchError, Schedule, StepPlan
from ganbench.plugins import hookimpl


def _check_steps(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GanbenchError(f"schedule parameter {name} must be an integer >= 1, got {value!r}")
    return value


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise GanbenchError(f"schedule parameter {name} must be a finite number > 0, got {value!r}")
    return float(value)


class PiecewiseLinearSchedule(Schedule):
    """Constant step counts; lr multipliers ``base * factor(step)`` where ``factor`` ramps
    linearly from ~0 to 1 over ``warmup_steps``, then (when ``decay``) linearly from 1 to
    ``final_scale`` at the last step."""

    def __init__(self, d_steps: int = 1, g_steps: int = 1, d_lr_scale: float = 1.0, g_lr_scale: float = 1.0,
                 warmup_steps: int = 0, decay: bool = False, final_scale: float = 0.0,
                 ema_decay: float | None = None):
        self.d_steps = _check_steps("d_steps", d_steps)
        self.g_steps = _check_steps("g_steps", g_steps)
        self.d_lr_scale = _check_positive("d_lr_scale", d_lr_scale)
        self.g_lr_scale = _check_positive("g_lr_scale", g_lr_scale)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise GanbenchError(f"schedule parameter warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps
        if not (isinstance(final_scale, (int, float)) and 0 <= final_scale <= 1):
            raise GanbenchError(f"schedule parameter final_scale must be in [0, 1], got {final_scale!r}")
        self.decay = decay
        self.final_scale = float(final_scale)
        if ema_decay is not None and not (isinstance(ema_decay, (int, float)) and 0 < ema_decay < 1):
            raise GanbenchError(f"schedule parameter ema_decay must be in (0, 1), got {ema_decay!r}")
        self.ema_decay = None if ema_decay is None else float(ema_decay)

    def lr_factor(self, step: int, total_steps: int) -> float:
        """The multiplier shared by both learning rates at ``step`` (0-based) of ``total_steps``."""
        if step < self.warmup_steps:
            # (step + 1) so the first step already trains; reaches 1 at the end of warm-up
            return (step + 1) / self.warmup_steps
        if not self.decay:
            return 1.0
        last = total_steps - 1
        span = last - self.warmup_steps
        progress = 1.0 if span <= 0 else min(1.0, (step - self.warmup_steps) / span)
        return 1.0 + (self.final_scale - 1.0) * progress

    def plan(self, step: int, total_steps: int) -> StepPlan:
        factor = self.lr_factor(step, total_steps)
        return StepPlan(self.d_steps, self.g_steps, self.d_lr_scale * factor, self.g_lr_scale * factor)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(d_steps={self.d_steps}, g_steps={self.g_steps}, "
                f"d_lr_scale={self.d_lr_scale}, g_lr_scale={self.g_lr_scale}, warmup_steps={self.warmup_steps}, "
                f"decay={self.decay}, final_scale={self.final_scale}, ema_decay={self.ema_decay})")


@torch.no_grad()
def update_ema(ema_module: nn.Module, module: nn.Module, decay: float) -> None:
    """In place: ``ema_param <- decay * ema_param + (1 - decay) * param``; buffers are copied.

    ``ema_module`` must be a copy of ``module`` (same parameter and buffer names).
    """
    params = dict(module.named_parameters())
    for name, ema_p in ema_module.named_parameters():
        ema_p.lerp_(params[name].detach().to(ema_p.dtype), 1.0 - decay)
    buffers = dict(module.named_buffers())
    for name, ema_b in ema_module.named_buffers():
        ema_b.copy_(buffers[name])


# -- presets ------------------------------------------------------------------------------------

def alternating(d_steps: int = 1, g_steps: int = 1) -> Schedule:
    """Alternate d_steps D updates and g_steps G updates at constant learning rates."""
    return PiecewiseLinearSchedule(d_steps, g_steps)


def ttur(d_steps: int = 1, g_steps: int = 1, d_lr_scale: float = 4.0, g_lr_scale: float = 1.0) -> Schedule:
    """Two time-scale update rule (Heusel et al. 2017): separate D and G learning-rate multipliers."""
    return PiecewiseLinearSchedule(d_steps, g_steps, d_lr_scale, g_lr_scale)


def linear_decay(d_steps: int = 1, g_steps: int = 1, warmup_steps: int = 0, final_scale: float = 0.0) -> Schedule:
    """Linear learning-rate warm-up, then linear decay of both learning rates to final_scale."""
    return PiecewiseLinearSchedule(d_steps, g_steps, warmup_steps=warmup_steps, decay=True, final_scale=final_scale)


def ema(d_steps: int = 1, g_steps: int = 1, ema_decay: float = 0.999) -> Schedule:
    """Constant learning rates; an exponential moving average of G is the evaluated generator."""
    return PiecewiseLinearSchedule(d_steps, g_steps, ema_decay=ema_decay)


@hookimpl
def ganbench_register_schedules(registry) -> None:
    for factory in (alternating, ttur, linear_decay, ema):
        registry.add(factory.__name__, factory)
