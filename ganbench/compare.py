"""Compare two reports (or studies) configuration by configuration: regressions for CI.

``ganbench compare BASE NEW`` matches configurations (same trial spec apart from the seed), and
for each one compares the metric and the throughput (images/s, higher is better).

Decision rule, per configuration and check: NEW is a *regression* when it is worse than BASE by
more than the relative tolerance **and**, where both sides have at least three seeds, a Welch
t-test (scipy) rejects equal means at level alpha; with fewer seeds the tolerance alone decides.
(With two seeds a side the test has about one degree of freedom: a tenfold regression whose
spread grows with its mean gets p ~ 0.1, so two seeds would mean that nothing is ever flagged.)
An *improvement* is the mirror image; anything else is *no change*. A configuration whose share
of failed or diverged trials grew is a regression too.

Exit status: 0 no regression, 1 regression, 2 bad input (a GanbenchError: missing file,
incompatible protocols, no common configurations).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .api import GanbenchError
from .leaderboard import protocol_difference, trials_frame

VERDICTS = ("regression", "improvement", "no change", "not compared")
COLUMNS = ("config", "check", "base_mean", "base_std", "base_n", "new_mean", "new_std", "new_n",
           "delta", "relative", "p_value", "verdict")


@dataclass
class Comparison:
    """The outcome of :func:`compare_reports`; ``rows`` has the :data:`COLUMNS`."""

    base: str
    new: str
    metric: str
    lower_is_better: bool
    tolerance: float
    throughput_tolerance: float
    alpha: float
    rows: pd.DataFrame
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> pd.DataFrame:
        return self.rows[self.rows["verdict"] == "regression"]

    @property
    def exit_code(self) -> int:
        return 1 if len(self.regressions) else 0


# -- the decision -----------------------------------------------------------------------------------

#: Seeds each side needs before the Welch test (rather than the tolerance alone) decides.
MIN_SEEDS_FOR_TEST = 3


def welch_p_value(base: np.ndarray, new: np.ndarray) -> float:
    """Two-sided Welch t-test p-value; exact answers where both sides have no spread."""
    if np.std(base) == 0 and np.std(new) == 0:
        return 1.0 if np.mean(base) == np.mean(new) else 0.0
    from scipy import stats  # here, not at import: scipy.stats would slow every ganbench command

    return float(stats.ttest_ind(new, base, equal_var=False).pvalue)


def decide(base: np.ndarray, new: np.ndarray, lower_is_better: bool, tolerance: float,
           alpha: float) -> dict[str, Any]:
    """Delta, relative delta, p-value and verdict for one check of one configuration."""
    row = {"base_mean": _mean(base), "base_std": _std(base), "base_n": len(base),
           "new_mean": _mean(new), "new_std": _std(new), "new_n": len(new)}
    if not len(base) or not len(new):
        verdict = "regression" if len(base) and not len(new) else "not compared"
        return {**row, "delta": math.nan, "relative": math.nan, "p_value": math.nan, "verdict": verdict}
    delta = row["new_mean"] - row["base_mean"]
    scale = abs(row["base_mean"])
    relative = delta / scale if scale > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
    gain = -relative if lower_is_better else relative  # > 0: NEW is better
    tested = min(len(base), len(new)) >= MIN_SEEDS_FOR_TEST
    p_value = welch_p_value(base, new) if tested else math.nan
    significant = math.isnan(p_value) or p_value < alpha
    verdict = "no change"
    if significant and gain < -tolerance:
        verdict = "regression"
    elif significant and gain > tolerance:
        verdict = "improvement"
    return {**row, "delta": delta, "relative": relative, "p_value": p_value, "verdict": verdict}


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan


def _failure_rate(trials: pd.DataFrame) -> float:
    ran = trials[~trials["pruned"]]
    return float((ran["failed"] | ran["diverged"]).mean()) if len(ran) else 0.0


def _finite(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(dtype=np.float64)
    return array[np.isfinite(array)]


def _devices(report: dict[str, Any], keys: set[str]) -> dict[str, set[str]]:
    """Device names per configuration key, from the trials' environment records."""
    from .leaderboard import config_key

    out: dict[str, set[str]] = {}
    for trial in report["trials"]:
        key = config_key(trial.get("spec") or {})
        if key in keys:
            env = trial.get("environment") or {}
            out.setdefault(key, set()).add(str(env.get("device_name") or trial.get("device") or "?"))
    return out


# -- matching and checking --------------------------------------------------------------------------

def _check_metric(metric: str | None, base: dict[str, Any], new: dict[str, Any]) -> str:
    if not metric:
        raise GanbenchError("BASE names no metric; choose one with --metric")
    if ", " in metric:
        raise GanbenchError(f"BASE ranks several metrics ({metric}); choose one with --metric")
    for side, report in (("BASE", base), ("NEW", new)):
        measured = [t.get("metrics") for t in report["trials"] if t.get("metrics")]
        if measured and not any(metric in m for m in measured):
            raise GanbenchError(f"{side} ({report.get('study')}) has no metric {metric!r}; "
                                f"it has: {', '.join(sorted(set().union(*measured)))}")
    return metric


def _check_protocols(base: pd.DataFrame, new: pd.DataFrame, keys: list[str]) -> None:
    """GanbenchError when a matched configuration was measured differently on the two sides."""
    for key in keys:
        both = pd.concat([base[base["config_key"] == key], new[new["config_key"] == key]])
        evaluated = both[np.isfinite(both["value"].astype(float))]
        distinct = dict(zip(evaluated["protocol"], evaluated["protocol_fields"]))
        if len(distinct) > 1:
            label = new.loc[new["config_key"] == key, "config"].iloc[0]
            raise GanbenchError(f"incompatible protocols for {label!r} ({protocol_difference(list(distinct.values()))}); "
                                "BASE and NEW must be measured the same way")


def compare_reports(base: dict[str, Any], new: dict[str, Any], *, metric: str | None = None,
                    tolerance: float = 0.05, alpha: float = 0.05,
                    throughput_tolerance: float | None = None) -> Comparison:
    """Compare two report dicts (report.json content); see the module docstring for the rule."""
    if tolerance < 0 or (throughput_tolerance is not None and throughput_tolerance < 0):
        raise GanbenchError("--tolerance must be >= 0 (a fraction: 0.05 = 5%)")
    if not 0 < alpha < 1:
        raise GanbenchError("--alpha must be between 0 and 1")
    metric = _check_metric(metric or base.get("metric"), base, new)
    b, n = trials_frame(base["trials"], metric), trials_frame(new["trials"], metric)
    base_keys = set(b["config_key"])
    common = [k for k in dict.fromkeys(n["config_key"]) if k in base_keys]
    if not common:
        raise GanbenchError(f"BASE ({base.get('study')}) and NEW ({new.get('study')}) have no configuration in common")
    _check_protocols(b, n, common)
    lower = bool(b["lower_is_better"].mode().iloc[0])
    comparison = Comparison(str(base.get("study")), str(new.get("study")), metric, lower, tolerance,
                            tolerance if throughput_tolerance is None else throughput_tolerance, alpha,
                            pd.DataFrame(columns=list(COLUMNS)))
    devices = (_devices(base, set(common)), _devices(new, set(common)))
    rows = [row for key in common
            for row in _compare_config(comparison, b[b["config_key"] == key], n[n["config_key"] == key],
                                       devices[0].get(key) == devices[1].get(key))]
    comparison.rows = pd.DataFrame(rows, columns=list(COLUMNS))
    comparison.only_base = sorted(set(b.loc[~b["config_key"].isin(common), "config"]))
    comparison.only_new = sorted(set(n.loc[~n["config_key"].isin(common), "config"]))
    return comparison


def _compare_config(c: Comparison, base: pd.DataFrame, new: pd.DataFrame, same_device: bool) -> list[dict[str, Any]]:
    label = new["config"].iloc[0]
    quality = decide(_finite(base["value"]), _finite(new["value"]), c.lower_is_better, c.tolerance, c.alpha)
    rows = [{"config": label, "check": c.metric, **quality}]
    speed = decide(_finite(base["images_per_s"]), _finite(new["images_per_s"]), False, c.throughput_tolerance, c.alpha)
    if not same_device:
        speed.update(verdict="not compared", p_value=math.nan)  # images/s of different devices say nothing
    rows.append({"config": label, "check": "images_per_s", **speed})
    rates = _failure_rate(base), _failure_rate(new)
    if any(rates):
        verdict = "regression" if rates[1] > rates[0] else "improvement" if rates[1] < rates[0] else "no change"
        rows.append({"config": label, "check": "failure rate", "base_mean": rates[0], "base_std": math.nan,
                     "base_n": len(base), "new_mean": rates[1], "new_std": math.nan, "new_n": len(new),
                     "delta": rates[1] - rates[0], "relative": math.nan, "p_value": math.nan, "verdict": verdict})
    return rows


# -- output -------------------------------------------------------------------------------------------

_MARKS = {"regression": "❌ regression", "improvement": "✅ improvement", "no change": "no change",
          "not compared": "not compared"}


def _side(mean: float, std: float, n: int) -> str:
    if not n or math.isnan(mean):
        return "–"
    return f"{mean:.4g}" + ("" if math.isnan(std) else f" ± {std:.2g}") + f" (n={n})"


def _display(c: Comparison, marks: bool) -> pd.DataFrame:
    def pct(v: float) -> str:
        return "–" if math.isnan(v) else ("±inf" if math.isinf(v) else f"{v:+.1%}")

    return pd.DataFrame({
        "configuration": c.rows["config"], "check": c.rows["check"],
        "base": [_side(m, s, n) for m, s, n in zip(c.rows["base_mean"], c.rows["base_std"], c.rows["base_n"])],
        "new": [_side(m, s, n) for m, s, n in zip(c.rows["new_mean"], c.rows["new_std"], c.rows["new_n"])],
        "delta": ["–" if math.isnan(v) else f"{v:+.4g}" for v in c.rows["delta"]],
        "delta %": [pct(v) for v in c.rows["relative"]],
        "p": ["–" if math.isnan(v) else f"{v:.3g}" for v in c.rows["p_value"]],
        "verdict": [_MARKS[v] if marks else v for v in c.rows["verdict"]],
    })


def headline(c: Comparison) -> str:
    configs = c.rows["config"].nunique()
    bad = c.regressions
    if len(bad):
        return (f"Regression: {len(bad)} check(s) got worse in {bad['config'].nunique()} of {configs} "
                f"matched configuration(s)")
    better = int((c.rows["verdict"] == "improvement").sum())
    return f"No regression in {configs} matched configuration(s)" + (f" ({better} improvement(s))" if better else "")


def rule(c: Comparison) -> str:
    direction = "lower" if c.lower_is_better else "higher"
    return (f"{c.metric}: {direction} is better; images_per_s: higher is better. A regression is a change for the "
            f"worse beyond the tolerance ({c.tolerance:.0%} for {c.metric}, {c.throughput_tolerance:.0%} for "
            f"images/s) that, where both sides have >= {MIN_SEEDS_FOR_TEST} seeds, a Welch t-test also finds significant "
            f"(alpha = {c.alpha:g}); a higher share of failed or diverged trials is a regression too.")


def render(c: Comparison, fmt: str = "md") -> str:
    """The comparison as Markdown (for a pull-request comment) or as plain text."""
    from .tables import to_markdown, to_text

    extra = []
    if c.only_base:
        extra.append(f"Only in BASE (not compared): {', '.join(c.only_base)}")
    if c.only_new:
        extra.append(f"Only in NEW (not compared): {', '.join(c.only_new)}")
    if fmt == "md":
        mark = "❌" if c.exit_code else "✅"
        parts = [f"### ganbench compare: `{c.base}` → `{c.new}`\n", f"{mark} **{headline(c)}**\n",
                 to_markdown(_display(c, marks=True), rule(c))] + [f"{e}\n" for e in extra]
        return "\n".join(parts)
    title = f"ganbench compare: {c.base} -> {c.new}"
    return "\n".join([title, headline(c), to_text(_display(c, marks=False), note=rule(c)).rstrip()] + extra) + "\n"


# -- inputs and command line -------------------------------------------------------------------------

def load_input(source: str, storage: str | None = None) -> dict[str, Any]:
    """A report.json path (or a folder holding one), else a study name read from the storage."""
    from .report import build_report, read_report

    path = Path(source)
    if path.is_file() or (path.is_dir() and (path / "report.json").is_file()):
        return read_report(path)
    if path.suffix == ".json" or "/" in source or "\\" in source:
        raise GanbenchError(f"no such report: {source}")
    from . import store

    try:
        records = store.load_records(source, storage)
    except GanbenchError as exc:
        raise GanbenchError(f"{source!r} is neither a report.json nor a readable study ({exc})") from None
    if not records:
        raise GanbenchError(f"study {source!r} has no trial records")
    # compare checks protocols itself, per matched configuration.
    return build_report(records, source, force=True)


def register_cli(subparsers: Any) -> None:
    """Add ``ganbench compare`` to the CLI's subparsers."""
    parser = subparsers.add_parser("compare", help="compare two reports or studies; exit 1 on regression",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("base", metavar="BASE", help="baseline: a report.json (or its folder) or a study name")
    parser.add_argument("new", metavar="NEW", help="candidate: a report.json (or its folder) or a study name")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage for study names (default: local files)")
    parser.add_argument("--metric", metavar="NAME", help="metric to compare (default: BASE's ranked metric)")
    parser.add_argument("--tolerance", type=float, default=0.05, metavar="FRACTION",
                        help="relative change that counts (default 0.05 = 5%%)")
    parser.add_argument("--throughput-tolerance", type=float, metavar="FRACTION",
                        help="the same for images/s (default: --tolerance; 'inf' ignores throughput)")
    parser.add_argument("--alpha", type=float, default=0.05, metavar="P", help="significance level of the t-test")
    parser.add_argument("--format", choices=("md", "text"), default="text", help="output format (md for PR comments)")
    parser.add_argument("--output", metavar="PATH", help="also write the output to this file")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    base = load_input(args.base, args.storage)
    new = load_input(args.new, args.storage)
    comparison = compare_reports(base, new, metric=args.metric, tolerance=args.tolerance, alpha=args.alpha,
                                 throughput_tolerance=args.throughput_tolerance)
    text = render(comparison, args.format)
    print(text, end="")
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise GanbenchError(f"cannot write {args.output}: {exc.strerror}") from None
    return comparison.exit_code
