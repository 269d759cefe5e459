"""The alternating GAN training loop (DESIGN.md section 1).

Each iteration asks the schedule for a plan, then runs ``d_steps`` discriminator updates (real
batch + a generated batch made under ``no_grad``, so no graph into G exists; only D's optimizer
steps) followed by ``g_steps`` generator updates (fresh noise; G -> D -> G loss; D's parameters
are frozen so the backward pass computes no D gradients; only G's optimizer steps). D's
gradients are cleared before every D update, so nothing from a G step reaches a D update.

Per-step statistics stay on the device as 0-dim tensors and are read back only at evaluation
points (one host sync per eval on GPU). On CPU, where reading a scalar is free, every loss is
checked for finiteness at once, so a diverged trial stops at the exact step.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .api import GAN, Dataset, GanbenchError, Loss, Schedule
from .environment import environment, peak_memory_mb
from .record import SCHEMA_VERSION
from .spec import TrialSpec

EVAL_SEED = 2**31 - 1  # fixed noise for evaluation: eval points differ by G only, not by z
MAX_KEPT_SAMPLES = 64


@dataclass
class Components:
    dataset: Dataset
    gan: GAN
    loss: Loss
    schedule: Schedule
    evaluator: Any


def build(spec: TrialSpec, pm: Any, device: torch.device) -> Components:
    """Create every component of a trial; all user errors surface here, before training."""
    from .builtin.architectures import check_compatible
    from .evaluation import Evaluator, build_metrics

    reg = pm.registries
    dataset = reg["dataset"].create(spec.dataset, dict(spec.dataset_params))
    check_compatible(reg["architecture"].get(spec.arch), dataset.spec, dataset=spec.dataset)
    torch.manual_seed(spec.seed)  # model initialisation is part of the seeded trial
    gan = reg["architecture"].create(spec.arch, dict(spec.arch_params), data_spec=dataset.spec, z_dim=spec.z_dim)
    loss = reg["loss"].create(spec.loss, dict(spec.loss_params))
    schedule = reg["schedule"].create(spec.schedule, dict(spec.schedule_params))
    evaluator = Evaluator(build_metrics(pm, spec, dataset), dataset, device)
    return Components(dataset, gan.to(device), loss, schedule, evaluator)


class ScoreTap(nn.Module):
    """Passes calls through to D and keeps D's outputs on this step's real and fake batches, so
    D accuracy costs no extra forward pass whatever the loss does inside."""

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator
        # [real, fake, on_real, on_fake] in a plain list: nn.Module.__setattr__ inspects every
        # Tensor assigned to a module attribute, which cost more than the wrapped call itself.
        object.__setattr__(self, "_seen", [None, None, None, None])

    @property
    def on_real(self) -> Tensor | None:
        return self._seen[2]

    @property
    def on_fake(self) -> Tensor | None:
        return self._seen[3]

    def watch(self, real: Tensor, fake: Tensor) -> None:
        self._seen[:] = (real, fake, None, None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.discriminator(x)
        seen = self._seen
        if _same(x, seen[0]):
            seen[2] = out.detach()
        elif _same(x, seen[1]):
            seen[3] = out.detach()
        return out


def _same(x: Tensor, batch: Tensor | None) -> bool:
    """x is this batch, or a detached view of it (as R1 makes to differentiate w.r.t. the input)."""
    return batch is not None and (x is batch or (x.data_ptr() == batch.data_ptr() and x.shape == batch.shape))


class StepLog:
    """Per-iteration statistics, one device tensor per iteration: d_loss, g_loss, D accuracy on
    real and on fake, then the norm of each D gradient tensor and of each G gradient tensor. The
    two global gradient norms are reduced per eval window (vectorised), not per step."""

    FIELDS = ("d_loss", "g_loss", "d_acc_real", "d_acc_fake", "d_grad_norm", "g_grad_norm")

    def __init__(self, n_d_grads: int = 0) -> None:
        self.rows: list[Tensor] = []
        self.n_d_grads = n_d_grads
        self.window_start = 0

    def add(self, row: Tensor) -> None:
        self.rows.append(row)

    def losses(self, start: int = 0) -> Tensor:
        """(steps, 2) tensor of D and G losses from iteration ``start`` on."""
        return torch.stack([r[:2] for r in self.rows[start:]]) if self.rows[start:] else torch.empty(0, 2)

    def losses_host(self) -> dict[str, list[float]]:
        d_g = self.losses().float().cpu()
        return {"d_loss": d_g[:, 0].tolist(), "g_loss": d_g[:, 1].tolist()}

    def close_window(self) -> dict[str, float]:
        """Mean of each field since the last call (one host sync)."""
        rows = self.rows[self.window_start:]
        self.window_start = len(self.rows)
        if not rows:
            return {name: math.nan for name in self.FIELDS}
        window = torch.stack(rows).float()
        split = 4 + self.n_d_grads
        d_norm = torch.linalg.vector_norm(window[:, 4:split], dim=1) if split > 4 else torch.zeros(len(rows))
        g_norm = torch.linalg.vector_norm(window[:, split:], dim=1) if window.shape[1] > split else torch.zeros(len(rows))
        means = torch.cat([window[:, :4].mean(0), d_norm.mean().reshape(1), g_norm.mean().reshape(1)]).tolist()
        return dict(zip(self.FIELDS, means))


class Trainer:
    def __init__(self, spec: TrialSpec, parts: Components, device: torch.device,
                 on_eval: Callable[[dict], None] | None = None, progress: Callable[[int], None] | None = None):
        self.spec, self.parts, self.device = spec, parts, device
        self.on_eval, self.progress = on_eval, progress
        gan = parts.gan
        self.G, self.D = gan.generator, gan.discriminator
        self.tap = ScoreTap(self.D)
        betas = (spec.beta1, spec.beta2)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=spec.lr_d, betas=betas)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=spec.lr_g, betas=betas)
        self.d_params, self.g_params = list(self.D.parameters()), list(self.G.parameters())
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False) if parts.schedule.ema_decay else None
        self.gen = torch.Generator(device).manual_seed(spec.seed)
        self.log = StepLog(n_d_grads=len(self.d_params))
        self.d_steps_done = self.g_steps_done = 0
        self.images_seen = 0
        self.threshold = float(getattr(parts.loss, "decision_threshold", 0.0))

    # -- one update of each network ------------------------------------------------------------

    def d_step(self) -> tuple[Tensor, Tensor]:
        bs = self.spec.batch_size
        real = self.parts.dataset.sample(bs, self.gen, self.device)
        with torch.no_grad():  # the fake batch is detached: no graph into G is even built
            fake = self.G(self.parts.gan.sample_z(bs, self.device, self.gen))
        self.opt_d.zero_grad(set_to_none=True)
        self.tap.watch(real, fake)
        loss = self.parts.loss.d_loss(self.tap, real, fake)
        loss.backward()
        self.opt_d.step()
        self.parts.loss.after_d_step(self.D)
        self.d_steps_done += 1
        self.images_seen += bs
        return loss, real

    def g_step(self, real: Tensor) -> Tensor:
        fake = self.G(self.parts.gan.sample_z(self.spec.batch_size, self.device, self.gen))
        self.opt_g.zero_grad(set_to_none=True)
        self._freeze_d(True)  # gradients flow through D into G, but D's own stay untouched
        try:
            self.tap.watch(real, fake)
            loss = self.parts.loss.g_loss(self.tap, real, fake)
            loss.backward()
        finally:
            self._freeze_d(False)
        self.opt_g.step()
        self.g_steps_done += 1
        if self.ema is not None:
            from .builtin.schedules import update_ema
            update_ema(self.ema, self.G, self.parts.schedule.ema_decay)
        return loss

    def _freeze_d(self, frozen: bool) -> None:
        for p in self.d_params:  # the cached list: D.requires_grad_() walks the module tree every call
            p.requires_grad_(not frozen)

    def iteration(self, step: int) -> tuple[Tensor, Tensor]:
        plan = self.parts.schedule.plan(step, self.spec.steps)
        for group in self.opt_d.param_groups:
            group["lr"] = self.spec.lr_d * plan.d_lr_scale
        for group in self.opt_g.param_groups:
            group["lr"] = self.spec.lr_g * plan.g_lr_scale
        for _ in range(plan.d_steps):
            d_loss, real = self.d_step()
        on_real, on_fake = self.tap.on_real, self.tap.on_fake
        for _ in range(plan.g_steps):
            g_loss = self.g_step(real)
        # D is frozen in G steps, so D's gradients are still those of its last update: one
        # _foreach_norm covers both networks (absent gradients count as norm 0).
        grads = [p.grad if p.grad is not None else p.new_zeros(()) for p in self.d_params + self.g_params]
        self.log.add(torch.stack([d_loss.detach().float(), g_loss.detach().float(),
                                  _accuracy(on_real, self.threshold, True, d_loss.device),
                                  _accuracy(on_fake, self.threshold, False, d_loss.device),
                                  *torch._foreach_norm(grads)]))
        return d_loss, g_loss

    # -- evaluation -----------------------------------------------------------------------------

    def eval_generator(self) -> nn.Module:
        return self.ema if self.ema is not None else self.G

    def sample(self, n: int, batch: int = 500) -> Tensor:
        """n generated instances from the evaluated generator, with fixed noise, on the CPU."""
        G = self.eval_generator()
        was_training = G.training
        G.eval()
        gen = torch.Generator(self.device).manual_seed(EVAL_SEED)
        out = []
        with torch.no_grad():
            for start in range(0, n, batch):
                z = self.parts.gan.sample_z(min(batch, n - start), self.device, gen)
                out.append(G(z).float().cpu())
        G.train(was_training)
        return torch.cat(out) if out else torch.empty(0)


def _accuracy(scores: Tensor | None, threshold: float, real: bool, device: torch.device) -> Tensor:
    if scores is None:
        return torch.tensor(math.nan, device=device)
    return torch.mean(scores > threshold if real else scores <= threshold, dtype=torch.float32)


def train(spec: TrialSpec, device: str | torch.device = "cpu", pm: Any = None, *,
          on_eval: Callable[[dict], None] | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Run one trial and return its record (see ganbench.record). User errors raise GanbenchError
    before training; a diverged trial is a result (status "diverged"), not an exception."""
    from .plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    device = resolve_device(device)
    spec = spec.validated(pm)
    parts = build(spec, pm, device)
    pm.notify("ganbench_trial_start", spec=spec, device=str(device))
    trainer = Trainer(spec, parts, device, on_eval, progress)
    loop = _Loop(trainer, pm)
    loop.run()
    record = loop.record()
    pm.notify("ganbench_trial_finish", spec=spec, record=record)
    return record


class _Loop:
    """Drives a Trainer through its budget, timing training apart from evaluation."""

    def __init__(self, trainer: Trainer, pm: Any):
        self.t, self.pm = trainer, pm
        self.curve: list[dict] = []
        self.train_seconds = self.eval_seconds = 0.0
        self.diverged_step: int | None = None
        self.pruned = False
        self.protocol: dict = {}
        self.steps_done = 0
        # On CPU reading a loss is free, so divergence is caught at the exact step; on GPU the
        # losses are checked in chunks to avoid a host sync per step.
        self.check_every = 1 if trainer.device.type == "cpu" else 50

    def run(self) -> None:
        t, spec = self.t, self.t.spec
        every = spec.eval_every or spec.steps
        self.start = time.perf_counter()
        tick = self.start
        for step in range(spec.steps):
            d_loss, g_loss = t.iteration(step)
            self.steps_done = step + 1
            if self.check_every == 1:  # CPU: reading two scalars costs ~1 us, no log slicing
                if not (math.isfinite(d_loss.item()) and math.isfinite(g_loss.item())):
                    self.diverged_step = self.steps_done
                    break
            elif self.steps_done % self.check_every == 0 or self.steps_done == spec.steps:
                if self._check_divergence():
                    break
            if t.progress:
                t.progress(self.steps_done)
            if self.steps_done % every == 0 or self.steps_done == spec.steps:
                tick = self._evaluate(tick)
                if self.pruned:
                    break
        if self.diverged_step is not None:
            self._synchronize()
            self.train_seconds += time.perf_counter() - tick
        self.wall_seconds = time.perf_counter() - self.start

    def _synchronize(self) -> None:
        if self.t.device.type == "cuda":
            torch.cuda.synchronize(self.t.device)

    def _check_divergence(self) -> bool:
        start = self.steps_done - self.check_every if self.check_every > 1 else self.steps_done - 1
        recent = self.t.log.losses(start).cpu()
        finite = torch.isfinite(recent).all(dim=1).tolist()
        if all(finite):
            return False
        self.diverged_step = start + finite.index(False) + 1  # steps count from 1, like eval points
        return True

    def _evaluate(self, tick: float) -> float:
        t = self.t
        self._synchronize()
        now = time.perf_counter()
        self.train_seconds += now - tick
        window = t.log.close_window()
        values, self.protocol = t.parts.evaluator(t.sample)
        point = {"step": self.steps_done, "images_seen": t.images_seen, "wall_time": self.train_seconds,
                 "primary": t.parts.evaluator.primary, "metrics": values, **window}
        self.curve.append(point)
        self.pm.notify("ganbench_eval_report", spec=t.spec, point=point)
        if t.on_eval and t.on_eval(point):
            self.pruned = True  # the caller (a pruner) stops this trial here
        done = time.perf_counter()
        self.eval_seconds += done - now
        return done

    def record(self) -> dict:
        from .evaluation import summarize

        t, spec = self.t, self.t.spec
        evaluator = t.parts.evaluator
        convergence = summarize(self.curve, evaluator.primary, evaluator.lower_is_better,
                                diverged_step=self.diverged_step)
        final = self.curve[-1]["metrics"] if self.curve else {}
        status = "pruned" if self.pruned and self.diverged_step is None else convergence["status"]
        return {
            "schema": SCHEMA_VERSION, "trial_key": spec.key(), "config": spec.config_label(),
            "spec": spec.to_dict(), "status": status, "error": None,
            "device": str(t.device), "primary": evaluator.primary,
            "lower_is_better": evaluator.lower_is_better, "metrics": final, "curve": self.curve,
            "convergence": convergence, "throughput": self._throughput(),
            "protocol": self.protocol, "environment": environment(t.device),
            "components": provenance(spec, self.pm),
            "steps_done": self.steps_done, "d_steps": t.d_steps_done, "g_steps": t.g_steps_done,
            "losses": t.log.losses_host(), "samples": self._samples(),
        }

    def _throughput(self) -> dict:
        t = self.t
        secs = max(self.train_seconds, 1e-9)
        return {"images_per_s": t.images_seen / secs, "step_time_ms": 1000 * secs / max(self.steps_done, 1),
                "peak_memory_mb": peak_memory_mb(t.device), "train_seconds": self.train_seconds,
                "eval_seconds": self.eval_seconds, "wall_seconds": self.wall_seconds}

    def _samples(self) -> dict:
        spec = self.t.parts.dataset.spec
        n = 512 if spec.kind == "points" else (64 if spec.size <= 16 else 16)
        samples = self.t.sample(n)
        ok = torch.isfinite(samples).all().item()
        return {"kind": spec.kind, "shape": list(spec.shape),
                "values": samples.round(decimals=3).tolist() if ok else []}


def provenance(spec: TrialSpec, pm: Any) -> dict[str, dict[str, str]]:
    """Which plugin (and version) provided each component, so a result can be traced to code."""
    out = {}
    for attr, kind in (("dataset", "dataset"), ("arch", "architecture"), ("loss", "loss"), ("schedule", "schedule")):
        provider = pm.registries[kind].get(getattr(spec, attr)).provider
        info = pm.info.get(provider)
        out[attr] = {"name": getattr(spec, attr), "plugin": provider, "version": getattr(info, "version", "")}
    return out


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except RuntimeError:
        raise GanbenchError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise GanbenchError(f"device {str(device)!r} is not supported; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanbenchError(f"device {device} requested but CUDA is not available here; use --device cpu")
    return device


def run_trial(spec: TrialSpec, device: str | torch.device = "cpu", pm: Any = None, **kwargs: Any) -> dict:
    """Like :func:`train`, but an exception inside the trial becomes a ``failed`` record with a
    short reason instead of propagating (what a sweep needs: one bad point must not stop it)."""
    try:
        return train(spec, device, pm, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of a trial is a result
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return failed_record(spec, str(device), reason.rstrip(": "))


def failed_record(spec: TrialSpec, device: str, reason: str) -> dict:
    return {"schema": SCHEMA_VERSION, "trial_key": spec.key(), "config": spec.config_label(),
            "spec": spec.to_dict(), "status": "failed", "error": reason, "device": device,
            "primary": None, "lower_is_better": True, "metrics": {}, "curve": [], "convergence": {},
            "throughput": {}, "protocol": {}, "environment": environment(torch.device(device))}
