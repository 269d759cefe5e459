"""The evaluator and the convergence summary: known curves, divergence, collapse, edge cases."""
from __future__ import annotations

import math

import pytest
import torch

from ganbench.api import GanbenchError, TensorDataset
from ganbench.builtin.metrics import point_metrics
from ganbench.evaluation import Evaluator, build_metrics, summarize
from ganbench.spec import TrialSpec

from test_metrics import Ring, exact_ring_sampler


def curve_of(values, *, step=100, losses=None, key="fd"):
    losses = losses or [(0.7, 0.7)] * len(values)
    return [{"step": (i + 1) * step, "images_seen": (i + 1) * step * 64, "wall_time": 2.0 * (i + 1),
             "metrics": {key: v}, "d_loss": d, "g_loss": g} for i, (v, (d, g)) in enumerate(zip(values, losses))]


def test_summary_of_a_known_curve():
    curve = curve_of([10.0, 5.0, 1.5, 1.0, 1.2, 1.1])  # steps 100..600, wall time 2..12 s
    s = summarize(curve, "fd", True)
    assert s["best"] == 1.0 and s["best_step"] == 400 and s["final"] == 1.1
    # 90% of the improvement 10 -> 1 is reached at <= 1.9: the third point (1.5).
    assert s["steps_to_90"] == 300 and s["seconds_to_90"] == 6.0
    # Trapezoids of width 100: 7.5 + 3.25 + 1.25 + 1.1 + 1.15 = 14.25 -> area 1425 over a span of 500.
    assert s["auc"] == pytest.approx(2.85, abs=1e-12)
    # Last third = [1.2, 1.1]: std 0.05 / mean 1.15.
    assert s["instability"] == pytest.approx(0.05 / 1.15, abs=1e-12)
    assert s["diverged"] is False and s["diverged_step"] is None and s["collapsed"] is False
    assert s["status"] == "converged"
    assert set(s) == {"best", "best_step", "final", "steps_to_90", "seconds_to_90", "auc", "instability",
                      "diverged", "diverged_step", "collapsed", "status"}


def test_summary_when_higher_is_better():
    s = summarize(curve_of([0.1, 0.5, 0.9, 1.0], key="acc"), "acc", False)
    # Improvement 0.1 -> 1.0; 90% of it is reached at >= 0.91: only the last point.
    assert s["best"] == 1.0 and s["best_step"] == 400 and s["steps_to_90"] == 400
    assert s["status"] == "converged"


def test_injected_non_finite_loss_is_diverged_at_that_step():
    curve = curve_of([5.0, 3.0])
    s = summarize(curve, "fd", True, diverged_step=237)
    assert s["diverged"] is True and s["diverged_step"] == 237 and s["status"] == "diverged"
    assert s["best"] == 3.0  # what was measured before divergence is still reported


def test_non_finite_loss_recorded_in_the_curve_is_diverged_at_that_point():
    curve = curve_of([5.0, 3.0, 2.0], losses=[(0.7, 0.7), (math.nan, 0.7), (math.inf, math.inf)])
    s = summarize(curve, "fd", True)
    assert s["diverged"] is True and s["diverged_step"] == 200 and s["status"] == "diverged"


def test_non_finite_metric_is_diverged():
    s = summarize(curve_of([5.0, 2.0, math.nan]), "fd", True)
    assert s["diverged_step"] == 300 and s["status"] == "diverged"
    assert s["best"] == 2.0 and math.isnan(s["final"])


def test_metric_blow_up_is_diverged_at_the_first_point_past_the_threshold():
    # Best 1.0; threshold max(10 * 1.0, first 5.0) = 10; 12 at step 400 is the first beyond it.
    s = summarize(curve_of([5.0, 1.0, 3.0, 12.0, 40.0]), "fd", True)
    assert s["diverged"] is True and s["diverged_step"] == 400 and s["status"] == "diverged"


def test_worse_but_not_blown_up_is_not_diverged():
    # 0.5 is 50x the best but below the first value: a noisy, unfinished run, not a divergence.
    s = summarize(curve_of([1.0, 0.01, 0.5]), "fd", True)
    assert s["diverged"] is False and s["status"] == "unstable"


def test_lucky_early_best_is_not_a_blow_up():
    # A real ring trial (non-saturating, seed 0): a blob matching the ring's mean and covariance
    # scored 0.006 at the first point, then the generator learned 5 of 8 modes at FD ~0.3-0.6.
    s = summarize(curve_of([0.006, 0.344, 0.505, 0.668, 0.412, 0.411, 0.253, 0.319]), "fd", True)
    assert s["diverged"] is False and s["best"] == 0.006
    # least squares, seed 0: the same start, then a steady climb to a value near its median
    s = summarize(curve_of([0.021, 0.126, 0.313, 0.478, 0.849, 0.957, 0.897, 0.718]), "fd", True)
    assert s["diverged"] is False
    # ... while a trial that ends far above everything it typically reached did blow up: threshold
    # max(10 * 0.068, first 0.068, 2 * median 0.27) = 0.68; 1.037 at step 600 is the first beyond it
    s = summarize(curve_of([0.068, 0.114, 0.231, 0.25, 0.29, 1.037, 14.622, 5.937]), "fd", True)
    assert s["diverged"] is True and s["diverged_step"] == 600


def test_unstable_late_phase():
    s = summarize(curve_of([10.0, 4.0, 3.0, 1.0, 3.0, 1.0]), "fd", True)
    assert s["instability"] == pytest.approx(0.5) and s["status"] == "unstable"


def test_collapse_by_classes_at_the_final_point():
    curve = curve_of([5.0, 2.0, 2.0, 2.0])
    curve[-1]["metrics"].update(classes_covered=4, num_classes=10)
    s = summarize(curve, "fd", True)
    assert s["collapsed"] is True and s["status"] == "collapsed"
    curve[-1]["metrics"].update(classes_covered=5)  # exactly half is not collapsed
    assert summarize(curve, "fd", True)["status"] == "converged"


def test_empty_and_single_point_curves():
    s = summarize([], "fd", True)
    assert math.isnan(s["best"]) and s["best_step"] is None and s["status"] == "failed" and not s["diverged"]
    assert summarize([], "fd", True, diverged_step=3)["status"] == "diverged"
    s = summarize(curve_of([2.5]), "fd", True)
    assert s["best"] == s["final"] == s["auc"] == 2.5 and s["instability"] == 0.0
    assert s["steps_to_90"] == 100 and s["seconds_to_90"] == 2.0 and s["status"] == "converged"


def test_no_improvement_reaches_90_percent_at_the_first_point():
    s = summarize(curve_of([1.0, 2.0, 3.0]), "fd", True)
    assert s["best_step"] == 100 and s["steps_to_90"] == 100


# -- evaluator ---------------------------------------------------------------------------------

def test_evaluator_merges_values_and_protocols_and_shares_samples():
    ring = Ring()
    calls = []
    base = exact_ring_sampler(ring)

    def sample_fn(n):
        calls.append(n)
        return base(n)

    ev = Evaluator([point_metrics(num_samples=400), point_metrics(num_samples=300)], ring, "cpu")
    assert ev.primary == "fd_points" and ev.lower_is_better is True
    values, protocols = ev(sample_fn)
    assert calls == [400]  # the second metric reused the eval point's samples
    assert values["modes_covered"] == 8 and "point_metrics.fd_points" in values
    assert all(isinstance(v, float) for v in values.values())
    assert protocols["point_metrics"]["generated_count"] == 300  # later metric's protocol, same name
    assert protocols["point_metrics"]["seconds"] >= 0


def test_build_metrics_uses_dataset_defaults_and_params():
    from ganbench.plugins import PluginManager

    pm = PluginManager(autoload=False)
    ring = Ring()
    spec = TrialSpec(dataset="ring", metric_params={"point_metrics": {"num_samples": "123"}})
    [metric] = build_metrics(pm, spec, ring)
    assert metric.name == "point_metrics" and metric.num_samples == 123
    with pytest.raises(GanbenchError, match="needs images"):
        build_metrics(pm, TrialSpec(metrics=("fidelity",)), ring)
    with pytest.raises(GanbenchError, match="unknown metric"):
        build_metrics(pm, TrialSpec(metrics=("nope",)), ring)
    images = TensorDataset("tiny", torch.zeros(4, 1, 8, 8))
    with pytest.raises(GanbenchError, match="no default metrics"):
        build_metrics(pm, TrialSpec(), images)
