"""Built-in adversarial losses.

D returns raw logits / critic scores of shape ``(n,)``; every loss applies its own link function
through ``softplus`` / ``relu`` / squares, never ``log(sigmoid(x))`` or clamps, so losses and
their gradients stay finite for logits of any magnitude.

Penalties that need gradients w.r.t. the input (WGAN-GP, R1) are computed with
``create_graph=True`` so that the penalty itself trains D.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganbench.api import GanbenchError, Loss
from ganbench.plugins import hookimpl


# -- helpers ----------------------------------------------------------------------------------

def scores(D: nn.Module, x: Tensor) -> Tensor:
    """D's raw outputs for ``x``, checked to be one score per sample (shape ``(n,)``)."""
    out = D(x)
    if out.shape != (x.shape[0],):
        raise GanbenchError(f"the discriminator must return one score per sample, shape ({x.shape[0]},); "
                            f"got {tuple(out.shape)}")
    return out


def _input_grad(out: Tensor, x: Tensor) -> Tensor:
    """d(sum out)/dx per sample, flattened to ``(n, numel)``; kept in the graph so it can be trained on."""
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1)


def r1_penalty(D: nn.Module, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): ``mean(||grad_x D(real)||^2)``, differentiable w.r.t. D's parameters.

    The loss multiplies it by ``r1_gamma / 2``.
    """
    real = real.detach().requires_grad_(True)  # a fresh leaf: R1 differentiates w.r.t. the data point
    return _input_grad(scores(D, real), real).pow(2).sum(1).mean()


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random points on the segments between paired real and fake samples.

    Returns ``(x_hat, eps)`` with ONE weight per sample: ``eps`` has shape ``(n, 1, 1, ...)`` and
    ``x_hat = eps * real + (1 - eps) * fake``.
    """
    if real.shape != fake.shape:
        raise GanbenchError(f"real and fake batches differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}")
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    return eps * real.detach() + (1 - eps) * fake.detach(), eps


def gradient_penalty(D: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None,
                     return_eps: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """WGAN-GP (Gulrajani et al. 2017): ``mean((||grad_x D(x_hat)||_2 - 1)^2)`` on interpolates.

    With ``return_eps=True`` returns ``(penalty, eps)`` so the interpolation weights can be checked.
    """
    x_hat, eps = interpolate(real, fake, generator)
    x_hat.requires_grad_(True)
    norms = torch.linalg.vector_norm(_input_grad(scores(D, x_hat), x_hat), dim=1)
    penalty = (norms - 1).pow(2).mean()
    return (penalty, eps) if return_eps else penalty


def _non_negative(name: str, value: float) -> float:
    if not value >= 0:  # also rejects NaN
        raise GanbenchError(f"loss parameter {name} must be >= 0, got {value!r}")
    return float(value)


# -- classifier losses (with the optional R1 penalty) -------------------------------------------

class LogitLoss(Loss):
    """A loss on D's logits: subclasses give the D and G objectives on ``(d_real, d_fake)``.

    ``d_loss`` adds ``r1_gamma / 2 * r1_penalty`` when ``r1_gamma > 0``, reusing D's forward
    pass on the real batch.
    """

    #: whether the G objective needs D(real) (relativistic losses do)
    g_uses_real = False

    def __init__(self, r1_gamma: float = 0.0):
        self.r1_gamma = _non_negative("r1_gamma", r1_gamma)

    def d_objective(self, d_real: Tensor, d_fake: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def g_objective(self, d_real: Tensor | None, d_fake: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        if self.r1_gamma > 0:
            real = real.detach().requires_grad_(True)
        d_real = scores(D, real)
        loss = self.d_objective(d_real, scores(D, fake))
        if self.r1_gamma > 0:
            loss = loss + 0.5 * self.r1_gamma * _input_grad(d_real, real).pow(2).sum(1).mean()
        return loss

    def g_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        d_real = None
        if self.g_uses_real:
            with torch.no_grad():  # D(real) is a constant for G: no graph needed
                d_real = scores(D, real)
        return self.g_objective(d_real, scores(D, fake))


class Minimax(LogitLoss):
    """The original saturating GAN loss (Goodfellow et al. 2014)."""

    def d_objective(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        # -log sigmoid(r) - log(1 - sigmoid(f)) == softplus(-r) + softplus(f)
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()

    def g_objective(self, d_real: Tensor | None, d_fake: Tensor) -> Tensor:
        # log(1 - sigmoid(f)) == -softplus(f): minimised by G, saturates when D is confident
        return -F.softplus(d_fake).mean()


class NonSaturating(Minimax):
    """Minimax D loss; G maximises log D(fake) instead (strong gradients early in training)."""

    def g_objective(self, d_real: Tensor | None, d_fake: Tensor) -> Tensor:
        return F.softplus(-d_fake).mean()


class Hinge(LogitLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018)."""

    def d_objective(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()

    def g_objective(self, d_real: Tensor | None, d_fake: Tensor) -> Tensor:
        return -d_fake.mean()


class LeastSquares(LogitLoss):
    """LSGAN (Mao et al. 2017) with targets a=0 (fake), b=1 (real), c=1 (G's goal)."""

    decision_threshold = 0.5

    def d_objective(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return 0.5 * (d_real - 1).pow(2).mean() + 0.5 * d_fake.pow(2).mean()

    def g_objective(self, d_real: Tensor | None, d_fake: Tensor) -> Tensor:
        return 0.5 * (d_fake - 1).pow(2).mean()


class RelativisticAverage(LogitLoss):
    """RaGAN (Jolicoeur-Martineau 2018), logistic link: is real more real than the average fake?"""

    g_uses_real = True

    @staticmethod
    def _objective(d_a: Tensor, d_b: Tensor) -> Tensor:
        # a should look more real than the average b, and b less real than the average a
        return F.softplus(-(d_a - d_b.mean())).mean() + F.softplus(d_b - d_a.mean()).mean()

    def d_objective(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return self._objective(d_real, d_fake)

    def g_objective(self, d_real: Tensor | None, d_fake: Tensor) -> Tensor:
        assert d_real is not None  # g_uses_real guarantees it
        return self._objective(d_fake, d_real)


# -- critic losses ------------------------------------------------------------------------------

class Wasserstein(Loss):
    """WGAN (Arjovsky et al. 2017): critic scores, Lipschitz constraint by weight clipping."""

    critic = True

    def __init__(self, clip: float = 0.01):
        if not clip > 0:
            raise GanbenchError(f"loss parameter clip must be > 0, got {clip!r}")
        self.clip = float(clip)

    def d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return scores(D, fake).mean() - scores(D, real).mean()

    def g_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return -scores(D, fake).mean()

    def after_d_step(self, D: nn.Module) -> None:
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-self.clip, self.clip)


class WassersteinGP(Wasserstein):
    """WGAN-GP (Gulrajani et al. 2017): Lipschitz constraint by a gradient penalty, no clipping."""

    def __init__(self, gp_weight: float = 10.0):
        self.gp_weight = _non_negative("gp_weight", gp_weight)

    def d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        loss = super().d_loss(D, real, fake)
        if self.gp_weight > 0:
            loss = loss + self.gp_weight * gradient_penalty(D, real, fake)
        return loss

    def after_d_step(self, D: nn.Module) -> None:
        """No clipping: the gradient penalty replaces it."""


# -- registration -------------------------------------------------------------------------------

def minimax(r1_gamma: float = 0.0) -> Loss:
    """Original saturating minimax loss: G minimises log(1 - D(fake))."""
    return Minimax(r1_gamma)


def nonsaturating(r1_gamma: float = 0.0) -> Loss:
    """Non-saturating loss: G maximises log D(fake); the standard DCGAN objective."""
    return NonSaturating(r1_gamma)


def wasserstein(clip: float = 0.01) -> Loss:
    """WGAN critic loss with weight clipping to [-clip, clip]."""
    return Wasserstein(clip)


def wgan_gp(gp_weight: float = 10.0) -> Loss:
    """WGAN critic loss with a gradient penalty on real/fake interpolates."""
    return WassersteinGP(gp_weight)


def hinge(r1_gamma: float = 0.0) -> Loss:
    """Hinge loss: D penalised inside the margin, G raises D's score on fakes."""
    return Hinge(r1_gamma)


def least_squares(r1_gamma: float = 0.0) -> Loss:
    """LSGAN least-squares loss with 0/1 targets (D says real above 0.5)."""
    return LeastSquares(r1_gamma)


def relativistic_average(r1_gamma: float = 0.0) -> Loss:
    """Relativistic average GAN (RaGAN) with the logistic link."""
    return RelativisticAverage(r1_gamma)


@hookimpl
def ganbench_register_losses(registry) -> None:
    for factory in (minimax, nonsaturating, wasserstein, wgan_gp, hinge, least_squares, relativistic_average):
        registry.add(factory.__name__, factory)
