"""Training throughput: ganbench's Trainer against a minimal hand-written PyTorch loop.

Both loops train the same GAN (built once through the registry, deep-copied so both start from
identical weights) on the same data with the same non-saturating loss, Adam settings and batch
size, and consume one seeded random stream in the same order. They therefore compute the same
thing, and the script checks it: after the run both must hold bit-identical losses and weights.

Columns:
- ``trainer``: ``Trainer.iteration`` driven exactly like ``_Loop.run`` drives it, including the
  per-step divergence check the real loop does on CPU, but with no metric evaluation.
- ``hand``: the hand-written loop (D frozen during G steps too, as ganbench does, so both do the
  same arithmetic and the ratio measures bookkeeping, not a different algorithm).
- ``train()``: the public ``ganbench.trainer.train`` end to end with ``eval_every=0`` (one final
  evaluation, with a small sample); its images/s comes from the record, whose ``train_seconds``
  already leaves evaluation out. It starts from fresh models each repeat, so it includes the
  first-step warm-up that the other two columns amortise.

Repetitions are interleaved (trainer, hand, train(), trainer, hand, ...) after a warm-up, so
drift in machine load hits every column alike; the table shows medians.

    python benchmarks/trainer_throughput.py                 # ~1-2 minutes on one core
    python benchmarks/trainer_throughput.py --steps 100 --repeats 3 --threads 2
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganbench.api import Metric, MetricResult, SampleFn, TensorDataset
from ganbench.plugins import PluginManager, hookimpl
from ganbench.spec import TrialSpec
from ganbench.trainer import Components, Trainer, _Loop, train

TARGET_RATIO = 0.95


@dataclass(frozen=True)
class Setup:
    label: str
    spec: TrialSpec


SETUPS = (
    Setup("dcgan / digits 8x8 / bs 64", TrialSpec(dataset="digits", arch="dcgan", batch_size=64, z_dim=32)),
    Setup("mlp / ring / bs 64", TrialSpec(dataset="ring", arch="mlp", batch_size=64, z_dim=32)),
)


# -- a cheap metric for train()'s one final evaluation ----------------------------------------------

class MeanGap(Metric):
    """Distance between the means of generated and reference data: a weak but real metric that
    costs next to nothing, so train() runs end to end without waiting on feature extractors."""

    name = primary = "mean_gap"
    lower_is_better = {"mean_gap": True}

    def __init__(self, num_samples: int):
        self.num_samples = num_samples

    def evaluate(self, sample_fn: SampleFn, dataset: Any, device: torch.device | str) -> MetricResult:
        generated = sample_fn(self.num_samples).flatten(1).double()
        reference = dataset.reference(self.num_samples).flatten(1).double()
        gap = torch.linalg.vector_norm(generated.mean(0) - reference.mean(0)).item()
        return MetricResult({"mean_gap": gap}, {"metric": self.name, "generated_count": self.num_samples})


def mean_gap(num_samples: int = 64) -> MeanGap:
    """L2 distance between the mean generated and the mean reference instance."""
    return MeanGap(num_samples)


class TimingPlugin:
    """This script's plugin: adds the ``mean_gap`` metric, as a third-party package would."""

    @hookimpl
    def ganbench_register_metrics(self, registry: Any) -> None:
        registry.add("mean_gap", mean_gap, kinds=("points", "images"))


def plugin_manager() -> PluginManager:
    pm = PluginManager()
    if not pm.load(TimingPlugin(), "trainer_throughput"):
        raise SystemExit(f"could not load the benchmark's metric plugin: {pm.broken.get('trainer_throughput')}")
    return pm


# -- the hand-written loop --------------------------------------------------------------------------

def real_batch_drawer(dataset: Any) -> Callable[[int, torch.Generator], Tensor]:
    """Draws real batches exactly as the dataset does (same random calls, same order), inline."""
    if isinstance(dataset, TensorDataset):
        data = dataset.train
        return lambda n, gen: data[torch.randint(len(data), (n,), generator=gen)]
    if getattr(dataset, "modes", None) is not None:  # a 2-D Gaussian mixture such as the ring
        modes, std = dataset.modes, dataset.mode_std
        return lambda n, gen: modes[torch.randint(len(modes), (n,), generator=gen)] + std * torch.randn(n, 2, generator=gen)
    raise SystemExit(f"no inline batch drawer for dataset {dataset.name!r}")


class HandLoop:
    """What one would write by hand: sample, D step on detached fakes, G step through frozen D."""

    def __init__(self, G: nn.Module, D: nn.Module, dataset: Any, spec: TrialSpec):
        self.G, self.D, self.spec = G, D, spec
        self.draw = real_batch_drawer(dataset)
        betas = (spec.beta1, spec.beta2)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=spec.lr_d, betas=betas)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=spec.lr_g, betas=betas)
        self.gen = torch.Generator().manual_seed(spec.seed)
        self.losses: list[tuple[float, float]] = []

    def run(self, steps: int) -> None:
        G, D, gen = self.G, self.D, self.gen
        bs, z_dim = self.spec.batch_size, self.spec.z_dim
        for _ in range(steps):
            real = self.draw(bs, gen)
            with torch.no_grad():
                fake = G(torch.randn(bs, z_dim, generator=gen))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
            d_loss.backward()
            self.opt_d.step()
            fake = G(torch.randn(bs, z_dim, generator=gen))
            self.opt_g.zero_grad(set_to_none=True)
            D.requires_grad_(False)
            g_loss = F.softplus(-D(fake)).mean()
            g_loss.backward()
            D.requires_grad_(True)
            self.opt_g.step()
        self.losses.append((d_loss.item(), g_loss.item()))


# -- ganbench's trainer, driven like _Loop.run ------------------------------------------------------

class TrainerLoop:
    """Runs ``Trainer.iteration`` with the real loop's divergence check, without evaluation."""

    def __init__(self, trainer: Trainer, pm: Any):
        self.trainer = trainer
        self.loop = _Loop(trainer, pm)  # the real divergence check, at the real loop's cadence
        self.losses: list[tuple[float, float]] = []

    def run(self, steps: int) -> None:
        t, loop = self.trainer, self.loop
        for _ in range(steps):
            d_loss, g_loss = t.iteration(loop.steps_done)
            loop.steps_done += 1
            if loop.steps_done % loop.check_every == 0 and loop._check_divergence():
                raise SystemExit(f"the GAN diverged at step {loop.diverged_step}; choose another setup")
        self.losses.append((d_loss.item(), g_loss.item()))


def build_pair(setup: Setup, total_steps: int, pm: Any) -> tuple[TrainerLoop, HandLoop]:
    """The trainer and the hand loop over one GAN (two identical copies) and one dataset."""
    spec = replace(setup.spec, steps=total_steps).validated(pm)
    reg = pm.registries
    dataset = reg["dataset"].create(spec.dataset, dict(spec.dataset_params))
    torch.manual_seed(spec.seed)
    gan = reg["architecture"].create(spec.arch, dict(spec.arch_params), data_spec=dataset.spec, z_dim=spec.z_dim)
    hand_gan = copy.deepcopy(gan)
    loss = reg["loss"].create(spec.loss, dict(spec.loss_params))
    schedule = reg["schedule"].create(spec.schedule, dict(spec.schedule_params))
    # Trainer.iteration never evaluates, so the evaluator is not needed here.
    trainer = Trainer(spec, Components(dataset, gan, loss, schedule, None), torch.device("cpu"))
    return TrainerLoop(trainer, pm), HandLoop(hand_gan.generator, hand_gan.discriminator, dataset, spec)


def same_state(a: TrainerLoop, b: HandLoop) -> bool:
    """Both loops did the same arithmetic: equal losses at every block end and equal weights."""
    t = a.trainer
    pairs = zip(list(t.G.state_dict().values()) + list(t.D.state_dict().values()),
                list(b.G.state_dict().values()) + list(b.D.state_dict().values()))
    return a.losses == b.losses and all(torch.equal(x, y) for x, y in pairs)


# -- timing -----------------------------------------------------------------------------------------

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def timed(run: Callable[[int], None], steps: int, clock: Callable[[], float]) -> float:
    start = clock()
    run(steps)
    return clock() - start


def train_seconds(setup: Setup, steps: int, pm: Any, clock: Callable[[], float]) -> float:
    """Seconds of ``train()``'s own loop for iterations 2..steps (progress marks the end of each);
    model building, the final evaluation and the record are outside the marks."""
    marks: dict[int, float] = {}
    spec = replace(setup.spec, steps=steps, eval_every=0, metrics=("mean_gap",))
    record = train(spec, "cpu", pm, progress=lambda done: marks.__setitem__(done, clock()) if done in (1, steps) else None)
    if record["status"] == "diverged":
        raise SystemExit(f"train() diverged on {setup.label}; choose another setup")
    return marks[steps] - marks[1]


def bench(setup: Setup, args: argparse.Namespace, pm: Any) -> dict[str, Any]:
    clock = CLOCKS[args.clock]
    warmup = max(args.steps // 5, 5)
    ours, hand = build_pair(setup, warmup + args.repeats * args.steps, pm)
    ours.run(warmup)
    hand.run(warmup)
    if args.end_to_end:
        train_seconds(setup, warmup, pm, clock)  # first-call costs (imports, dataset load) happen here
    images = args.steps * setup.spec.batch_size
    rates: dict[str, list[float]] = {"trainer": [], "hand": [], "train()": []}
    for _ in range(args.repeats):
        rates["trainer"].append(images / timed(ours.run, args.steps, clock))
        rates["hand"].append(images / timed(hand.run, args.steps, clock))
        if args.end_to_end:
            rates["train()"].append((args.steps - 1) * setup.spec.batch_size / train_seconds(setup, args.steps, pm, clock))
    return {"label": setup.label, "identical": same_state(ours, hand),
            **{name: _median(v) for name, v in rates.items()},
            # each repeat's ratio against the hand loop run next to it: load drift between
            # repeats cancels, which the ratio of two medians would not do
            "ratio": _median([a / b for a, b in zip(rates["trainer"], rates["hand"])]),
            "ratio()": _median([a / b for a, b in zip(rates["train()"], rates["hand"])])}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- output -----------------------------------------------------------------------------------------

def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    unit = "images per CPU-second of this process" if args.clock == "cpu" else "images per second (wall clock)"
    print(f"\n{unit}; median of {args.repeats} interleaved repeats of {args.steps} iterations; "
          f"torch {torch.__version__}, {args.threads} thread(s), CPU\n")
    head = f"{'setup':<26} {'trainer':>8} {'hand':>8} {'ratio':>6} {'train()':>8} {'ratio':>6}  same result"
    print(head)
    print("-" * len(head))
    for r in rows:
        e2e = f"{r['train()']:>8.0f} {r['ratio()']:>6.3f}" if args.end_to_end else f"{'-':>8} {'-':>6}"
        print(f"{r['label']:<26} {r['trainer']:>8.0f} {r['hand']:>8.0f} {r['ratio']:>6.3f} {e2e}  "
              f"{'yes' if r['identical'] else 'NO'}")
    worst = min(min(r["ratio"], r["ratio()"]) if args.end_to_end else r["ratio"] for r in rows)
    verdict = "meets" if worst >= TARGET_RATIO else "misses"
    print(f"\nratio = ganbench / hand-written (median of per-repeat ratios); target >= {TARGET_RATIO}: "
          f"lowest {worst:.3f} {verdict} it")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=150, help="iterations per timed repeat (default 150)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per loop (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="cpu: this process's CPU time, robust on a shared machine (default); wall: elapsed time")
    p.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                   help="skip the train() column (it rebuilds the trial and evaluates once per repeat)")
    args = p.parse_args(argv)
    if args.steps < 2 or args.repeats < 1 or args.threads < 1:
        p.error("--steps must be >= 2, --repeats and --threads >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pm = plugin_manager()
    rows = [bench(setup, args, pm) for setup in SETUPS]
    print_table(rows, args)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
