"""The plugin module named by the ``ganbench`` entry point in pyproject.toml.

ganbench imports it, validates every ``ganbench_*`` function against its hook specs (a misspelled
hook name or an unknown argument rejects the whole plugin) and calls each registration hook once
with the registry of that kind. Keep this module light: it is imported by every ganbench command.
"""
from __future__ import annotations

from ganbench import hookimpl

from . import losses, schedules


@hookimpl
def ganbench_register_losses(registry) -> None:
    registry.add("dragan", losses.dragan)
    registry.add("wgan_div", losses.wgan_div)


@hookimpl
def ganbench_register_schedules(registry) -> None:
    registry.add("cosine", schedules.cosine)
    registry.add("critic_warmup", schedules.critic_warmup)
