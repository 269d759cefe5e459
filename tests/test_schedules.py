"""Built-in schedules: plans at given steps, validation, and the EMA update in closed form."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ganbench.api import GanbenchError, StepPlan
from ganbench.builtin import schedules
from ganbench.builtin.schedules import update_ema
from ganbench.registry import Registry

torch.set_num_threads(1)


def test_alternating_is_constant() -> None:
    s = schedules.alternating(d_steps=5, g_steps=2)
    assert s.ema_decay is None
    assert {s.plan(step, 100) for step in range(100)} == {StepPlan(5, 2, 1.0, 1.0)}
    assert schedules.alternating().plan(0, 1) == StepPlan(1, 1, 1.0, 1.0)


def test_ttur_scales_the_two_learning_rates() -> None:
    assert schedules.ttur().plan(0, 10) == StepPlan(1, 1, 4.0, 1.0)
    s = schedules.ttur(d_lr_scale=2.0, g_lr_scale=0.5)
    assert {s.plan(step, 50) for step in range(50)} == {StepPlan(1, 1, 2.0, 0.5)}


def test_linear_decay_midpoint_and_last_step() -> None:
    s = schedules.linear_decay()
    total = 101  # steps 0..100: factor 1 at step 0, 0.5 at step 50, 0 at step 100
    assert s.plan(0, total) == StepPlan(1, 1, 1.0, 1.0)
    assert s.plan(50, total) == StepPlan(1, 1, 0.5, 0.5)
    assert s.plan(100, total) == StepPlan(1, 1, 0.0, 0.0)
    s = schedules.linear_decay(final_scale=0.1)
    assert s.plan(50, total).d_lr_scale == pytest.approx(0.55)
    assert s.plan(100, total).g_lr_scale == pytest.approx(0.1)


def test_linear_decay_with_warmup() -> None:
    s = schedules.linear_decay(warmup_steps=10, final_scale=0.0)
    total = 111  # warm-up over steps 0..9, decay over steps 10..110
    assert [s.plan(step, total).d_lr_scale for step in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert s.plan(10, total).g_lr_scale == 1.0
    assert s.plan(60, total).g_lr_scale == pytest.approx(0.5)
    assert s.plan(110, total).d_lr_scale == pytest.approx(0.0)


def test_linear_decay_stays_in_warmup_when_the_run_is_shorter() -> None:
    s = schedules.linear_decay(warmup_steps=10)
    assert [s.plan(step, 3).d_lr_scale for step in range(3)] == pytest.approx([0.1, 0.2, 0.3])


def test_ema_preset() -> None:
    s = schedules.ema(ema_decay=0.99, d_steps=2)
    assert s.ema_decay == 0.99
    assert s.plan(7, 10) == StepPlan(2, 1, 1.0, 1.0)
    assert schedules.ema().ema_decay == 0.999
    assert schedules.ttur().ema_decay is None


@pytest.mark.parametrize("factory,params", [
    (schedules.alternating, {"d_steps": 0}), (schedules.alternating, {"g_steps": -1}),
    (schedules.ttur, {"d_lr_scale": 0.0}), (schedules.ttur, {"g_lr_scale": float("inf")}),
    (schedules.linear_decay, {"warmup_steps": -1}), (schedules.linear_decay, {"final_scale": 1.5}),
    (schedules.ema, {"ema_decay": 1.0}), (schedules.ema, {"ema_decay": 0.0}),
])
def test_invalid_parameters_are_user_errors(factory, params) -> None:
    with pytest.raises(GanbenchError, match=next(iter(params))):
        factory(**params)


def test_update_ema_is_one_lerp_step_and_copies_buffers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema_model = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(8, 3))  # moves BatchNorm's running statistics
    before = {n: p.detach().clone() for n, p in ema_model.named_parameters()}
    d = 0.9
    update_ema(ema_model, model, d)
    params = dict(model.named_parameters())
    for name, p in ema_model.named_parameters():
        torch.testing.assert_close(p, d * before[name] + (1 - d) * params[name].detach())
        assert p.grad is None
    for (name, b), (_, ref) in zip(ema_model.named_buffers(), model.named_buffers()):
        assert torch.equal(b, ref), name


def test_update_ema_converges_geometrically_to_a_fixed_model() -> None:
    model, ema_model = nn.Linear(2, 2), nn.Linear(2, 2)
    start = ema_model.weight.detach().clone()
    for _ in range(5):
        update_ema(ema_model, model, 0.5)
    expected = model.weight + 0.5 ** 5 * (start - model.weight)
    torch.testing.assert_close(ema_model.weight, expected.detach())


def test_registration() -> None:
    registry = Registry("schedule")
    schedules.ganbench_register_schedules(registry)
    assert registry.names() == ["alternating", "ema", "linear_decay", "ttur"]
    assert {n: p.default for n, p in registry.get("ttur").params.items()} == {
        "d_steps": 1, "g_steps": 1, "d_lr_scale": 4.0, "g_lr_scale": 1.0}
    assert set(registry.get("linear_decay").params) == {"d_steps", "g_steps", "warmup_steps", "final_scale"}
    assert registry.get("ema").params["ema_decay"].default == 0.999
    assert all(c.description for c in registry)
    assert registry.create("alternating", {"d_steps": "5"}).plan(0, 1).d_steps == 5
