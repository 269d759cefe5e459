"""Every ganbench_* hook a plugin may implement.

Registration hooks receive a :class:`ganbench.registry.Registry` for one component kind and call
``registry.add(name, factory, **meta)`` for each component they provide. The factory's keyword
arguments are the component's parameters (their defaults are its defaults); the registry reads
them from the signature, ``ganbench list`` prints them and configs are validated against them.

Observer hooks are called by the trainer and the sweep; loggers and exporters implement them.
Their return values are ignored, and an exception in one is reported but never fails a trial.

A plugin is a module (or object) with functions decorated by ``ganbench.hookimpl``, registered
through the ``ganbench`` entry-point group, ``-p module.path`` on the command line, or built in.
"""
from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ganbench")


# -- registration -----------------------------------------------------------------------------

@hookspec
def ganbench_register_architectures(registry: Any) -> None:
    """Add architecture factories: ``factory(data_spec, z_dim, **params) -> GAN``.

    Pass ``kinds=("points",)`` / ``("images",)`` and optionally ``sizes=(8, 16, ...)`` to
    ``registry.add`` to declare which data the architecture supports; a mismatch is then a clear
    error before training starts.
    """


@hookspec
def ganbench_register_losses(registry: Any) -> None:
    """Add loss factories: ``factory(**params) -> Loss`` (``d_loss``, ``g_loss``, ``after_d_step``)."""


@hookspec
def ganbench_register_schedules(registry: Any) -> None:
    """Add schedule factories: ``factory(**params) -> Schedule`` (``plan(step, total)``, ``ema_decay``)."""


@hookspec
def ganbench_register_datasets(registry: Any) -> None:
    """Add dataset factories: ``factory(**params) -> Dataset``. Reference sets must not depend on the trial seed."""


@hookspec
def ganbench_register_metrics(registry: Any) -> None:
    """Add metric factories: ``factory(**params) -> Metric``."""


# -- observers ----------------------------------------------------------------------------------

@hookspec
def ganbench_trial_start(spec: Any, device: str) -> None:
    """A trial is about to train. ``spec`` is the frozen TrialSpec."""


@hookspec
def ganbench_eval_report(spec: Any, point: dict) -> None:
    """An evaluation point was recorded (step, images seen, wall time, metrics, losses...)."""


@hookspec
def ganbench_trial_finish(spec: Any, record: dict) -> None:
    """A trial finished (completed, diverged or failed); ``record`` is the full trial record."""


@hookspec
def ganbench_sweep_finish(study_name: str, records: list) -> None:
    """A sweep finished; ``records`` are the trial records of the study."""
