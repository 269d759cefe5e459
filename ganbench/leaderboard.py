"""Leaderboards: trial records -> one ranked, seed-aware row per configuration (pandas).

A *configuration* is a trial spec without its seed; its trials (one per seed) are aggregated.

Columns of :func:`leaderboard` (stable; metric columns are float, counts are int):

=================  ==================================================================
``rank``           1-based position under the ranking rule (``df.attrs["ranking_rule"]``)
``config``         readable configuration label (with ``by``: the group's values)
``dataset``,       component names; then one column per parameter, ``arch.<name>``,
``arch``, ...      ``loss.<name>``, ``schedule.<name>``, ``dataset.<name>`` (NaN where a
                   configuration leaves it unset), then spec settings that vary in the
                   study (``lr_d``, ``steps`` ...). With ``by``, only the ``by`` columns.
``metric``         name of the ranked metric
``mean``, ``std``, ``min``, ``median``, ``max``
                   the metric over seeds with a finite value (std: ddof=1, NaN for n < 2)
``n``              trials contributing a finite value
``trials``         all trials of the configuration
``failed``, ``diverged``, ``collapsed``, ``pruned``
                   trials with that outcome (failed and diverged count as *failures*)
``images_per_s``   mean training throughput of the trials that ran
``steps_to_90``, ``seconds_to_90``
                   mean steps / seconds to reach 90% of a trial's total improvement
``instability``    mean late-phase instability of the metric curve
``protocol``       short id of the measurement protocol the values were taken under
``config_key``     stable id of the configuration (hash of its spec without the seed)
=================  ==================================================================

Ranking rule: by mean metric over seeds in the metric's direction; configurations with any
failed or diverged trial come after all configurations without one; configurations without any
finite value come last; ties are broken by the smaller std, then by label.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .api import GanbenchError

COMPONENTS = ("dataset", "arch", "loss", "schedule")
#: Protocol fields that make two values comparable (library versions deliberately excluded).
PROTOCOL_FIELDS = ("metric", "extractor", "weights_hash", "reference_split", "reference_count",
                   "generated_count", "image_size", "channels")
STAT_COLUMNS = ("mean", "std", "min", "median", "max")
COUNT_COLUMNS = ("n", "trials", "failed", "diverged", "collapsed", "pruned")
EXTRA_COLUMNS = ("images_per_s", "steps_to_90", "seconds_to_90", "instability")
# Metric value names whose larger values are better, used when a record does not say.
_HIGHER_IS_BETTER_HINTS = ("precision", "recall", "density", "coverage", "modes", "high_quality",
                           "inception_score", "isc", "accuracy")
_NOT_SCALAR = ("seed",) + COMPONENTS + tuple(f"{c}_params" for c in COMPONENTS)


# -- reading records ----------------------------------------------------------------------------

def config_key(spec: dict[str, Any]) -> str:
    """Stable id of a configuration: the spec without its seed."""
    rest = {k: v for k, v in spec.items() if k != "seed"}
    return hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:12]


def metric_direction(record: dict[str, Any], metric: str) -> bool:
    """True when lower values of ``metric`` are better, as the record (or the name) says."""
    if metric == record.get("primary") and record.get("lower_is_better") is not None:
        return bool(record["lower_is_better"])
    entry = metric_protocol(record, metric)
    flag = entry.get("lower_is_better")
    if isinstance(flag, dict):
        flag = flag.get(metric)
    if flag is not None:
        return bool(flag)
    return not any(hint in metric.lower() for hint in _HIGHER_IS_BETTER_HINTS)


def metric_protocol(record: dict[str, Any], metric: str) -> dict[str, Any]:
    """The protocol entry that produced ``metric`` (keyed by value name or by metric plugin)."""
    protocol = record.get("protocol") or {}
    if isinstance(protocol.get(metric), dict):
        return protocol[metric]
    entries = [e for e in protocol.values() if isinstance(e, dict)]
    for entry in entries:
        if entry.get("metric") == metric or metric in (entry.get("values") or ()):
            return entry
    return entries[0] if len(entries) == 1 else {}


def protocol_signature(record: dict[str, Any], metric: str) -> dict[str, Any]:
    """What must agree between two values of ``metric`` for them to be compared."""
    entry = metric_protocol(record, metric)
    signature = {f: entry[f] for f in PROTOCOL_FIELDS if f in entry}
    signature["metric"] = metric
    return signature


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _config_columns(spec: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {c: spec.get(c) for c in COMPONENTS}
    for component in COMPONENTS:
        for name, value in sorted((spec.get(f"{component}_params") or {}).items()):
            columns[f"{component}.{name}"] = _hashable(value)
    for name, value in spec.items():
        if name not in _NOT_SCALAR:
            columns[name] = _hashable(value)
    return columns


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _trial_row(record: dict[str, Any], metric: str | None) -> dict[str, Any]:
    spec = record.get("spec") or {}
    name = metric or record.get("primary") or ""
    status = record.get("status") or "failed"
    conv = record.get("convergence") or {}
    ran = status not in ("failed", "pruned")
    value = _float((record.get("metrics") or {}).get(name)) if ran else math.nan
    signature = protocol_signature(record, name)
    return {
        "config_key": config_key(spec), "label": record.get("config") or _default_label(spec),
        "seed": spec.get("seed"), "status": status, "metric": name,
        "value": value, "lower_is_better": metric_direction(record, name),
        "images_per_s": _float((record.get("throughput") or {}).get("images_per_s")) if ran else math.nan,
        "steps_to_90": _float(conv.get("steps_to_90")) if ran else math.nan,
        "seconds_to_90": _float(conv.get("seconds_to_90")) if ran else math.nan,
        "instability": _float(conv.get("instability")) if ran else math.nan,
        "failed": status == "failed", "pruned": status == "pruned",
        "diverged": status == "diverged" or bool(conv.get("diverged")),
        "collapsed": status == "collapsed" or bool(conv.get("collapsed")),
        "protocol": hashlib.sha1(json.dumps(signature, sort_keys=True, default=str).encode()).hexdigest()[:8],
        "protocol_fields": signature,
    }


def _default_label(spec: dict[str, Any]) -> str:
    parts = [str(spec.get(c)) for c in ("arch", "loss", "schedule")]
    for prefix in ("arch", "loss", "schedule"):
        parts += [f"{prefix}.{k}={v}" for k, v in sorted((spec.get(f"{prefix}_params") or {}).items())]
    return " ".join(parts)


def trials_frame(records: Iterable[dict[str, Any]], metric: str | None = None) -> pd.DataFrame:
    """One row per trial: configuration columns, seed, status, ``value`` of the metric, outcomes.

    Spec settings that are the same for every trial are dropped (except the component names),
    and ``config`` gets the settings that vary and are not in the record's label appended, so
    that distinct configurations read apart.
    """
    records = list(records)
    if not records:
        raise GanbenchError("no trial records to rank")
    metric = metric or _usual_primary(records)  # failed trials have none: they count under the others'
    known = {k for r in records for k in (r.get("metrics") or {})}
    if metric and known and metric not in known:  # (all trials failed: nothing to check against)
        raise GanbenchError(f"no trial has a metric {metric!r}; the trials have: {', '.join(sorted(known))}")
    settings = pd.DataFrame([_config_columns(r.get("spec") or {}) for r in records])
    settings = settings[_ordered_config_columns(settings.columns)]
    outcomes = pd.DataFrame([_trial_row(r, metric) for r in records])
    varying = [c for c in settings.columns
               if (c == "dataset" or (c not in COMPONENTS and not c.startswith(("arch.", "loss.", "schedule."))))
               and settings[c].astype(str).nunique(dropna=False) > 1]
    constant = [c for c in settings.columns if c not in COMPONENTS and "." not in c and c not in varying]
    settings = settings.drop(columns=constant)
    labels = _distinct_labels(outcomes["label"], outcomes["config_key"], settings[varying])
    head = pd.DataFrame({"config_key": outcomes["config_key"], "config": labels})
    return pd.concat([head, settings, outcomes.drop(columns=["config_key", "label"])], axis=1)


def _usual_primary(records: list[dict[str, Any]]) -> str | None:
    primaries = collections.Counter(r["primary"] for r in records if r.get("primary"))
    return primaries.most_common(1)[0][0] if len(primaries) == 1 else None


def _ordered_config_columns(columns: Iterable[str]) -> list[str]:
    """Component names, then their parameters (sorted), then the other spec settings."""
    columns = list(columns)
    params = sorted(c for c in columns if "." in c)
    return list(COMPONENTS) + params + [c for c in columns if c not in COMPONENTS and "." not in c]


def _distinct_labels(labels: pd.Series, keys: pd.Series, varying: pd.DataFrame) -> pd.Series:
    """Record labels plus the settings that vary, plus a key suffix if still ambiguous."""
    labels = labels.astype(str)
    for column in varying.columns:
        labels = labels + varying[column].map(lambda v, c=column: "" if _isna(v) else f" {c}={v}")
    keys_per_label = keys.groupby(labels).transform("nunique")
    return labels.where(keys_per_label <= 1, labels + " #" + keys.str[:6])


def _isna(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# -- protocol check -------------------------------------------------------------------------------

def check_protocols(trials: pd.DataFrame) -> None:
    """Raise GanbenchError naming the protocol fields that differ between evaluated trials."""
    evaluated = trials[np.isfinite(trials["value"].astype(float))]
    distinct = {p: s for p, s in zip(evaluated["protocol"], evaluated["protocol_fields"])}
    if len(distinct) <= 1:
        return
    raise GanbenchError(f"trials were evaluated under different protocols ({protocol_difference(list(distinct.values()))}); "
                        "they are not ranked together (rank them separately, or pass --force)")


def protocol_difference(signatures: Sequence[dict[str, Any]]) -> str:
    """'field: a vs b; ...' for every protocol field whose value is not the same everywhere."""
    fields = sorted({f for s in signatures for f in s})
    parts = []
    for field in fields:
        values = sorted({json.dumps(s.get(field), default=str) for s in signatures})
        if len(values) > 1:
            parts.append(f"{field}: {' vs '.join(values[:4])}")
    return "; ".join(parts) or "same fields, different values"


# -- aggregation and ranking ----------------------------------------------------------------------

def leaderboard(records: Iterable[dict[str, Any]], *, metric: str | None = None,
                by: Sequence[str] | None = None, force: bool = False) -> pd.DataFrame:
    """Ranked leaderboard of ``records``: one row per configuration (or per ``by`` group).

    ``metric`` defaults to each record's primary metric. Raises GanbenchError when evaluated
    trials were measured under different protocols, unless ``force``. The ranking rule is in
    ``df.attrs["ranking_rule"]``; see the module docstring for the columns.
    """
    trials = trials_frame(records, metric)
    if not force:
        check_protocols(trials)
    return rank(aggregate(trials, by))


def config_columns(trials: pd.DataFrame) -> list[str]:
    """The configuration columns of a trials frame (component names, parameters, settings)."""
    columns = list(trials.columns)
    return columns[columns.index("dataset"):columns.index("seed")]


def aggregate(trials: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Aggregate a :func:`trials_frame` per configuration, or per combination of ``by`` columns."""
    by = _checked_by(trials, by)
    keys = by or ["config_key"]
    rows = []
    # dropna=False: a configuration with an unset parameter (NaN) keeps its own group.
    for _, group in trials.groupby(keys, dropna=False, sort=False):
        rows.append({**_identity(group, by), **summarise(group)})
    df = pd.DataFrame(rows)
    df = df[[c for c in df.columns if c != "config_key"] + ["config_key"]]
    for column in STAT_COLUMNS + EXTRA_COLUMNS:
        df[column] = df[column].astype("float64")
    for column in COUNT_COLUMNS:
        df[column] = df[column].astype("int64")
    lower = bool(trials["lower_is_better"].mode().iloc[0])
    df.attrs.update(metric=", ".join(sorted(set(trials["metric"]))), lower_is_better=lower)
    return df


def _checked_by(trials: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    valid = config_columns(trials) + ["seed", "status"]
    for column in by or ():
        if column not in valid:
            raise GanbenchError(f"unknown --by column {column!r}; choose from: {', '.join(valid)}")
    return list(by or ())


def _identity(group: pd.DataFrame, by: list[str]) -> dict[str, Any]:
    first = group.iloc[0]
    if not by:
        columns = {c: first[c] for c in ["config"] + config_columns(group)}
        return {**columns, "config_key": first["config_key"]}
    values = {c: first[c] for c in by}
    label = " ".join(f"{c}={'(unset)' if _isna(v) else v}" for c, v in values.items())
    key = hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return {"config": label, **values, "config_key": key}


def summarise(group: pd.DataFrame) -> dict[str, Any]:
    """Seed statistics, outcome counts and convergence means of one group of trials."""
    values = group["value"].astype(float)
    values = values[np.isfinite(values)]
    n = len(values)
    stats = {"mean": values.mean(), "std": values.std(ddof=1), "min": values.min(),
             "median": values.median(), "max": values.max()} if n else dict.fromkeys(STAT_COLUMNS, math.nan)
    counts = {"n": n, "trials": len(group), **{c: int(group[c].sum()) for c in COUNT_COLUMNS[2:]}}
    extras = {c: group[c].astype(float).mean() for c in EXTRA_COLUMNS}  # mean skips NaN
    return {"metric": ", ".join(sorted(set(group["metric"]))), **stats, **counts, **extras,
            "protocol": ",".join(sorted(set(group.loc[np.isfinite(group["value"].astype(float)), "protocol"])))}


def ranking_rule(metric: str, lower_is_better: bool) -> str:
    direction = "lower" if lower_is_better else "higher"
    return (f"ranked by mean {metric} over seeds ({direction} is better); configurations with failed or "
            "diverged trials ranked after those without; configurations without a finite value last; "
            "ties broken by smaller std")


def rank(df: pd.DataFrame) -> pd.DataFrame:
    """Sort an aggregated frame by the ranking rule and number it (``rank`` column, 1-based)."""
    lower = df.attrs["lower_is_better"]
    order = pd.DataFrame({
        "failures": (df["failed"] + df["diverged"]) > 0,
        "empty": df["n"] == 0,
        "score": df["mean"] if lower else -df["mean"],
        "std": df["std"],
        "config": df["config"].astype(str),
    })
    order = order.sort_values(list(order.columns), na_position="last", kind="stable")
    ranked = df.loc[order.index].reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1, dtype="int64"))
    ranked.attrs = {**df.attrs, "ranking_rule": ranking_rule(df.attrs["metric"], lower)}
    return ranked


def display_columns(board: pd.DataFrame) -> pd.DataFrame:
    """The columns a person reads first (the label already names the configuration)."""
    columns = ["rank", "config", "mean", "std", "min", "median", "n", "failed", "diverged", "collapsed",
               "images_per_s", "steps_to_90", "seconds_to_90", "instability"]
    if board["protocol"].nunique() > 1:
        columns.append("protocol")
    view = board[[c for c in columns if c in board.columns]]
    view.attrs = dict(board.attrs)
    return view


def pivot(board: pd.DataFrame, index: str, columns: str, value: str = "mean") -> pd.DataFrame:
    """A matrix view (e.g. loss x arch) of a leaderboard made with ``by=[index, columns]``."""
    for column in (index, columns, value):
        if column not in board.columns:
            raise GanbenchError(f"pivot: the leaderboard has no column {column!r}")
    keys = board[[index, columns]].astype(object).where(board[[index, columns]].notna(), "(unset)")
    matrix = pd.DataFrame({index: keys[index], columns: keys[columns], value: board[value]})
    return matrix.pivot(index=index, columns=columns, values=value)


# -- studies ---------------------------------------------------------------------------------------

def resolve_study(study: str | None, storage: str | None = None) -> str:
    """``study`` itself, or the most recently modified study under the results directory."""
    if study:
        return study
    if storage:
        raise GanbenchError("with --storage, name the STUDY to read")
    from . import store

    return store.latest_study()


def load_study(study: str | None, storage: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(study name, its trial records); GanbenchError when the study has none."""
    from . import store  # imported here: the store depends on optuna, which is slow to import

    name = resolve_study(study, storage)
    records = store.load_records(name, storage)
    if not records:
        raise GanbenchError(f"study {name!r} has no trial records")
    return name, records


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", nargs="?", metavar="STUDY",
                        help="study name (default: the most recent study under results/)")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: the local file storage)")


# -- command line ----------------------------------------------------------------------------------

def register_cli(subparsers: Any) -> None:
    """Add ``ganbench leaderboard`` to the CLI's subparsers."""
    from .tables import FORMATS

    parser = subparsers.add_parser("leaderboard", help="rank a study's configurations (seeds aggregated)",
                                   description=__doc__.split("\n\n")[0])
    add_study_arguments(parser)
    parser.add_argument("--by", metavar="COLUMNS", help="comma-separated columns to group by, e.g. loss,arch")
    parser.add_argument("--metric", metavar="NAME", help="metric to rank by (default: the primary metric)")
    parser.add_argument("--format", choices=FORMATS, help="output format (default: from --output's suffix, else table)")
    parser.add_argument("--output", metavar="PATH", help="write to this file instead of printing")
    parser.add_argument("--force", action="store_true", help="rank rows measured under different protocols together")
    parser.add_argument("--all-columns", action="store_true", help="show every column in table/md output")
    parser.add_argument("--budget", action="store_true",
                        help="show the budget curve (expected best metric vs number of trials) instead")
    parser.add_argument("--plot", metavar="FILE", help="with --budget: also save the curve as an image (png, svg, pdf)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from .tables import choose_format, emit

    study, records = load_study(args.study, args.storage)
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    fmt = choose_format(args.format, args.output)
    if args.plot and not args.budget:
        raise GanbenchError("--plot draws the budget curve: use it with --budget")
    if args.budget:
        return _budget_cli(args, study, records, by, fmt)
    board = leaderboard(records, metric=args.metric, by=by, force=args.force)
    shown = board if args.all_columns or fmt not in ("table", "md") else display_columns(board)
    emit(shown, fmt, args.output, title=f"{study}: {board.attrs['metric']}", note=board.attrs["ranking_rule"])
    return 0


def _budget_cli(args: argparse.Namespace, study: str, records: list[dict[str, Any]],
                by: list[str] | None, fmt: str) -> int:
    from .budget import budget_curve, budget_figure
    from .tables import emit

    curve = budget_curve(records, metric=args.metric, by=by, force=args.force)
    note = (f"expected best {curve.attrs['metric']} over k trials drawn without replacement "
            f"(Lucic et al. 2018); band: {curve.attrs['level']:.0%} bootstrap")
    emit(curve, fmt, args.output, title=f"{study}: budget curve", note=note)
    if args.plot:
        try:
            budget_figure(curve, by).savefig(args.plot)
        except (OSError, ValueError) as exc:
            raise GanbenchError(f"cannot save the plot to {args.plot}: {exc}") from None
    return 0
