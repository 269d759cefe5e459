"""A third-party-style plugin whose loss raises: the sweep must record it as failed and go on."""
from __future__ import annotations

from ganbench import Loss, hookimpl


class Explodes(Loss):
    def d_loss(self, D, real, fake):
        raise RuntimeError("boom on purpose")

    def g_loss(self, D, real, fake):
        raise RuntimeError("boom on purpose")


@hookimpl
def ganbench_register_losses(registry):
    registry.add("explodes", Explodes, description="raises at its first step (tests)")
