"""Two gradient-penalty losses that ganbench does not ship.

- ``dragan`` (Kodali et al. 2017, "On Convergence and Stability of GANs"): the non-saturating GAN
  loss plus ``gp_weight * E[(||grad_x D(x_p)|| - 1)^2]`` at points ``x_p`` near the *real* data, to
  keep D's gradient tame around the data manifold, where mode collapse starts.
- ``wgan_div`` (Wu et al. 2018, "Wasserstein Divergence for GANs"): a Wasserstein critic plus
  ``k * E[||grad_x D(x_hat)||^p]``, which needs no Lipschitz constraint and no target norm of 1.

Both penalties differentiate D's output w.r.t. its input with ``create_graph=True``: without it the
penalty would be a constant to autograd and would never train D (ganbench.testing catches that).
Only the public ganbench API is used (``Loss``, ``GanbenchError``), as a third-party plugin should.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganbench import GanbenchError, Loss


def scores(D: nn.Module, x: Tensor) -> Tensor:
    """D's raw outputs, checked to be one score per sample."""
    out = D(x)
    if out.shape != (x.shape[0],):
        raise GanbenchError(f"the discriminator must return shape ({x.shape[0]},), got {tuple(out.shape)}")
    return out


def input_gradient(D: nn.Module, x: Tensor) -> Tensor:
    """grad_x D(x) per sample, flattened to ``(n, numel)``, kept in the graph so a penalty on it trains D."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(scores(D, x).sum(), x, create_graph=True)
    return grad.flatten(1)


def perturb(real: Tensor, noise_scale: float, generator: torch.Generator | None = None) -> Tensor:
    """DRAGAN's points near the data, as in the authors' reference code:
    ``x + alpha * noise_scale * std(batch) * u`` with ``u ~ U[0, 1)`` per element and
    ``alpha ~ U[0, 1)`` per sample, so each point lies on a segment from ``x`` into its neighbourhood.
    ``std`` is the population std of the whole batch (one number; scale-free across datasets)."""
    real = real.detach()
    u = torch.rand(real.shape, generator=generator, device=real.device, dtype=real.dtype)
    alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(alpha_shape, generator=generator, device=real.device, dtype=real.dtype)
    return real + alpha * noise_scale * real.std(correction=0) * u


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random points on the segments between paired real and fake samples (one weight per sample)."""
    if real.shape != fake.shape:
        raise GanbenchError(f"real and fake batches differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}")
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    return eps * real.detach() + (1 - eps) * fake.detach()


def dragan_penalty(D: nn.Module, real: Tensor, noise_scale: float = 0.5,
                   generator: torch.Generator | None = None) -> Tensor:
    """``mean((||grad_x D(x_p)||_2 - 1)^2)`` at perturbed real points ``x_p`` (see :func:`perturb`)."""
    grad = input_gradient(D, perturb(real, noise_scale, generator))
    return (torch.linalg.vector_norm(grad, dim=1) - 1).pow(2).mean()


def divergence_penalty(D: nn.Module, real: Tensor, fake: Tensor, power: float = 6.0,
                       generator: torch.Generator | None = None) -> Tensor:
    """``mean(||grad_x D(x_hat)||_2^power)`` at real/fake interpolates ``x_hat``.

    Computed as ``(sum of squares)^(power / 2)``: no square root, so it is smooth at a zero gradient
    for every ``power >= 2``.
    """
    grad = input_gradient(D, interpolate(real, fake, generator))
    return grad.pow(2).sum(1).pow(power / 2).mean()


def _at_least(name: str, value: float, low: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
        raise GanbenchError(f"loss parameter {name} must be a finite number >= {low:g}, got {value!r}")
    return float(value)


class Dragan(Loss):
    """Non-saturating GAN loss with the DRAGAN penalty on D."""

    def __init__(self, gp_weight: float = 10.0, noise_scale: float = 0.5):
        self.gp_weight = _at_least("gp_weight", gp_weight, 0.0)
        self.noise_scale = _at_least("noise_scale", noise_scale, 0.0)

    def d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        # -log sigmoid(r) - log(1 - sigmoid(f)), written with softplus: finite for any logit
        loss = F.softplus(-scores(D, real)).mean() + F.softplus(scores(D, fake)).mean()
        if self.gp_weight > 0:
            loss = loss + self.gp_weight * dragan_penalty(D, real, self.noise_scale)
        return loss

    def g_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-scores(D, fake)).mean()


class WassersteinDivergence(Loss):
    """Wasserstein critic with the Wasserstein-divergence penalty (no clipping, no target norm)."""

    critic = True

    def __init__(self, k: float = 2.0, power: float = 6.0):
        self.k = _at_least("k", k, 0.0)
        self.power = _at_least("power", power, 2.0)

    def d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        loss = scores(D, fake).mean() - scores(D, real).mean()
        if self.k > 0:
            loss = loss + self.k * divergence_penalty(D, real, fake, self.power)
        return loss

    def g_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return -scores(D, fake).mean()


# The factories are what ganbench registers: their keyword defaults are the parameters that
# `ganbench list` shows and that configs set as `loss.gp_weight = 5`.

def dragan(gp_weight: float = 10.0, noise_scale: float = 0.5) -> Loss:
    """Non-saturating loss + DRAGAN gradient penalty around perturbed real data (Kodali et al. 2017)."""
    return Dragan(gp_weight, noise_scale)


def wgan_div(k: float = 2.0, power: float = 6.0) -> Loss:
    """Wasserstein critic + Wasserstein-divergence penalty k*E||grad D||^power (Wu et al. 2018)."""
    return WassersteinDivergence(k, power)
