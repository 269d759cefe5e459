"""Training throughput: ganbench's Trainer against a minimal hand-written PyTorch loop.

Both loops train the same GAN (built through the registry and deep-copied, so both start from
identical weights) on the same data with the same non-saturating loss, the same optimizer (the
trainer's Adam class and settings, copied) and batch size, and consume one seeded random stream
in the same order. They compute the same thing, and the script checks it: both must produce
bit-identical losses at every step and end with bit-identical weights ("same result" column;
exit status 1 otherwise).

Columns:
- ``trainer``: ``Trainer.iteration`` driven the way ``_Loop.run`` drives it, including the
  per-step divergence check the real loop does on CPU, without metric evaluation.
- ``hand``: the hand-written loop. D is frozen during G steps, as ganbench does, so both do the
  same arithmetic and the ratio measures ganbench's bookkeeping, not a different algorithm.
- ``train()``: the public ``ganbench.trainer.train`` with ``eval_every=0`` (its one final
  evaluation uses ``mean_gap``, a cheap metric this script registers as a plugin). Its iterations
  are timed between calls of its ``progress`` callback, so building and evaluating are left out;
  the hand-written loop it is compared with runs one iteration inside each of those calls.

The loops are interleaved iteration by iteration (for the trainer the order alternates every
round): on a machine whose speed drifts with other jobs' load, block-wise repeats were seen to
swing the ratio by +-10%, while two copies of the same loop interleaved this way agree within 2%. ``--repeats``
splits the run into chunks of ``--steps`` iterations; the table shows the median over chunks.

    python benchmarks/trainer_throughput.py                 # ~1-2 minutes on one core
    python benchmarks/trainer_throughput.py --steps 100 --repeats 3 --clock wall
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
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
Losses = tuple[Tensor, Tensor]


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

    def __init__(self, G: nn.Module, D: nn.Module, dataset: Any, spec: TrialSpec, like: Trainer):
        self.G, self.D, self.spec = G, D, spec
        self.draw = real_batch_drawer(dataset)
        # The trainer's optimizer class with its exact settings (lr, betas, and the foreach/fused
        # implementation choice, which changes speed), so only the loop around it differs.
        self.opt_d = type(like.opt_d)(D.parameters(), **like.opt_d.defaults)
        self.opt_g = type(like.opt_g)(G.parameters(), **like.opt_g.defaults)
        self.gen = torch.Generator().manual_seed(spec.seed)

    def step(self) -> Losses:
        G, D, gen = self.G, self.D, self.gen
        bs, z_dim = self.spec.batch_size, self.spec.z_dim
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
        return d_loss, g_loss


# -- ganbench's trainer, driven like _Loop.run ------------------------------------------------------

class TrainerLoop:
    """One ``Trainer.iteration`` per step plus the real loop's divergence check, no evaluation."""

    def __init__(self, trainer: Trainer, pm: Any):
        self.trainer = trainer
        self.loop = _Loop(trainer, pm)  # the real divergence check, at the real loop's cadence

    def step(self) -> Losses:
        loop = self.loop
        losses = self.trainer.iteration(loop.steps_done)
        loop.steps_done += 1
        if loop.steps_done % loop.check_every == 0 and loop._check_divergence():
            raise SystemExit(f"the GAN diverged at step {loop.diverged_step}; choose another setup")
        return losses


def build_pair(setup: Setup, total_steps: int, pm: Any) -> tuple[TrainerLoop, HandLoop]:
    """The trainer and the hand loop over one GAN (two identical copies) and one dataset."""
    spec = replace(setup.spec, steps=total_steps).validated(pm)
    reg = pm.registries
    dataset = reg["dataset"].create(spec.dataset, dict(spec.dataset_params))
    torch.manual_seed(spec.seed)  # as trainer.build does, so train() starts from these weights too
    gan = reg["architecture"].create(spec.arch, dict(spec.arch_params), data_spec=dataset.spec, z_dim=spec.z_dim)
    hand_gan = copy.deepcopy(gan)
    loss = reg["loss"].create(spec.loss, dict(spec.loss_params))
    schedule = reg["schedule"].create(spec.schedule, dict(spec.schedule_params))
    # Trainer.iteration never evaluates, so the evaluator is not needed here.
    trainer = Trainer(spec, Components(dataset, gan, loss, schedule, None), torch.device("cpu"))
    return TrainerLoop(trainer, pm), HandLoop(hand_gan.generator, hand_gan.discriminator, dataset, spec, trainer)


def same_weights(a: TrainerLoop, b: HandLoop) -> bool:
    t = a.trainer
    ours = list(t.G.state_dict().values()) + list(t.D.state_dict().values())
    theirs = list(b.G.state_dict().values()) + list(b.D.state_dict().values())
    return len(ours) == len(theirs) and all(torch.equal(x, y) for x, y in zip(ours, theirs))


# -- timing -----------------------------------------------------------------------------------------

@dataclass
class Chunk:
    """Per-iteration seconds of ganbench (``ours``) and of the hand loop run side by side, and
    whether the two produced the same losses (and, for the trainer, the same final weights)."""

    ours: list[float]
    hand: list[float]
    identical: bool

    def ratio(self) -> float:
        return (sum(self.hand) / len(self.hand)) / (sum(self.ours) / len(self.ours))


def timed_step(step: Callable[[], Losses], clock: Callable[[], float]) -> tuple[float, tuple[float, float]]:
    start = clock()
    d_loss, g_loss = step()
    seconds = clock() - start
    return seconds, (d_loss.item(), g_loss.item())  # read back outside the timed region


def trainer_chunk(ours: TrainerLoop, hand: HandLoop, steps: int, clock: Callable[[], float]) -> Chunk:
    """``steps`` rounds of one trainer and one hand iteration, the order alternating each round."""
    chunk = Chunk([], [], True)
    for i in range(steps):
        runs = [(ours.step, chunk.ours), (hand.step, chunk.hand)]
        results = []
        for step, times in runs if i % 2 == 0 else runs[::-1]:
            seconds, losses = timed_step(step, clock)
            times.append(seconds)
            results.append(losses)
        chunk.identical &= results[0] == results[1]
    chunk.identical &= same_weights(ours, hand)
    return chunk


def train_chunk(setup: Setup, steps: int, pm: Any, clock: Callable[[], float]) -> Chunk:
    """train() for ``steps`` iterations; each progress call closes one timed train() iteration
    and runs one hand iteration (from the same initial weights) that is timed on its own."""
    hand = build_pair(setup, steps, pm)[1]
    chunk, hand_losses = Chunk([], [], True), []
    last = [0.0]

    def progress(done: int) -> None:
        now = clock()
        if done > 1:  # iteration 1 carries one-off costs train() pays once per trial
            chunk.ours.append(now - last[0])
        seconds, losses = timed_step(hand.step, clock)
        chunk.hand.append(seconds)
        hand_losses.append(losses)
        last[0] = clock()

    spec = replace(setup.spec, steps=steps, eval_every=0, metrics=("mean_gap",))
    record = train(spec, "cpu", pm, progress=progress)
    if record["status"] == "diverged":
        raise SystemExit(f"train() diverged on {setup.label}; choose another setup")
    chunk.identical = list(zip(record["losses"]["d_loss"], record["losses"]["g_loss"])) == hand_losses
    return chunk


def bench(setup: Setup, args: argparse.Namespace, pm: Any) -> dict[str, Any]:
    clock = CLOCKS[args.clock]
    warmup = max(args.steps // 5, 5)
    ours, hand = build_pair(setup, warmup + args.repeats * args.steps, pm)
    trainer_chunk(ours, hand, warmup, clock)
    if args.end_to_end:
        train_chunk(setup, warmup, pm, clock)  # first-call costs (imports, dataset load) happen here
    chunks: dict[str, list[Chunk]] = {"trainer": [], "train()": []}
    for _ in range(args.repeats):
        chunks["trainer"].append(trainer_chunk(ours, hand, args.steps, clock))
        if args.end_to_end:
            chunks["train()"].append(train_chunk(setup, args.steps, pm, clock))
    return {"label": setup.label, "chunks": chunks, "batch_size": setup.spec.batch_size}


# -- output -----------------------------------------------------------------------------------------

def _rate(times: list[float], batch_size: int) -> float:
    return batch_size * len(times) / sum(times)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Median images/s and ratio over chunks, for the trainer and for train()."""
    bs, out = result["batch_size"], {"label": result["label"]}
    for name, chunks in result["chunks"].items():
        out[name] = _median([_rate(c.ours, bs) for c in chunks])
        out[f"hand vs {name}"] = _median([_rate(c.hand, bs) for c in chunks])
        out[f"ratio {name}"] = _median([c.ratio() for c in chunks])
        out[f"spread {name}"] = (min(c.ratio() for c in chunks), max(c.ratio() for c in chunks)) if chunks else None
    out["identical"] = all(c.identical for chunks in result["chunks"].values() for c in chunks)
    return out


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    unit = "images per CPU-second of this process" if args.clock == "cpu" else "images per second (wall clock)"
    print(f"\n{unit}; {args.repeats} chunks of {args.steps} iterations, loops interleaved iteration by iteration; "
          f"median over chunks [min-max of chunk ratios]; torch {torch.__version__}, {args.threads} thread(s), CPU\n")
    head = (f"{'setup':<26} {'trainer':>8} {'hand':>7} {'ratio':>19}   "
            f"{'train()':>8} {'hand':>7} {'ratio':>19}  same result")
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = []
        for name in ("trainer", "train()"):
            if r[f"spread {name}"] is None:
                cells.append(f"{'-':>8} {'-':>7} {'-':>19}")
                continue
            lo, hi = r[f"spread {name}"]
            cells.append(f"{r[name]:>8.0f} {r[f'hand vs {name}']:>7.0f} {r[f'ratio {name}']:>6.3f} [{lo:.3f}-{hi:.3f}]")
        print(f"{r['label']:<26} {cells[0]}   {cells[1]}  {'yes' if r['identical'] else 'NO'}")
    ratios = [r[f"ratio {n}"] for r in rows for n in ("trainer", "train()") if r[f"spread {n}"] is not None]
    verdict = "meets" if min(ratios) >= TARGET_RATIO else "misses"
    print(f"\nratio = ganbench images/s / hand-written images/s; target >= {TARGET_RATIO}: "
          f"lowest {min(ratios):.3f} {verdict} it")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=150, help="iterations per chunk (default 150)")
    p.add_argument("--repeats", type=int, default=5, help="chunks per column (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="cpu: this process's CPU time, robust on a shared machine (default); wall: elapsed time")
    p.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                   help="skip the train() column (it rebuilds the trial and evaluates once per chunk)")
    args = p.parse_args(argv)
    if args.steps < 2 or args.repeats < 1 or args.threads < 1:
        p.error("--steps must be >= 2, --repeats and --threads >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pm = plugin_manager()
    rows = [summarize(bench(setup, args, pm)) for setup in SETUPS]
    print_table(rows, args)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
