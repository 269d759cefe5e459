"""DRAGAN and Wasserstein-divergence: closed-form values and gradients on linear and quadratic
critics, the perturbation's geometry, parameter checks, and ganbench's loss contract."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganbench import GanbenchError
from ganbench.testing import check_loss
from ganbench_extras.losses import divergence_penalty, dragan, dragan_penalty, perturb, wgan_div

torch.set_num_threads(1)

REAL = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0]])
FAKE = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
W, B = (3.0, 4.0), 0.5  # ||w|| = 5 everywhere, so any gradient penalty has a closed form


def linear_critic() -> nn.Module:
    """D(x) = 3 x0 + 4 x1 + 0.5: grad_x D = (3, 4) at every point."""
    D = nn.Sequential(nn.Linear(2, 1), nn.Flatten(0))
    with torch.no_grad():
        D[0].weight.copy_(torch.tensor([W]))
        D[0].bias.fill_(B)
    return D


class HalfSquaredNorm(nn.Module):
    """D(x) = |x|^2 / 2: grad_x D = x, so a penalty reads the points it was evaluated at."""

    def forward(self, x):
        return 0.5 * x.pow(2).sum(1)


def d_of(x):
    return [W[0] * a + W[1] * b + B for a, b in x.tolist()]


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# -- DRAGAN ---------------------------------------------------------------------------------------

def test_dragan_d_loss_is_nonsaturating_plus_weighted_penalty_on_a_linear_critic():
    d_real, d_fake = d_of(REAL), d_of(FAKE)
    base = mean(softplus(-r) for r in d_real) + mean(softplus(f) for f in d_fake)
    value = dragan(gp_weight=10.0).d_loss(linear_critic(), REAL, FAKE)
    assert value.item() == pytest.approx(base + 10.0 * (5 - 1) ** 2, rel=1e-6)
    assert dragan(gp_weight=0.0).d_loss(linear_critic(), REAL, FAKE).item() == pytest.approx(base, rel=1e-6)


def test_dragan_g_loss_is_nonsaturating():
    value = dragan().g_loss(linear_critic(), REAL, FAKE.clone().requires_grad_(True))
    assert value.item() == pytest.approx(mean(softplus(-f) for f in d_of(FAKE)), rel=1e-6)


def test_dragan_penalty_trains_d_with_its_closed_form_gradient():
    D = linear_critic()
    dragan(gp_weight=10.0).d_loss(D, REAL, FAKE).backward()
    d_real, d_fake = d_of(REAL), d_of(FAKE)
    for i in range(2):
        # d/dw_i of the two softplus terms, plus 10 * d/dw_i (|w| - 1)^2 = 10 * 2 (|w| - 1) w_i / |w|
        data = mean(-sigmoid(-r) * x[i] for r, x in zip(d_real, REAL.tolist())) \
            + mean(sigmoid(f) * x[i] for f, x in zip(d_fake, FAKE.tolist()))
        assert D[0].weight.grad[0, i].item() == pytest.approx(data + 10 * 2 * 4 * W[i] / 5, rel=1e-5)


def test_dragan_penalty_without_noise_is_evaluated_at_the_real_points():
    real = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.6, 0.8]])  # norms 5, 1, 1
    assert dragan_penalty(HalfSquaredNorm(), real, noise_scale=0.0).item() == pytest.approx(16 / 3, rel=1e-6)


def test_perturbation_moves_each_point_up_to_noise_scale_times_the_batch_std():
    real = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0)) * 3 + 1
    c, std = 0.5, real.std(correction=0).item()
    moved = perturb(real, c, torch.Generator().manual_seed(1)) - real
    assert moved.min() >= 0 and moved.max() <= c * std  # x + alpha * c * std * u, alpha, u in [0, 1)
    assert (moved / (c * std)).mean().item() == pytest.approx(0.25, abs=0.01)  # E[alpha] E[u] = 1/4
    again = perturb(real, c, torch.Generator().manual_seed(1)) - real
    assert torch.equal(moved, again)


# -- Wasserstein divergence -----------------------------------------------------------------------

@pytest.mark.parametrize("k, power", [(2.0, 6.0), (2.0, 2.0), (0.5, 4.0)])
def test_wgan_div_d_loss_is_critic_gap_plus_k_norm_to_the_power(k, power):
    gap = mean(d_of(FAKE)) - mean(d_of(REAL))  # 0.5 - 4.5
    value = wgan_div(k=k, power=power).d_loss(linear_critic(), REAL, FAKE)
    assert value.item() == pytest.approx(gap + k * 5.0 ** power, rel=1e-6)


def test_wgan_div_gradient_of_the_penalty_is_k_p_norm_to_the_p_minus_2_times_w():
    D = linear_critic()
    wgan_div(k=2.0, power=2.0).d_loss(D, REAL, FAKE).backward()
    for i in range(2):
        gap_grad = FAKE[:, i].mean().item() - REAL[:, i].mean().item()
        assert D[0].weight.grad[0, i].item() == pytest.approx(gap_grad + 2.0 * 2.0 * W[i], rel=1e-5)


def test_divergence_penalty_is_taken_between_real_and_fake():
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    # real == fake: every interpolate is x itself, and grad_x D = x
    assert divergence_penalty(HalfSquaredNorm(), x, x, power=2.0).item() == pytest.approx(13.0)
    assert divergence_penalty(HalfSquaredNorm(), x, x, power=6.0).item() == pytest.approx((25**3 + 1) / 2)


def test_wgan_div_g_loss_raises_fake_scores_and_is_a_critic():
    loss = wgan_div()
    assert loss.critic is True
    value = loss.g_loss(linear_critic(), REAL, FAKE.clone().requires_grad_(True))
    assert value.item() == pytest.approx(-mean(d_of(FAKE)))


# -- parameters and the contract ------------------------------------------------------------------

@pytest.mark.parametrize("factory, params, message", [
    (dragan, {"gp_weight": -1.0}, "gp_weight"),
    (dragan, {"noise_scale": float("nan")}, "noise_scale"),
    (wgan_div, {"power": 1.5}, "power must be a finite number >= 2"),
    (wgan_div, {"k": -0.1}, "k must be"),
])
def test_invalid_parameters_are_user_errors(factory, params, message):
    with pytest.raises(GanbenchError, match=message):
        factory(**params)


@pytest.mark.parametrize("factory, params", [
    (dragan, None), (dragan, {"gp_weight": 0.0}), (dragan, {"noise_scale": 2.0}),
    (wgan_div, None), (wgan_div, {"power": 2.0}),
])
def test_losses_pass_the_ganbench_loss_contract(factory, params):
    check_loss(factory, params=params)
