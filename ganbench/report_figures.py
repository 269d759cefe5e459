"""The figures of a report: metric curves, D accuracy, sample grids, throughput vs quality.

Every figure is a matplotlib ``Figure`` on an Agg canvas (never pyplot), so reports are drawn
headless and leave an interactive user's backend alone.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .leaderboard import config_key


def _figure(width: float = 9.0, height: float = 3.8) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def curve_points(records: Iterable[dict[str, Any]], metric: str, labels: dict[str, str]) -> pd.DataFrame:
    """Eval points of the records whose configuration is in ``labels`` (config_key -> label)."""
    rows = []
    for record in records:
        label = labels.get(config_key(record.get("spec") or {}))
        if label is None:
            continue
        for point in record.get("curve") or ():
            rows.append({"config": label, "seed": (record.get("spec") or {}).get("seed"),
                         "step": point.get("step"), "seconds": point.get("wall_time"),
                         "value": (point.get("metrics") or {}).get(metric),
                         "d_acc_real": point.get("d_acc_real"), "d_acc_fake": point.get("d_acc_fake")})
    columns = ["config", "seed", "step", "seconds", "value", "d_acc_real", "d_acc_fake"]
    points = pd.DataFrame(rows, columns=columns)
    for column in columns[2:]:
        points[column] = pd.to_numeric(points[column], errors="coerce").astype("float64")
    return points


def _seed_means(points: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds at each eval step, per configuration (seeds share their eval steps)."""
    return points.groupby(["config", "step"], sort=False).mean(numeric_only=True).reset_index()


def _use_log_scale(values: pd.Series) -> bool:
    finite = values[np.isfinite(values)]
    return len(finite) > 0 and finite.min() > 0 and finite.max() / finite.min() > 100


def metric_curves_figure(points: pd.DataFrame, metric: str) -> Figure:
    """The metric over training steps (left) and over wall-clock seconds (right), mean of seeds."""
    fig = _figure()
    by_step, by_time = fig.subplots(1, 2)
    means = _seed_means(points)
    for label, curve in means.groupby("config", sort=False):
        line, = by_step.plot(curve["step"], curve["value"], marker=".", label=label)
        by_time.plot(curve["seconds"], curve["value"], marker=".", color=line.get_color())
    for ax, xlabel in ((by_step, "training step"), (by_time, "wall-clock seconds")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if _use_log_scale(means["value"]):
            ax.set_yscale("log")
    by_step.legend(fontsize="x-small")
    fig.suptitle(f"{metric} during training (mean over seeds)", fontsize="medium")
    fig.tight_layout()
    return fig


def d_accuracy_figure(points: pd.DataFrame) -> Figure:
    """D's accuracy on real (solid) and generated (dashed) batches over steps, mean of seeds."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    for label, curve in _seed_means(points).groupby("config", sort=False):
        line, = ax.plot(curve["step"], curve["d_acc_real"], label=label)
        ax.plot(curve["step"], curve["d_acc_fake"], linestyle="--", color=line.get_color())
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("D accuracy (solid: real, dashed: generated)")
    ax.set_title("Discriminator accuracy over training; 0.5 = D cannot tell", fontsize="medium")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def samples_of(record: dict[str, Any]) -> tuple[Any, Any] | None:
    """(tensor, DataSpec) of a record's stored samples, or None when it has none usable."""
    import torch

    from .api import DataSpec

    stored = record.get("samples")
    if isinstance(stored, dict):
        values, kind, shape = stored.get("values"), stored.get("kind"), stored.get("shape")
    else:
        values, kind, shape = stored, None, None
    if not values:
        return None
    tensor = torch.tensor(values, dtype=torch.float32)
    shape = tuple(shape) if shape else tuple(tensor.shape[1:])
    kind = kind or ("points" if len(shape) == 1 else "images")
    if tuple(tensor.shape[1:]) != shape or not torch.isfinite(tensor).all():
        return None
    return tensor, DataSpec(kind, shape)


def pareto_front(throughput: Iterable[float], quality: Iterable[float], lower_is_better: bool) -> np.ndarray:
    """Mask of points no other point beats on both throughput (higher) and quality."""
    x = np.asarray(list(throughput), dtype=float)
    y = np.asarray(list(quality), dtype=float)
    y = y if lower_is_better else -y
    ok = np.isfinite(x) & np.isfinite(y)
    front = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(ok):
        at_least = ok & (x >= x[i]) & (y <= y[i])
        strictly = (x > x[i]) | (y < y[i])
        front[i] = not np.any(at_least & strictly)
    return front


def pareto_figure(board: pd.DataFrame) -> Figure:
    """Mean quality vs throughput per configuration, with the Pareto front drawn through."""
    lower = bool(board.attrs.get("lower_is_better", True))
    front = pareto_front(board["images_per_s"], board["mean"], lower)
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    ax.scatter(board["images_per_s"], board["mean"], color="tab:blue", alpha=0.6, label="configuration")
    best = board[front].sort_values("images_per_s")
    ax.plot(best["images_per_s"], best["mean"], color="tab:red", marker="o", label="Pareto front")
    for _, row in best.iterrows():
        ax.annotate(str(row["rank"]), (row["images_per_s"], row["mean"]), textcoords="offset points",
                    xytext=(4, 4), fontsize="small")
    metric = board.attrs.get("metric", "metric")
    ax.set_xlabel("throughput (images/s, higher is better)")
    ax.set_ylabel(f"mean {metric} ({'lower' if lower else 'higher'} is better)")
    ax.set_title("Throughput vs quality (labels: leaderboard rank)", fontsize="medium")
    if _use_log_scale(board["mean"]):
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figure_uri(fig: Figure) -> str:
    """The figure as a base64 PNG data URI, so the HTML report needs no other file."""
    from .plots import figure_to_data_uri

    return figure_to_data_uri(fig)
