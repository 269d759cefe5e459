"""Cosine decay and critic warm-up: closed-form plans, parameter checks, ganbench's schedule contract."""
from __future__ import annotations

import math

import pytest

from ganbench import GanbenchError, StepPlan
from ganbench.testing import check_schedule
from ganbench_extras.schedules import cosine, critic_warmup


def test_cosine_follows_a_half_cosine_from_one_to_zero():
    h = math.cos(math.pi / 4) / 2  # 0.3536
    scales = [cosine().plan(t, 5).d_lr_scale for t in range(5)]
    assert scales == pytest.approx([1.0, 0.5 + h, 0.5, 0.5 - h, 0.0], abs=1e-12)


def test_cosine_ends_at_final_scale_and_is_symmetric_about_the_middle():
    s = cosine(final_scale=0.2)
    plans = [s.plan(t, 11) for t in range(11)]
    assert plans[0].g_lr_scale == 1.0 and plans[-1].g_lr_scale == pytest.approx(0.2)
    assert all(p.d_lr_scale == p.g_lr_scale for p in plans)
    for t in range(11):  # cos(pi (1 - x)) = -cos(pi x): f(t) + f(T-1-t) = 1 + final
        assert plans[t].d_lr_scale + plans[10 - t].d_lr_scale == pytest.approx(1.2)


def test_cosine_keeps_step_counts_and_a_one_step_run_trains_at_full_rate():
    assert cosine(d_steps=3, g_steps=2).plan(4, 10) == StepPlan(3, 2, *(2 * [cosine().factor(4, 10)]))
    assert cosine().plan(0, 1) == StepPlan(1, 1, 1.0, 1.0)


def test_critic_warmup_matches_the_wgan_reference_code():
    s = critic_warmup()  # 100 D steps for the first 25 iterations and every 500th, else 5
    assert [s.plan(t, 2000).d_steps for t in (0, 24, 25, 499, 500, 501, 1000)] == [100, 100, 5, 5, 100, 5, 100]
    # over 1000 iterations: 25 warm-up + iteration 500 heavy, the other 974 light
    assert sum(s.plan(t, 1000).d_steps for t in range(1000)) == 26 * 100 + 974 * 5
    assert s.plan(30, 100) == StepPlan(5, 1, 1.0, 1.0)


def test_critic_warmup_every_zero_warms_up_only_once():
    s = critic_warmup(d_steps=2, warmup_d_steps=10, warmup_steps=3, every=0)
    assert [s.plan(t, 1000).d_steps for t in (0, 2, 3, 500)] == [10, 10, 2, 2]


@pytest.mark.parametrize("factory, params, message", [
    (cosine, {"final_scale": 1.5}, "final_scale must be in"),
    (cosine, {"d_steps": 0}, "d_steps must be an integer >= 1"),
    (critic_warmup, {"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
    (critic_warmup, {"every": 2.5}, "every must be an integer"),
])
def test_invalid_parameters_are_user_errors(factory, params, message):
    with pytest.raises(GanbenchError, match=message):
        factory(**params)


@pytest.mark.parametrize("factory, params", [
    (cosine, None), (cosine, {"final_scale": 0.1, "d_steps": 2}),
    (critic_warmup, None), (critic_warmup, {"warmup_steps": 0, "every": 7}),
])
def test_schedules_pass_the_ganbench_schedule_contract(factory, params):
    check_schedule(factory, params=params)
