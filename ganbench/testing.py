"""Contract tests every built-in and third-party component passes; plugin authors reuse them.

Each ``check_*`` function raises ``AssertionError`` with a message that names the mistake, so it
works under pytest and anywhere else::

    from ganbench.testing import check_loss, parametrize_components

    def test_my_loss():
        check_loss(my_loss_factory, params={"margin": 2.0})

    @parametrize_components("loss")          # every registered loss, built-in or installed
    def test_every_loss(component):
        check_loss(component)

The checks use tiny CPU models and a few samples; each takes milliseconds.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .api import GAN, DataSpec, Dataset, Loss, Schedule, StepPlan
from .registry import KINDS, Component

_PLURALS = {"architectures": "architecture", "losses": "loss", "schedules": "schedule",
            "datasets": "dataset", "metrics": "metric"}


# -- building what is checked -----------------------------------------------------------------

def _build(obj: Any, params: dict[str, Any] | None, is_built: Callable[[Any], bool], *supplied: Any) -> Any:
    """A component instance from an instance, a factory or a registry Component."""
    if is_built(obj):
        if params:
            raise TypeError("params only apply to a factory, not to an already built component")
        return obj
    factory = obj.factory if isinstance(obj, Component) else obj
    return factory(*supplied, **(params or {}))


def _label(obj: Any) -> str:
    if isinstance(obj, Component):
        return f"{obj.kind} {obj.name!r}"
    return getattr(obj, "__name__", None) or type(obj).__name__


def _fail(label: str, message: str) -> None:
    raise AssertionError(f"{label}: {message}")


def _check_scalar(label: str, value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        _fail(label, f"{what} must return a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 0:
        _fail(label, f"{what} must return a 0-dim (scalar) tensor, got shape {tuple(value.shape)}; reduce with .mean()")
    if not torch.isfinite(value):
        _fail(label, f"{what} is not finite ({value.item()}) on ordinary data")
    if not value.requires_grad:
        _fail(label, f"{what} does not require grad: it cannot train anything (is it computed under no_grad or detached?)")
    return value


# -- losses -----------------------------------------------------------------------------------

class _LogitD(nn.Module):
    """D(x) = scale * x[:, 0]: the data *are* the logits. Records its outputs so a check can read
    d loss / d logit for each sample, however the loss detaches or re-wraps its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.outputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        out = x.flatten(1)[:, 0] * self.scale
        if out.requires_grad:
            self.outputs.append(out)
        return out

    def grads(self, value: Tensor, *logit_batches: Tensor) -> tuple[Tensor, ...]:
        """d value / d scale, then the total d value / d output for each batch of logits.

        Read with autograd.grad rather than retain_grad: a penalty's own autograd.grad call
        would otherwise add its grad_outputs (ones) to the retained gradients.
        """
        found = torch.autograd.grad(value, [self.scale, *self.outputs], allow_unused=True)
        totals = []
        for logits in logit_batches:
            total = torch.zeros_like(logits)
            for out, g in zip(self.outputs, found[1:]):
                if g is not None and torch.equal(out.detach(), logits):
                    total = total + g
            totals.append(total)
        return (found[0], *totals)


def _tiny_gan(dtype: torch.dtype) -> tuple[nn.Module, nn.Module, Tensor, Tensor]:
    """A 4-d noise -> 2-d point G, a smooth (tanh) D, a real batch and a noise batch; all seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)).to(dtype)
        D = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0)).to(dtype)
        real = (torch.randn(8, 2) * 0.5 + 1.0).to(dtype)
        z = torch.randn(8, 4).to(dtype)
    return G, D, real, z


def _logit_loss_grads(loss: Loss, method: str, real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """(loss value, d loss / d real logits, d loss / d fake logits, grad of D's parameter)."""
    D = _LogitD()
    real, fake = real_logits[:, None], fake_logits[:, None]
    if method == "g_loss":
        fake = fake.clone().requires_grad_(True)  # stands in for G's graph
    value = getattr(loss, method)(D, real, fake)
    if not (isinstance(value, Tensor) and value.requires_grad):
        _fail(f"loss {type(loss).__name__}", f"{method} on raw logits does not require grad")
    g_scale, g_real, g_fake = D.grads(value, real_logits, fake_logits)
    return value, g_real, g_fake, g_scale


def _check_outputs(label: str, loss: Loss) -> None:
    G, D, real, z = _tiny_gan(torch.float32)
    _check_scalar(label, loss.d_loss(D, real, G(z).detach()), "d_loss")
    _check_scalar(label, loss.g_loss(D, real, G(z)), "g_loss")


def _check_d_loss_isolated_from_g(label: str, loss: Loss) -> None:
    """The trainer steps D on a detached fake batch; nothing from G may end up in that graph,
    not even a fake batch the loss kept from an earlier g_loss call."""
    G, D, real, z = _tiny_gan(torch.float32)
    loss.g_loss(D, real, G(z))  # the previous G step (its graph is simply dropped)
    loss.d_loss(D, real, G(z).detach()).backward()
    leaked = [name for name, p in G.named_parameters() if p.grad is not None]
    if leaked:
        _fail(label, f"d_loss put gradient into the generator ({', '.join(leaked)}); "
                     "d_loss must only use the (detached) batches it is given, e.g. no fake kept from g_loss")
    if all(p.grad is None or not p.grad.any() for p in D.parameters()):
        _fail(label, "d_loss gave the discriminator no gradient")


def _check_g_loss_reaches_g(label: str, loss: Loss) -> None:
    G, D, real, z = _tiny_gan(torch.float32)
    loss.g_loss(D, real, G(z)).backward()
    grads = [p.grad for p in G.parameters()]
    if any(g is None for g in grads) or not any(g.any() for g in grads):
        _fail(label, "g_loss gave the generator no gradient: it must backpropagate through D into "
                     "`fake` (does it detach `fake` or call D under no_grad?)")
    if not all(torch.isfinite(g).all() for g in grads):
        _fail(label, "g_loss gave the generator a non-finite gradient")


def _check_large_logits(label: str, loss: Loss) -> None:
    """D outputs raw logits of any size; a loss expecting probabilities takes log() of negative
    numbers, a naive log(sigmoid(x)) / log(1 - sigmoid(x)) overflows: both give NaN / inf here."""
    t = loss.decision_threshold
    for magnitude in (1.0, 20.0):
        real = t + magnitude * torch.tensor([1.0, -1.0, 0.5, -0.5])
        fake = t + magnitude * torch.tensor([-1.0, 1.0, 0.25, -0.25])
        for method in ("d_loss", "g_loss"):
            value, g_real, g_fake, g_scale = _logit_loss_grads(loss, method, real, fake)
            parts = [value, g_real, g_fake] + ([g_scale] if g_scale is not None else [])
            if not all(isinstance(p, Tensor) and torch.isfinite(p).all() for p in parts):
                _fail(label, f"{method} or its gradient is not finite for D logits of magnitude {magnitude:g}: "
                             "D returns raw logits, not probabilities; use softplus/logsigmoid, never log(sigmoid(x))")


def _check_d_gradient_does_not_vanish(label: str, loss: Loss) -> None:
    """On samples D gets wrong, a D loss must keep pushing, and no less the more wrong D is.
    A loss applying sigmoid to D's already-squashed view of the logits (sigmoid twice) has a
    gradient ~sigmoid'(logit) that vanishes there."""
    t = loss.decision_threshold
    real = t - torch.tensor([2.0, 8.0])  # real samples D calls fake
    fake = t + torch.tensor([2.0, 8.0])  # fake samples D calls real
    _, g_real, g_fake, _ = _logit_loss_grads(loss, "d_loss", real, fake)
    for what, g in (("real", g_real), ("fake", g_fake)):
        moderate, far = g.abs().tolist()
        if moderate == 0 or far < 0.5 * moderate:
            _fail(label, f"d_loss gradient on misclassified {what} samples vanishes (|dL/dlogit| = {moderate:.3g} "
                         f"at margin 2, {far:.3g} at margin 8): D returns raw logits; does the loss apply "
                         "sigmoid to them twice, or treat them as probabilities?")


def _directional_mismatch(fn: Callable[[], Tensor], params: list[nn.Parameter], seed: int) -> str | None:
    """Compare autograd's directional derivative of ``fn`` with a central finite difference."""
    grads = torch.autograd.grad(fn(), params, allow_unused=True)
    gen = torch.Generator().manual_seed(seed)
    originals = [p.detach().clone() for p in params]
    h = 1e-5
    for _ in range(3):
        dirs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, dirs) if g is not None)
        values = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, o, d in zip(params, originals, dirs):
                    p.copy_(o + sign * h * d)
            values.append(float(fn().detach()))  # grad mode on: penalties call autograd.grad
        with torch.no_grad():
            for p, o in zip(params, originals):
                p.copy_(o)
        numeric = (values[0] - values[1]) / (2 * h)
        if abs(analytic - numeric) > 1e-4 * max(abs(analytic), abs(numeric)) + 1e-7:
            return f"autograd says {analytic:.6g}, finite differences say {numeric:.6g}"
    return None


def _seeded(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """Same random numbers (e.g. WGAN-GP's interpolation weights) on every call."""
    def call() -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            return fn()
    return call


def _check_gradients_are_complete(label: str, loss: Loss) -> None:
    """Autograd gradients must match finite differences of the loss value. A penalty on
    grad_x D computed without ``create_graph=True`` is a constant to autograd: the value includes
    it, the gradient does not, so the penalty never trains D."""
    G, D, real, z = _tiny_gan(torch.float64)
    fake = G(z).detach()
    mismatch = _directional_mismatch(_seeded(lambda: loss.d_loss(D, real, fake)), list(D.parameters()), seed=1)
    if mismatch:
        _fail(label, f"d_loss gradient w.r.t. D's parameters is incomplete ({mismatch}); a penalty that uses "
                     "torch.autograd.grad needs create_graph=True, and nothing in the loss may be detached")
    mismatch = _directional_mismatch(_seeded(lambda: loss.g_loss(D, real, G(z))), list(G.parameters()), seed=2)
    if mismatch:
        _fail(label, f"g_loss gradient w.r.t. G's parameters is incomplete ({mismatch})")


def _check_after_d_step(label: str, loss: Loss) -> None:
    _, D, _, _ = _tiny_gan(torch.float32)
    loss.after_d_step(D)
    if not all(torch.isfinite(p).all() for p in D.parameters()):
        _fail(label, "after_d_step left non-finite discriminator parameters")


def check_loss(factory_or_loss: Any, *, params: dict[str, Any] | None = None) -> Loss:
    """Check a loss (instance, factory or registry Component) against the Loss contract; return it."""
    loss = _build(factory_or_loss, params, lambda o: hasattr(o, "d_loss") and hasattr(o, "g_loss"))
    label = f"loss {_label(factory_or_loss)}"
    if not isinstance(getattr(loss, "critic", False), bool):
        _fail(label, "`critic` must be a bool")
    if not math.isfinite(getattr(loss, "decision_threshold", 0.0)):
        _fail(label, "`decision_threshold` must be a finite number")
    for check in (_check_outputs, _check_d_loss_isolated_from_g, _check_g_loss_reaches_g, _check_large_logits,
                  _check_d_gradient_does_not_vanish, _check_gradients_are_complete, _check_after_d_step):
        check(label, loss)
    return loss


# -- schedules --------------------------------------------------------------------------------

def _check_plan(label: str, plan: Any, step: int, total: int) -> None:
    where = f"plan({step}, {total})"
    if not isinstance(plan, StepPlan):
        _fail(label, f"{where} must return a StepPlan, got {type(plan).__name__}")
    for field in ("d_steps", "g_steps"):
        n = getattr(plan, field)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            _fail(label, f"{where}.{field} must be an int >= 1, got {n!r}")
    for field in ("d_lr_scale", "g_lr_scale"):
        s = getattr(plan, field)
        if not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0):
            _fail(label, f"{where}.{field} must be a finite number >= 0, got {s!r}")
        # only the very last step may reach 0 (a decay that ends at zero); earlier, 0 stalls training
        if s == 0 and step < total - 1:
            _fail(label, f"{where}.{field} is 0 before the last step: that player stops learning")


def check_schedule(factory_or_schedule: Any, *, params: dict[str, Any] | None = None,
                   total_steps: int = 100) -> Schedule:
    """Check a schedule (instance, factory or registry Component) over a whole run; return it."""
    schedule = _build(factory_or_schedule, params, lambda o: hasattr(o, "plan"))
    label = f"schedule {_label(factory_or_schedule)}"
    decay = getattr(schedule, "ema_decay", None)
    if decay is not None and not (isinstance(decay, (int, float)) and 0 < decay < 1):
        _fail(label, f"ema_decay must be None or in (0, 1), got {decay!r}")
    for total in (1, 2, total_steps):
        for step in range(total):
            plan = schedule.plan(step, total)
            _check_plan(label, plan, step, total)
            if schedule.plan(step, total) != plan:
                _fail(label, f"plan({step}, {total}) is not a pure function of its arguments")
    return schedule


# -- architectures ----------------------------------------------------------------------------

def _check_shapes(label: str, gan: GAN, spec: DataSpec, n: int) -> Tensor:
    z = gan.sample_z(n, "cpu")
    x = gan.generator(z)
    if tuple(x.shape) != (n, *spec.shape):
        _fail(label, f"G(z) has shape {tuple(x.shape)}, expected {(n, *spec.shape)} for z of shape {tuple(z.shape)}")
    if not torch.isfinite(x).all():
        _fail(label, "G(z) is not finite")
    if spec.kind == "images" and (x.min() < -1 or x.max() > 1):
        _fail(label, f"G(z) images must lie in [-1, 1] (end G with tanh); got [{x.min():.3g}, {x.max():.3g}]")
    scores = gan.discriminator(x)
    if tuple(scores.shape) != (n,):
        _fail(label, f"D(x) has shape {tuple(scores.shape)}, expected ({n},): one raw logit per sample")
    if not torch.isfinite(scores).all():
        _fail(label, "D(x) is not finite")
    return scores


def _check_gradients_flow(label: str, gan: GAN, spec: DataSpec) -> None:
    gan.zero_grad(set_to_none=True)
    _check_shapes(label, gan, spec, 4).mean().backward()
    for part in ("generator", "discriminator"):
        module = getattr(gan, part)
        missing = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
        if missing:
            _fail(label, f"{part} parameters get no gradient from D(G(z)): {', '.join(missing[:5])}")
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads or not any(g.any() for g in grads):
            _fail(label, f"{part} gets an all-zero gradient from D(G(z))")
        if not all(torch.isfinite(g).all() for g in grads):
            _fail(label, f"{part} gets a non-finite gradient")


def check_architecture(factory: Any, data_spec: DataSpec, z_dim: int = 8, *,
                       params: dict[str, Any] | None = None) -> GAN:
    """Check an architecture factory (or registry Component) on ``data_spec``; return the GAN."""
    label = f"architecture {_label(factory)}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gan = _build(factory, params, lambda o: False, data_spec, z_dim)
        if not isinstance(gan, GAN):
            _fail(label, f"the factory must return a ganbench.api.GAN, got {type(gan).__name__}")
        if gan.z_dim != z_dim:
            _fail(label, f"GAN.z_dim is {gan.z_dim}, the factory was asked for {z_dim}")
        gan.train()
        _check_gradients_flow(label, gan, data_spec)
        gan.eval()
        with torch.no_grad():
            _check_shapes(label, gan, data_spec, 1)  # batch size 1 must work in eval mode
    return gan


# -- datasets ---------------------------------------------------------------------------------

def _check_sample(label: str, dataset: Dataset) -> None:
    spec = dataset.spec
    batch = dataset.sample(8, torch.Generator().manual_seed(0), "cpu")
    if tuple(batch.shape) != (8, *spec.shape) or batch.dtype != torch.float32:
        _fail(label, f"sample(8) gave {tuple(batch.shape)} {batch.dtype}, expected {(8, *spec.shape)} torch.float32")
    if not torch.isfinite(batch).all():
        _fail(label, "sample() returned non-finite values")
    if spec.kind == "images" and (batch.min() < -1 or batch.max() > 1):
        _fail(label, f"images must lie in [-1, 1]; sample() gave [{batch.min():.3g}, {batch.max():.3g}]")
    again = dataset.sample(8, torch.Generator().manual_seed(0), "cpu")
    if not torch.equal(batch, again):
        _fail(label, "sample() is not determined by its torch.Generator (same seed, different batch)")


def _check_reference(label: str, dataset: Dataset) -> Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        ref = dataset.reference(16)
        torch.manual_seed(2)
        again = dataset.reference(16)
    if ref.dim() < 1 or tuple(ref.shape[1:]) != dataset.spec.shape or not 0 < len(ref) <= 16:
        _fail(label, f"reference(16) has shape {tuple(ref.shape)}, expected (<=16, *{dataset.spec.shape})")
    if not torch.equal(ref, again):
        _fail(label, "reference() changes between calls: metrics need a fixed reference set")
    labels = dataset.reference_labels(16)
    if labels is not None:
        if len(labels) != len(ref):
            _fail(label, f"reference_labels(16) has {len(labels)} labels for {len(ref)} reference samples")
        if dataset.num_classes is not None and (labels.min() < 0 or labels.max() >= dataset.num_classes):
            _fail(label, f"reference labels fall outside [0, num_classes={dataset.num_classes})")
    return ref


def check_dataset(dataset: Any, *, params: dict[str, Any] | None = None) -> Dataset:
    """Check a dataset (instance, factory or registry Component): samples, reference, fingerprint.

    Given a factory, a second instance built under a different global seed must have the same
    reference set and fingerprint (reference sets never depend on the trial seed).
    """
    label = f"dataset {_label(dataset)}"
    is_built = lambda o: hasattr(o, "sample") and hasattr(o, "spec")  # noqa: E731
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        built = _build(dataset, params, is_built)
    if not isinstance(built.spec, DataSpec):
        _fail(label, f"spec must be a ganbench.api.DataSpec, got {type(built.spec).__name__}")
    _check_sample(label, built)
    ref = _check_reference(label, built)
    fingerprint = built.fingerprint()
    if not isinstance(fingerprint, str) or not fingerprint or built.fingerprint() != fingerprint:
        _fail(label, f"fingerprint() must be a stable non-empty string, got {fingerprint!r}")
    if not is_built(dataset):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(2)
            other = _build(dataset, params, is_built)
        if not torch.equal(other.reference(16), ref) or other.fingerprint() != fingerprint:
            _fail(label, "a second instance has a different reference set or fingerprint: they must not depend on the seed")
    return built


# -- registered components --------------------------------------------------------------------

def registered_components(kind: str, plugins: tuple[str, ...] = ()) -> list[Component]:
    """Every registered component of ``kind`` (built-in and installed plugins), sorted by name."""
    from .plugins import get_plugin_manager

    kind = _PLURALS.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; choose from {', '.join(KINDS)}")
    return list(get_plugin_manager(plugins).registries[kind])


def parametrize_components(kind: str, argname: str = "component", plugins: tuple[str, ...] = ()) -> Any:
    """``pytest.mark.parametrize`` over :func:`registered_components`, with the names as test ids."""
    import pytest

    components = registered_components(kind, plugins)
    return pytest.mark.parametrize(argname, components, ids=[c.name for c in components])


__all__ = ["check_loss", "check_schedule", "check_architecture", "check_dataset",
           "registered_components", "parametrize_components"]
