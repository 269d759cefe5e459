"""Budget curves: the expected best metric as a function of the number of trials spent.

This is the protocol of Lucic et al. 2018 ("Are GANs Created Equal?", section 5): if you can
afford ``k`` trials drawn at random from the ones a study ran, what best value do you expect?
For ``n`` finite trial values sorted best first, ``v(1) <= ... <= v(n)``, the best of ``k`` draws
without replacement is ``v(i)`` with probability ``C(n-i, k-1) / C(n, k)``, so the expectation is
exact (no simulation). The band is a bootstrap over the trial values: resample them with
replacement, recompute the exact curve, take the central quantiles.

Columns of :func:`budget_curve`: the ``by`` columns (if any), then ``trials`` (k, int),
``expected_best``, ``lower``, ``upper`` (float). Trials without a finite value (failed, pruned)
are not drawn; ``df.attrs`` records the metric, its direction and the band level.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .leaderboard import check_protocols, trials_frame, _checked_by

COLUMNS = ("trials", "expected_best", "lower", "upper")


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        out = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return np.where((k >= 0) & (k <= n), out, -np.inf)


def best_of_k_weights(n: int) -> np.ndarray:
    """``W[k-1, i-1]`` = probability that the i-th best of n values is the best of k draws."""
    k = np.arange(1, n + 1, dtype=float)[:, None]
    i = np.arange(1, n + 1, dtype=float)[None, :]
    return np.exp(_log_comb(n - i, k - 1) - _log_comb(np.full_like(k, n), k))


def expected_best(values: Sequence[float], lower_is_better: bool = True) -> np.ndarray:
    """Exact expected best of k trials drawn without replacement, for k = 1..n."""
    sorted_values = np.sort(np.asarray(values, dtype=np.float64))
    if not lower_is_better:
        sorted_values = sorted_values[::-1]
    return best_of_k_weights(len(sorted_values)) @ sorted_values


def _curve(values: np.ndarray, lower: bool, n_boot: int, level: float, seed: int) -> pd.DataFrame:
    n = len(values)
    weights = best_of_k_weights(n)
    sign = 1.0 if lower else -1.0
    mean = weights @ np.sort(sign * values) * sign
    rng = np.random.default_rng(seed)
    samples = np.sort(sign * rng.choice(values, size=(n_boot, n), replace=True), axis=1)
    boot = samples @ weights.T * sign
    tail = (1.0 - level) / 2.0
    return pd.DataFrame({"trials": np.arange(1, n + 1, dtype="int64"), "expected_best": mean,
                         "lower": np.quantile(boot, tail, axis=0), "upper": np.quantile(boot, 1 - tail, axis=0)})


def budget_curve(records: Iterable[dict[str, Any]], *, metric: str | None = None,
                 by: Sequence[str] | None = None, force: bool = False, n_boot: int = 500,
                 level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Expected best ``metric`` vs number of trials, overall or per ``by`` group (e.g. ``["loss"]``)."""
    trials = trials_frame(records, metric)
    if not force:
        check_protocols(trials)
    by = _checked_by(trials, by)
    lower = bool(trials["lower_is_better"].mode().iloc[0])
    finite = trials[np.isfinite(trials["value"].astype(float))]
    parts = []
    for keys, group in (finite.groupby(by, dropna=False, sort=True) if by else [((), finite)]):
        curve = _curve(group["value"].to_numpy(np.float64), lower, n_boot, level, seed)
        for position, (column, key) in enumerate(zip(by, keys if isinstance(keys, tuple) else (keys,))):
            curve.insert(position, column, key)
        parts.append(curve)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(by) + list(COLUMNS))
    df.attrs.update(metric=", ".join(sorted(set(trials["metric"]))), lower_is_better=lower, level=level)
    return df


def budget_figure(curve: pd.DataFrame, by: Sequence[str] | None = None):
    """A matplotlib Figure of the curve(s) with their bootstrap bands."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot()
    groups = curve.groupby(list(by), dropna=False, sort=True) if by else [("all trials", curve)]
    for key, group in groups:
        label = " ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        line, = ax.plot(group["trials"], group["expected_best"], marker="o", ms=3, label=label)
        ax.fill_between(group["trials"], group["lower"], group["upper"], color=line.get_color(), alpha=0.2)
    level = curve.attrs.get("level", 0.95)
    ax.set_xlabel("number of trials (budget)")
    ax.set_ylabel(f"expected best {curve.attrs.get('metric', 'metric')}")
    ax.set_title(f"Budget curve (band: {level:.0%} bootstrap)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
