"""The alternating training loop: wiring, step counts, reproducibility, divergence, records."""
from __future__ import annotations

import math

import pytest
import torch

from ganbench import Loss, hookimpl
from ganbench.plugins import PluginManager, get_plugin_manager
from ganbench.spec import TrialSpec
from ganbench.trainer import Components, Trainer, train

torch.set_num_threads(1)


def make_trainer(loss: str = "nonsaturating", schedule: str = "alternating", **schedule_params) -> Trainer:
    pm = get_plugin_manager()
    spec = TrialSpec(dataset="ring", arch="mlp", loss=loss, schedule=schedule, batch_size=16, z_dim=4,
                     arch_params={"hidden": 16}, schedule_params=schedule_params, steps=100).validated(pm)
    dataset = pm.registries["dataset"].create("ring")
    torch.manual_seed(0)
    gan = pm.registries["architecture"].create("mlp", {"hidden": 16}, data_spec=dataset.spec, z_dim=4)
    parts = Components(dataset, gan, pm.registries["loss"].create(loss),
                       pm.registries["schedule"].create(schedule, schedule_params), evaluator=None)
    return Trainer(spec, parts, torch.device("cpu"))


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def unchanged(module: torch.nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, b) for p, b in zip(module.parameters(), before))


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan_gp", "relativistic_average", "least_squares"])
def test_d_step_leaves_generator_untouched_and_gradient_free(loss):
    t = make_trainer(loss)
    t.iteration(0)  # leave stale gradients around from a full iteration
    g_before, d_before = snapshot(t.G), snapshot(t.D)
    for p in t.G.parameters():
        p.grad = None
    t.d_step()
    assert unchanged(t.G, g_before)
    assert all(p.grad is None for p in t.G.parameters())
    assert not unchanged(t.D, d_before)


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan_gp", "relativistic_average", "hinge"])
def test_g_step_leaves_discriminator_untouched(loss):
    t = make_trainer(loss)
    _, real = t.d_step()
    d_before, g_before = snapshot(t.D), snapshot(t.G)
    t.g_step(real)
    assert unchanged(t.D, d_before)
    assert not unchanged(t.G, g_before)
    # no gradient from the G step reaches D: D's grads are still exactly those of the D step
    t.opt_d.zero_grad(set_to_none=True)
    t.g_step(real)
    assert all(p.grad is None for p in t.D.parameters())


class CallOrder(Loss):
    def __init__(self, inner: Loss, calls: list[str]):
        self.inner, self.calls = inner, calls

    def d_loss(self, D, real, fake):
        self.calls.append("D")
        return self.inner.d_loss(D, real, fake)

    def g_loss(self, D, real, fake):
        self.calls.append("G")
        return self.inner.g_loss(D, real, fake)


def test_five_d_steps_per_iteration_make_500_d_and_100_g_steps():
    t = make_trainer(d_steps=5)
    calls: list[str] = []
    t.parts.loss = CallOrder(t.parts.loss, calls)
    for step in range(100):
        t.iteration(step)
    assert (t.d_steps_done, t.g_steps_done) == (500, 100)
    assert calls.count("D") == 500 and calls.count("G") == 100
    assert calls[:12] == ["D"] * 5 + ["G"] + ["D"] * 5 + ["G"]


def test_one_to_one_alternates():
    t = make_trainer()
    calls: list[str] = []
    t.parts.loss = CallOrder(t.parts.loss, calls)
    for step in range(10):
        t.iteration(step)
    assert calls == ["D", "G"] * 10


def test_same_seed_same_losses_step_by_step():
    spec = TrialSpec(dataset="ring", arch="mlp", arch_params={"hidden": 32}, steps=60, eval_every=30,
                     batch_size=32, seed=3, metric_params={"point_metrics": {"num_samples": 500}})
    a, b = train(spec), train(spec)
    assert a["losses"]["d_loss"] == b["losses"]["d_loss"]
    assert a["losses"]["g_loss"] == b["losses"]["g_loss"]
    assert len(a["losses"]["d_loss"]) == 60
    c = train(spec.with_overrides({"seed": 4}))
    assert c["losses"]["d_loss"] != a["losses"]["d_loss"]


def test_record_has_curve_throughput_and_accuracy():
    spec = TrialSpec(dataset="ring", arch="mlp", arch_params={"hidden": 32}, steps=40, eval_every=20,
                     batch_size=32, metric_params={"point_metrics": {"num_samples": 500}})
    record = train(spec)
    assert [p["step"] for p in record["curve"]] == [20, 40]
    assert [p["images_seen"] for p in record["curve"]] == [640, 1280]
    for point in record["curve"]:
        assert 0.0 <= point["d_acc_real"] <= 1.0 and 0.0 <= point["d_acc_fake"] <= 1.0
        assert point["d_grad_norm"] > 0 and point["g_grad_norm"] > 0
        assert math.isfinite(point["metrics"]["fd_points"])
    tp = record["throughput"]
    assert tp["images_per_s"] > 0 and tp["train_seconds"] > 0
    assert record["status"] in ("converged", "unstable", "collapsed")
    assert record["d_steps"] == 40 and record["g_steps"] == 40
    assert len(record["samples"]["values"]) == 512


class NaNAtStep(Loss):
    """Non-saturating until its 7th D loss, then NaN: an injected divergence."""

    def __init__(self, at: int = 7):
        from ganbench.builtin.losses import nonsaturating
        self.inner, self.at, self.calls = nonsaturating(), at, 0

    def d_loss(self, D, real, fake):
        self.calls += 1
        loss = self.inner.d_loss(D, real, fake)
        return loss * float("nan") if self.calls > self.at else loss

    def g_loss(self, D, real, fake):
        return self.inner.g_loss(D, real, fake)


class NaNPlugin:
    @hookimpl
    def ganbench_register_losses(self, registry):
        registry.add("nan_at_7", lambda: NaNAtStep(7), description="diverges at step 7")


def test_nonfinite_loss_is_a_diverged_result_at_the_right_step():
    pm = PluginManager()
    assert pm.load(NaNPlugin(), name="nanplugin"), pm.broken
    spec = TrialSpec(dataset="ring", arch="mlp", loss="nan_at_7", steps=50, eval_every=5,
                     batch_size=16, metric_params={"point_metrics": {"num_samples": 300}})
    record = train(spec, pm=pm)
    assert record["status"] == "diverged"
    assert record["convergence"]["diverged_step"] == 8  # the 8th iteration made the first NaN
    assert record["steps_done"] == 8  # stopped right there
    assert len(record["losses"]["d_loss"]) == 8 and math.isnan(record["losses"]["d_loss"][7])


def test_d_accuracy_is_measured_with_r1_penalty_too():
    spec = TrialSpec(dataset="ring", arch="mlp", arch_params={"hidden": 16}, steps=20, eval_every=20,
                     batch_size=16, loss_params={"r1_gamma": 1.0}, metric_params={"point_metrics": {"num_samples": 200}})
    point = train(spec)["curve"][-1]
    assert 0.0 <= point["d_acc_real"] <= 1.0 and 0.0 <= point["d_acc_fake"] <= 1.0
