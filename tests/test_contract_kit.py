"""The contract kit: every built-in passes, and each deliberately broken component is rejected
with a message that names its mistake."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganbench.api import GAN, DataSpec, Loss, Schedule, StepPlan, TensorDataset
from ganbench.builtin import losses
from ganbench.testing import (
    check_architecture, check_dataset, check_loss, check_schedule, parametrize_components, registered_components,
)

torch.set_num_threads(1)


# -- every registered loss and schedule passes ---------------------------------------------------

@parametrize_components("loss")
def test_registered_loss_passes(component) -> None:
    check_loss(component)
    if "r1_gamma" in component.params:
        check_loss(component, params={"r1_gamma": 10.0})


@parametrize_components("schedule")
def test_registered_schedule_passes(component) -> None:
    check_schedule(component)
    if {"d_steps", "g_steps"} <= set(component.params):
        check_schedule(component, params={"d_steps": 3, "g_steps": 2})


def test_registered_components_include_every_builtin() -> None:
    assert {c.name for c in registered_components("losses")} >= {
        "minimax", "nonsaturating", "wasserstein", "wgan_gp", "hinge", "least_squares", "relativistic_average"}
    assert {c.name for c in registered_components("schedule")} >= {"alternating", "ttur", "linear_decay", "ema"}
    with pytest.raises(ValueError, match="unknown component kind"):
        registered_components("optimizer")


# -- broken losses -------------------------------------------------------------------------------

class NonScalar(Loss):
    def d_loss(self, D, real, fake):
        return F.softplus(-D(real)) + F.softplus(D(fake))  # per-sample, never reduced

    def g_loss(self, D, real, fake):
        return F.softplus(-D(fake)).mean()


class NotATensor(NonScalar):
    def d_loss(self, D, real, fake):
        return 0.5


class NaNLoss(NonScalar):
    def d_loss(self, D, real, fake):
        return (F.softplus(-D(real)) + F.softplus(D(fake))).mean() * float("nan")


class UnderNoGrad(NonScalar):
    def d_loss(self, D, real, fake):
        with torch.no_grad():
            return (F.softplus(-D(real)) + F.softplus(D(fake))).mean()


class DLossLeaksIntoG(Loss):
    """Replays the fakes of the last G step to D, forgetting to detach them: D's loss reaches G."""

    history = None

    def g_loss(self, D, real, fake):
        self.history = fake
        return F.softplus(-D(fake)).mean()

    def d_loss(self, D, real, fake):
        if self.history is not None:
            fake = torch.cat([fake, self.history])
        return F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()


class DetachedFakeInG(NonScalar):
    def d_loss(self, D, real, fake):
        return (F.softplus(-D(real)) + F.softplus(D(fake))).mean()

    def g_loss(self, D, real, fake):
        return F.softplus(-D(fake.detach())).mean()


class ExpectsProbabilities(DetachedFakeInG):
    """BCE written for a sigmoid-terminated D, fed raw logits."""

    def d_loss(self, D, real, fake):
        return -(torch.log(D(real)).mean() + torch.log(1 - D(fake)).mean())

    def g_loss(self, D, real, fake):
        return -torch.log(D(fake)).mean()


class NaiveLogSigmoid(DetachedFakeInG):
    """Right idea, unstable formula: log(sigmoid(x)) underflows to log(0) for large |x|."""

    def d_loss(self, D, real, fake):
        return -(torch.log(torch.sigmoid(D(real))).mean() + torch.log(1 - torch.sigmoid(D(fake))).mean())

    def g_loss(self, D, real, fake):
        return -torch.log(torch.sigmoid(D(fake))).mean()


class SigmoidTwice(DetachedFakeInG):
    """Treats the logits as probabilities and then applies BCE-with-logits to them."""

    def d_loss(self, D, real, fake):
        return (F.softplus(-torch.sigmoid(D(real))) + F.softplus(torch.sigmoid(D(fake)))).mean()

    def g_loss(self, D, real, fake):
        return F.softplus(-torch.sigmoid(D(fake))).mean()


class GPWithoutGraph(losses.WassersteinGP):
    """WGAN-GP whose penalty is computed without create_graph: its value is there, its gradient is not."""

    def d_loss(self, D, real, fake):
        x_hat, _ = losses.interpolate(real, fake)
        x_hat.requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat)
        penalty = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        return D(fake).mean() - D(real).mean() + self.gp_weight * penalty


class R1WithoutGraph(losses.NonSaturating):
    def d_loss(self, D, real, fake):
        real = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(real).sum(), real)
        return super().d_loss(D, real.detach(), fake) + 5.0 * grad.pow(2).sum(1).mean()


@pytest.mark.parametrize("broken,message", [
    (NonScalar(), "0-dim"),
    (NotATensor(), "must return a torch.Tensor"),
    (NaNLoss(), "not finite"),
    (UnderNoGrad(), "does not require grad"),
    (DLossLeaksIntoG(), "gradient into the generator"),
    (DetachedFakeInG(), "generator no gradient"),
    (ExpectsProbabilities(), "not finite"),
    (NaiveLogSigmoid(), "magnitude 20.*not probabilities"),
    (SigmoidTwice(), "misclassified .* vanishes"),
    (GPWithoutGraph(), "create_graph=True"),
    (R1WithoutGraph(), "create_graph=True"),
], ids=lambda v: type(v).__name__ if isinstance(v, Loss) else None)
def test_broken_loss_is_rejected(broken: Loss, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_loss(broken)


def test_check_loss_builds_from_factory_with_params() -> None:
    loss = check_loss(losses.wgan_gp, params={"gp_weight": 5.0})
    assert loss.gp_weight == 5.0


# -- schedules -----------------------------------------------------------------------------------

class PlanSchedule(Schedule):
    def __init__(self, plan_fn, ema_decay=None):
        self.plan_fn, self.ema_decay = plan_fn, ema_decay

    def plan(self, step, total_steps):
        return self.plan_fn(step, total_steps)


@pytest.mark.parametrize("schedule,message", [
    (PlanSchedule(lambda s, t: StepPlan(0, 1)), r"d_steps must be an int >= 1"),
    (PlanSchedule(lambda s, t: StepPlan(1, 1.5)), r"g_steps must be an int >= 1"),
    (PlanSchedule(lambda s, t: StepPlan(1, 1, float("nan"))), r"d_lr_scale must be a finite number"),
    (PlanSchedule(lambda s, t: StepPlan(1, 1, 1.0, -1.0)), r"g_lr_scale must be a finite number >= 0"),
    (PlanSchedule(lambda s, t: StepPlan(1, 1, 0.0 if s == t // 2 else 1.0)), r"0 before the last step"),
    (PlanSchedule(lambda s, t: (1, 1, 1.0, 1.0)), "must return a StepPlan"),
    (PlanSchedule(lambda s, t: StepPlan(1, 1), ema_decay=1.5), r"ema_decay must be None or in \(0, 1\)"),
    (PlanSchedule(lambda s, t: StepPlan(1, 1, float(torch.rand(())) + 0.5)), "not a pure function"),
], ids=["zero-d-steps", "float-g-steps", "nan-lr", "negative-lr", "zero-lr-mid-run", "tuple", "ema", "random"])
def test_broken_schedule_is_rejected(schedule: Schedule, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_schedule(schedule)


# -- architectures -------------------------------------------------------------------------------

class Squeeze(nn.Module):
    def forward(self, x):
        return x.squeeze()  # the bug: a batch of one becomes a 0-dim tensor


class Unbounded(nn.Module):
    def forward(self, x):
        return 5 * x  # stands in for a G that forgot its final tanh


class WithForgottenLayer(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.forgotten = nn.Linear(1, 1)  # registered, never called: its weights never train

    def forward(self, x):
        return self.body(x)


def mlp_gan(data_spec: DataSpec, z_dim: int, hidden: int = 16, out_act: str = "tanh",
            head: str = "flatten", unused: bool = False) -> GAN:
    n = data_spec.numel
    act = nn.Tanh() if out_act == "tanh" else Unbounded()
    G = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, n), act, nn.Unflatten(1, data_spec.shape))
    head_module = {"flatten": nn.Flatten(0), "squeeze": Squeeze(), "none": nn.Identity()}[head]
    D = nn.Sequential(nn.Flatten(1), nn.Linear(n, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2),
                      nn.Linear(hidden, 1), head_module)
    return GAN(G, WithForgottenLayer(D) if unused else D, z_dim)


IMAGES = DataSpec("images", (1, 4, 4))
POINTS = DataSpec("points", (2,))


@pytest.mark.parametrize("spec", [IMAGES, POINTS], ids=["images", "points"])
def test_good_architecture_passes(spec: DataSpec) -> None:
    gan = check_architecture(mlp_gan, spec, z_dim=8)
    assert gan.z_dim == 8 and not gan.training


@pytest.mark.parametrize("params,spec,message", [
    ({"out_act": "none"}, IMAGES, r"must lie in \[-1, 1\]"),
    ({"head": "none"}, POINTS, r"D\(x\) has shape \(4, 1\), expected \(4,\)"),
    ({"head": "squeeze"}, POINTS, r"D\(x\) has shape \(\), expected \(1,\)"),
    ({"unused": True}, POINTS, "get no gradient.*forgotten"),
], ids=["images-out-of-range", "d-returns-n-by-1", "squeeze-breaks-batch-of-one", "unused-parameter"])
def test_broken_architecture_is_rejected(params, spec: DataSpec, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_architecture(mlp_gan, spec, params=params)


def test_architecture_with_wrong_sample_shape_is_rejected() -> None:
    wrong = lambda data_spec, z_dim: mlp_gan(DataSpec("images", (1, 8, 8)), z_dim)  # noqa: E731
    with pytest.raises(AssertionError, match=r"G\(z\) has shape \(4, 1, 8, 8\), expected \(4, 1, 4, 4\)"):
        check_architecture(wrong, IMAGES)


# -- datasets ------------------------------------------------------------------------------------

def fixed_images(scale: float = 1.0) -> TensorDataset:
    images = torch.linspace(-1, 1, 40 * 16).reshape(40, 1, 4, 4) * scale
    return TensorDataset("tiny", images[:24], images[24:], kind="images")


class IgnoresGenerator(TensorDataset):
    def sample(self, n, generator, device="cpu"):
        return self.train[torch.randint(len(self.train), (n,))]


class ShufflingReference(TensorDataset):
    def reference(self, n=None):
        return self.test[torch.randperm(len(self.test))][:n]


def test_good_dataset_passes_as_instance_and_factory() -> None:
    check_dataset(fixed_images())
    assert check_dataset(fixed_images, params={"scale": 0.5}).reference().abs().max() == 0.5


@pytest.mark.parametrize("make,message", [
    (lambda: fixed_images(scale=2.0), r"must lie in \[-1, 1\]"),
    (lambda: IgnoresGenerator("x", torch.rand(30, 2), kind="points"), "not determined by its torch.Generator"),
    (lambda: ShufflingReference("x", torch.rand(30, 2), kind="points"), "changes between calls"),
], ids=["out-of-range", "ignores-generator", "shuffled-reference"])
def test_broken_dataset_instance_is_rejected(make, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_dataset(make())


def test_dataset_whose_reference_depends_on_the_seed_is_rejected() -> None:
    seeded = lambda: TensorDataset("x", torch.rand(30, 2), kind="points")  # noqa: E731 - global RNG
    with pytest.raises(AssertionError, match="must not depend on the seed"):
        check_dataset(seeded)
