"""Running a trial's metrics at its eval points, and the convergence summary of its curve.

- :func:`build_metrics` creates the trial's metrics (the spec's, else the dataset's defaults) and
  checks each against the dataset before training starts.
- :class:`Evaluator` runs them on a ``sample_fn`` and merges their values and protocols.
- :func:`summarize` turns the curve of eval points into the convergence summary (DESIGN.md 6).
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Sequence

import torch
from torch import Tensor

from .api import Dataset, GanbenchError, Metric, SampleFn

#: Relative std of the primary metric over the last third of the curve above which a trial that
#: neither diverged nor collapsed is "unstable" rather than "converged".
UNSTABLE_THRESHOLD = 0.2
#: A lower-is-better metric "blows up" when it ends above this multiple of its best value *and*
#: above its first value *and* above twice its median: training ended far worse than it typically was.
#: (The median guards against a lucky early best: on the ring, a blob with the ring's mean and
#: covariance scores a near-zero Fréchet distance at the first eval point, and a generator that then
#: learns the modes "worsens" 50x to a still small value.)
BLOWUP_FACTOR = 10.0
#: Covered fraction of modes/classes below which the final generator counts as collapsed.
COLLAPSE_FRACTION = 0.5
STATUSES = ("converged", "unstable", "collapsed", "diverged", "failed")


def build_metrics(pm: Any, spec: Any, dataset: Dataset) -> list[Metric]:
    """The trial's metrics: ``spec.metrics`` or the dataset's defaults, created with ``spec.metric_params``.

    Each metric that has a ``check(dataset)`` method runs it now, so a metric that cannot work on
    this dataset (wrong data kind, no labels and no Inception weights...) fails before training.
    """
    names = tuple(spec.metrics) or tuple(dataset.default_metrics)
    if not names:
        raise GanbenchError(f"dataset {dataset.name!r} names no default metrics; choose some with metrics=...")
    registry = pm.registries["metric"]
    metrics = []
    for name in names:
        metric = registry.create(name, dict(spec.metric_params.get(name, {})))
        if hasattr(metric, "check"):
            metric.check(dataset)
        metrics.append(metric)
    return metrics


class _SharedSamples:
    """One eval point's samples, shared by its metrics: a second request for at most as many
    samples reuses the first batch (the metrics judge the same generated set, and the generator
    runs once). Lives for one evaluation only; generated samples are never kept beyond it."""

    def __init__(self, sample_fn: SampleFn):
        self.sample_fn = sample_fn
        self.samples: Tensor | None = None

    def __call__(self, n: int) -> Tensor:
        if self.samples is None or len(self.samples) < n:
            with torch.no_grad():
                self.samples = self.sample_fn(n).detach()
        return self.samples[:n]


class Evaluator:
    """Runs metrics on a generator. ``primary`` is the first metric's primary value."""

    def __init__(self, metrics: Sequence[Metric], dataset: Dataset, device: torch.device | str):
        if not metrics:
            raise GanbenchError("an evaluator needs at least one metric")
        self.metrics, self.dataset, self.device = list(metrics), dataset, device
        for metric in self.metrics:
            if hasattr(metric, "check"):
                metric.check(dataset)  # fixes value names that depend on the dataset (fd_digits vs fid)
        first = self.metrics[0]
        self.primary: str = first.primary
        self.lower_is_better: bool = bool(first.lower_is_better.get(self.primary, True))

    def __call__(self, sample_fn: SampleFn) -> tuple[dict[str, float], dict[str, dict]]:
        shared = _SharedSamples(sample_fn)
        values: dict[str, float] = {}
        protocols: dict[str, dict] = {}
        for metric in self.metrics:
            start = time.perf_counter()
            result = metric.evaluate(shared, self.dataset, self.device)
            for key, value in result.values.items():
                # Two metrics reporting the same name keep both, the later one prefixed by its metric.
                values[key if key not in values else f"{metric.name}.{key}"] = float(value)
            protocols[metric.name] = {**result.protocol, "seconds": round(time.perf_counter() - start, 4)}
        return values, protocols


# -- convergence summary --------------------------------------------------------------------------

def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def summarize(curve: Sequence[dict], primary: str, lower_is_better: bool, *,
              diverged_step: int | None = None) -> dict[str, Any]:
    """The convergence summary of a curve of eval points (each ``{step, wall_time, metrics, d_loss, ...}``).

    - ``best``/``best_step``: best finite primary value and its step; ``final``: the last value.
    - ``steps_to_90``/``seconds_to_90``: first point reaching 90% of the improvement from the
      first point to the best (the first point itself when nothing improved).
    - ``auc``: trapezoid area under the (finite) metric over steps, divided by the step span, so
      it is a step-weighted mean of the metric; the value itself for one point.
    - ``instability``: population std / |mean| of the last third of the points (at least two
      where there are two; 0 for a single point).
    - ``diverged``/``diverged_step``: the trainer's ``diverged_step`` (non-finite loss or
      parameters), else the first point with a non-finite loss or primary value, else (lower is
      better only) a blow-up: the final value exceeds ``BLOWUP_FACTOR`` x best, the first value and
      2 x the median value, dated at the first point after the best that does.
    - ``collapsed``: at the final point modes_covered/num_modes or classes_covered/num_classes < 0.5.
    - ``status``: diverged, else collapsed, else unstable (instability > ``UNSTABLE_THRESHOLD``),
      else converged; an empty curve without divergence is "failed" (nothing was evaluated).
    """
    values = [float(p.get("metrics", {}).get(primary, math.nan)) for p in curve]
    steps = [int(p["step"]) for p in curve]
    out: dict[str, Any] = {"best": math.nan, "best_step": None, "final": values[-1] if values else math.nan,
                           "steps_to_90": None, "seconds_to_90": None, "auc": math.nan, "instability": math.nan}
    finite = [i for i, v in enumerate(values) if math.isfinite(v)]
    if finite:
        pick = min if lower_is_better else max
        best_i = pick(finite, key=lambda i: values[i])
        out.update(best=values[best_i], best_step=steps[best_i], auc=_auc(steps, values, finite),
                   instability=_instability(values))
        reach = _reach_90(values, finite, best_i, lower_is_better)
        out.update(steps_to_90=steps[reach], seconds_to_90=curve[reach].get("wall_time"))
    div = _divergence(curve, values, steps, out, lower_is_better, diverged_step)
    out["diverged"], out["diverged_step"] = div is not None, div
    out["collapsed"] = _collapsed(curve[-1].get("metrics", {})) if curve else False
    out["status"] = _status(out, bool(curve))
    return out


def _reach_90(values: list[float], finite: list[int], best_i: int, lower_is_better: bool) -> int:
    first = finite[0]
    target = values[first] + 0.9 * (values[best_i] - values[first])
    for i in finite:
        if (values[i] <= target) if lower_is_better else (values[i] >= target):
            return i
    return best_i  # unreachable: the best point always reaches the target


def _auc(steps: list[int], values: list[float], finite: list[int]) -> float:
    xs, ys = [steps[i] for i in finite], [values[i] for i in finite]
    span = xs[-1] - xs[0]
    if len(xs) < 2 or span <= 0:
        return sum(ys) / len(ys)
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    return area / span


def _instability(values: list[float]) -> float:
    tail = values[-min(len(values), max(2, math.ceil(len(values) / 3))):]
    if not all(math.isfinite(v) for v in tail):
        return math.nan
    mean = sum(tail) / len(tail)
    std = math.sqrt(sum((v - mean) ** 2 for v in tail) / len(tail))
    if std == 0:
        return 0.0
    return std / abs(mean) if mean != 0 else math.inf


def _divergence(curve: Sequence[dict], values: list[float], steps: list[int], out: dict[str, Any],
                lower_is_better: bool, diverged_step: int | None) -> int | None:
    if diverged_step is not None:
        return int(diverged_step)
    for point, value, step in zip(curve, values, steps):
        losses = [point[k] for k in ("d_loss", "g_loss") if k in point and point[k] is not None]
        if not math.isfinite(value) or not all(_finite(v) for v in losses):
            return step
    best, final = out["best"], out["final"]
    if lower_is_better and math.isfinite(best) and len(values) > 1:
        threshold = max(BLOWUP_FACTOR * best, values[0], 2 * statistics.median(values))
        if best >= 0 and final > threshold:
            after = [i for i, s in enumerate(steps) if s > out["best_step"] and values[i] > threshold]
            return steps[after[0]] if after else steps[-1]
    return None


def _collapsed(final_metrics: dict[str, Any]) -> bool:
    for covered, total in (("modes_covered", "num_modes"), ("classes_covered", "num_classes")):
        c, t = final_metrics.get(covered), final_metrics.get(total)
        if _finite(c) and _finite(t) and t > 0 and c / t < COLLAPSE_FRACTION:
            return True
    return False


def _status(summary: dict[str, Any], has_points: bool) -> str:
    if summary["diverged"]:
        return "diverged"
    if not has_points:
        return "failed"
    if summary["collapsed"]:
        return "collapsed"
    inst = summary["instability"]
    if not math.isfinite(inst) or inst > UNSTABLE_THRESHOLD:
        return "unstable"
    return "converged"
