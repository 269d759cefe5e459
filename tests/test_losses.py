"""Built-in losses against their closed forms, on hand-made logits.

D is the identity on 1-D data (``D(x) = x[:, 0]``), so the data are the logits and gradients
w.r.t. the data are gradients w.r.t. the logits.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganbench.api import GanbenchError
from ganbench.builtin import losses
from ganbench.builtin.losses import gradient_penalty, interpolate, r1_penalty
from ganbench.registry import Registry

torch.set_num_threads(1)

REAL = [1.5, -0.5, 3.0]
FAKE = [-2.0, 0.5, -0.25]  # no sample at a hinge kink (real 1, fake -1)
N = 3


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class LinearCritic(nn.Module):
    """D(x) = sum(w * x) over the instance dims: grad_x D = w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


def logits(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[:, None].requires_grad_(True)


def evaluate(loss, method: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(value, dL/d real logits, dL/d fake logits) with the identity D."""
    real, fake = logits(REAL), logits(FAKE)
    value = getattr(loss, method)(Identity(), real, fake)
    g_real, g_fake = torch.autograd.grad(value, [real, fake], allow_unused=True)
    zeros = torch.zeros(N, dtype=torch.float64)
    return (value.item(), zeros if g_real is None else g_real[:, 0], zeros if g_fake is None else g_fake[:, 0])


r, f = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
sig = torch.sigmoid
ONES = torch.ones(N, dtype=torch.float64)


def log1pexp(x: torch.Tensor) -> torch.Tensor:  # softplus written out; fine for these small logits
    return torch.log(1 + torch.exp(x))


# (name, method) -> (value, dL/dr, dL/df) written from the papers' formulas
EXPECTED = {
    ("minimax", "d_loss"): (log1pexp(-r).mean() + log1pexp(f).mean(), -sig(-r) / N, sig(f) / N),
    ("minimax", "g_loss"): (torch.log(1 - sig(f)).mean(), 0 * r, -sig(f) / N),
    ("nonsaturating", "d_loss"): (log1pexp(-r).mean() + log1pexp(f).mean(), -sig(-r) / N, sig(f) / N),
    ("nonsaturating", "g_loss"): (-torch.log(sig(f)).mean(), 0 * r, -sig(-f) / N),
    ("wasserstein", "d_loss"): (f.mean() - r.mean(), -ONES / N, ONES / N),
    ("wasserstein", "g_loss"): (-f.mean(), 0 * r, -ONES / N),
    ("hinge", "d_loss"): ((1 - r).clamp(min=0).mean() + (1 + f).clamp(min=0).mean(),
                          -(r < 1).double() / N, (f > -1).double() / N),
    ("hinge", "g_loss"): (-f.mean(), 0 * r, -ONES / N),
    ("least_squares", "d_loss"): (0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(), (r - 1) / N, f / N),
    ("least_squares", "g_loss"): (0.5 * ((f - 1) ** 2).mean(), 0 * r, (f - 1) / N),
    ("relativistic_average", "d_loss"): (
        log1pexp(-(r - f.mean())).mean() + log1pexp(f - r.mean()).mean(),
        -(sig(f.mean() - r) + sig(f - r.mean()).mean()) / N,
        (sig(f.mean() - r).mean() + sig(f - r.mean())) / N),
    ("relativistic_average", "g_loss"): (
        log1pexp(-(f - r.mean())).mean() + log1pexp(r - f.mean()).mean(),
        None,  # D(real) is a constant for G: the trainer only steps G
        -(sig(r.mean() - f) + sig(r - f.mean()).mean()) / N),
}


@pytest.mark.parametrize("name,method", list(EXPECTED), ids=[f"{n}-{m}" for n, m in EXPECTED])
def test_loss_value_and_logit_gradients_match_closed_form(name: str, method: str) -> None:
    value, g_real, g_fake = evaluate(getattr(losses, name)(), method)
    want_value, want_g_real, want_g_fake = EXPECTED[name, method]
    assert value == pytest.approx(float(want_value), rel=1e-12)
    torch.testing.assert_close(g_fake, want_g_fake.double(), rtol=1e-12, atol=1e-15)
    if want_g_real is not None:
        torch.testing.assert_close(g_real, want_g_real.double(), rtol=1e-12, atol=1e-15)


def test_wgan_gp_without_penalty_is_wasserstein() -> None:
    assert evaluate(losses.wgan_gp(gp_weight=0.0), "d_loss")[0] == pytest.approx(float(f.mean() - r.mean()))


@pytest.mark.parametrize("fake_logit,expected", [(10.0, 10.0000454), (20.0, 20.0), (40.0, 40.0)])
def test_nonsaturating_d_loss_is_exact_softplus_for_large_fake_logits(fake_logit: float, expected: float) -> None:
    # one sample each; the real term softplus(-100) ~ 4e-44 vanishes in float32
    real, fake = torch.tensor([[100.0]]), torch.tensor([[fake_logit]])
    value = losses.nonsaturating().d_loss(Identity(), real, fake)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert value.item() == pytest.approx(expected, abs=2e-6)


def test_nonsaturating_g_does_not_saturate_where_minimax_does() -> None:
    # D is sure the fake is fake (logit -40): minimax G's gradient vanishes, non-saturating G's is -1
    real = torch.tensor([[0.0]])
    for loss, want_value, want_grad in ((losses.minimax(), -F.softplus(torch.tensor(-40.0)).item(), 0.0),
                                        (losses.nonsaturating(), 40.0, -1.0)):
        fake = torch.tensor([[-40.0]], requires_grad=True)
        value = loss.g_loss(Identity(), real, fake)
        (grad,) = torch.autograd.grad(value, fake)
        assert value.item() == pytest.approx(want_value, abs=1e-6)
        assert grad.item() == pytest.approx(want_grad, abs=1e-6)


def test_losses_stay_finite_for_huge_logits() -> None:
    real, fake = torch.tensor([[-1e4], [1e4]]), torch.tensor([[1e4], [-1e4]])
    for name in ("minimax", "nonsaturating", "relativistic_average", "hinge", "wasserstein"):
        for method in ("d_loss", "g_loss"):
            assert torch.isfinite(getattr(getattr(losses, name)(), method)(Identity(), real, fake)), (name, method)


def test_gradient_penalty_of_unit_norm_linear_critic_is_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 8, 8, generator=gen)
    critic = LinearCritic(w / w.norm())
    real, fake = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
    penalty, eps = gradient_penalty(critic, real, fake, generator=gen, return_eps=True)
    assert abs(penalty.item()) < 1e-6
    assert eps.shape == (4, 1, 1, 1)


def test_interpolates_are_convex_combinations_of_their_own_pair_with_one_weight() -> None:
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
    x_hat, eps = interpolate(real, fake, generator=gen)
    assert eps.shape == (4, 1, 1, 1) and ((eps >= 0) & (eps <= 1)).all()
    # solve each element for its weight: every element of a row must give the row's single eps
    weights = (x_hat - fake) / (real - fake)
    torch.testing.assert_close(weights, eps.expand_as(weights), rtol=1e-4, atol=1e-4)
    assert weights.flatten(1).std(1).max() < 1e-3


def test_gradient_penalty_trains_the_critic_in_closed_form() -> None:
    # ||w|| = 2: penalty (2 - 1)^2 = 1 and d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = w
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(2, 4, 4, generator=gen)
    critic = LinearCritic(2 * w / w.norm())
    real, fake = torch.randn(5, 2, 4, 4, generator=gen), torch.randn(5, 2, 4, 4, generator=gen)
    penalty = gradient_penalty(critic, real, fake)
    (grad,) = torch.autograd.grad(penalty, critic.w)
    assert penalty.item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(grad, critic.w.detach(), rtol=1e-5, atol=1e-6)
    d_loss = losses.wgan_gp(gp_weight=10.0).d_loss(critic, real, fake)
    expected = critic(fake).mean() - critic(real).mean() + 10.0
    assert d_loss.item() == pytest.approx(expected.item(), abs=1e-4)


def test_weight_clipping_clamps_every_discriminator_parameter() -> None:
    D = nn.Sequential(nn.Linear(2, 8), nn.Linear(8, 1))
    with torch.no_grad():
        for p in D.parameters():
            p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape))
    before = [p.detach().clone() for p in D.parameters()]
    losses.wasserstein(clip=0.05).after_d_step(D)
    for p, old in zip(D.parameters(), before):
        assert p.min() >= -0.05 and p.max() <= 0.05
        inside = old.abs() <= 0.05
        assert torch.equal(p[inside], old[inside])  # values already inside are untouched
        assert (p[~inside].abs() == 0.05).all()


def test_wgan_gp_does_not_clip() -> None:
    D = nn.Linear(2, 1)
    with torch.no_grad():
        D.weight.fill_(3.0)
    losses.wgan_gp().after_d_step(D)
    assert (D.weight == 3.0).all()


def test_r1_penalty_of_linear_critic_is_squared_weight_norm() -> None:
    gen = torch.Generator().manual_seed(3)
    critic = LinearCritic(torch.randn(3, 4, 4, generator=gen))
    real, fake = torch.randn(6, 3, 4, 4, generator=gen), torch.randn(6, 3, 4, 4, generator=gen)
    w_sq = critic.w.detach().pow(2).sum()
    assert r1_penalty(critic, real).item() == pytest.approx(w_sq.item(), rel=1e-5)
    gamma = 4.0
    for name in ("minimax", "nonsaturating", "hinge", "least_squares", "relativistic_average"):
        plain = getattr(losses, name)().d_loss(critic, real, fake)
        with_r1 = getattr(losses, name)(r1_gamma=gamma).d_loss(critic, real, fake)
        assert (with_r1 - plain).item() == pytest.approx(gamma / 2 * w_sq.item(), rel=1e-5), name
        # the penalty trains D: d/dw of gamma/2 ||w||^2 is gamma * w
        (g_plain,) = torch.autograd.grad(plain, critic.w)
        (g_r1,) = torch.autograd.grad(with_r1, critic.w)
        torch.testing.assert_close(g_r1 - g_plain, gamma * critic.w.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("factory,params", [
    (losses.nonsaturating, {"r1_gamma": -1.0}), (losses.hinge, {"r1_gamma": float("nan")}),
    (losses.wasserstein, {"clip": 0.0}), (losses.wgan_gp, {"gp_weight": -10.0}),
])
def test_invalid_parameters_are_user_errors(factory, params) -> None:
    with pytest.raises(GanbenchError, match=next(iter(params))):
        factory(**params)


def test_discriminator_with_wrong_output_shape_is_a_clear_error() -> None:
    real = fake = torch.zeros(4, 2)
    with pytest.raises(GanbenchError, match=r"one score per sample, shape \(4,\); got \(4, 1\)"):
        losses.hinge().d_loss(nn.Linear(2, 1), real, fake)


def test_registration_names_flags_and_descriptions() -> None:
    registry = Registry("loss")
    losses.ganbench_register_losses(registry)
    assert registry.names() == ["hinge", "least_squares", "minimax", "nonsaturating",
                                "relativistic_average", "wasserstein", "wgan_gp"]
    assert registry.get("wgan_gp").params["gp_weight"].default == 10.0
    assert registry.get("wasserstein").params["clip"].default == 0.01
    assert registry.get("hinge").params["r1_gamma"].default == 0.0
    assert registry.get("minimax").description.startswith("Original saturating")
    assert all(c.description for c in registry)
    assert [n for n in registry.names() if registry.create(n).critic] == ["wasserstein", "wgan_gp"]
    assert registry.create("least_squares").decision_threshold == 0.5
    assert registry.create("nonsaturating", {"r1_gamma": "2.5"}).r1_gamma == 2.5
