"""Study reports: results/<study>/report.md, report.json and a self-contained report.html.

``report.json`` is the machine-readable report and the input of ``ganbench compare``::

    kind             "ganbench-report"
    schema           1
    study            the study's name
    created          UTC time the report was written (ISO 8601)
    ganbench_version the version that wrote it
    metric           the ranked metric; lower_is_better its direction; ranking_rule in words
    leaderboard      the leaderboard rows (columns of ganbench.leaderboard), each with ``seeds``:
                     {seed: value or null for a trial without a finite value}
    protocols        {protocol id: the protocol fields the values were measured under}
    budget           the budget curve rows (ganbench.budget)
    trials           every trial record without its curve, samples and logs

Non-finite numbers are written as null. The HTML embeds its figures as PNG data URIs, so the one
file can be mailed, attached to a CI run, or opened offline.
"""
from __future__ import annotations

import argparse
import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import __version__
from .api import GanbenchError
from .budget import budget_curve
from .leaderboard import add_study_arguments, display_columns, leaderboard, load_study, pivot, trials_frame
from .tables import page, to_markdown

REPORT_KIND = "ganbench-report"
REPORT_SCHEMA = 1
TOP_CONFIGS = 8  # configurations drawn in the figures (the best-ranked); more make them unreadable
_SLIM_KEYS = ("trial_key", "config", "spec", "status", "error", "device", "primary", "lower_is_better",
              "metrics", "convergence", "throughput", "protocol", "environment")


def jsonable(value: Any) -> Any:
    """``value`` with numpy/pandas scalars made plain and non-finite floats made None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


# -- report.json -----------------------------------------------------------------------------------

def build_report(records: Iterable[dict[str, Any]], study: str, *, metric: str | None = None,
                 force: bool = False) -> dict[str, Any]:
    """The report.json content for ``records`` of ``study`` (see the module docstring)."""
    records = list(records)
    board = leaderboard(records, metric=metric, force=force)
    trials = trials_frame(records, metric)
    # The protocols were checked by the leaderboard above (or deliberately forced).
    curve = budget_curve(records, metric=metric, force=True)
    protocols = dict(zip(trials["protocol"], trials["protocol_fields"]))
    used = sorted(set(",".join(board["protocol"]).split(",")) - {""})
    return jsonable({
        "kind": REPORT_KIND, "schema": REPORT_SCHEMA, "study": study,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ganbench_version": __version__, "metric": board.attrs["metric"],
        "lower_is_better": board.attrs["lower_is_better"], "ranking_rule": board.attrs["ranking_rule"],
        "leaderboard": _board_rows(board, trials),
        "protocols": {pid: protocols[pid] for pid in used},
        "budget": curve.to_dict("records"),
        "trials": [{k: r[k] for k in _SLIM_KEYS if k in r} for r in records],
    })


def _board_rows(board: pd.DataFrame, trials: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for row in board.to_dict("records"):
        mine = trials[trials["config_key"] == row["config_key"]]
        row["seeds"] = {str(seed): value for seed, value in zip(mine["seed"], mine["value"].astype(float))}
        rows.append(row)
    return rows


def read_report(path: str | Path) -> dict[str, Any]:
    """A report.json, checked to be one; GanbenchError when missing or not a ganbench report."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GanbenchError(f"no such report: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GanbenchError(f"cannot read report {path}: {exc}") from None
    if not isinstance(report, dict) or report.get("kind") != REPORT_KIND or not isinstance(report.get("trials"), list):
        raise GanbenchError(f"{path} is not a ganbench report.json (write one with `ganbench report`)")
    if report.get("schema", REPORT_SCHEMA) > REPORT_SCHEMA:
        raise GanbenchError(f"{path} has report schema {report['schema']}; this ganbench reads up to {REPORT_SCHEMA}")
    return report


# -- report.md -------------------------------------------------------------------------------------

def _summary_line(report: dict[str, Any]) -> str:
    direction = "lower" if report["lower_is_better"] else "higher"
    return (f"Metric **{report['metric']}** ({direction} is better) · {len(report['trials'])} trials · "
            f"{len(report['leaderboard'])} configurations · written {report['created']} by ganbench "
            f"{report['ganbench_version']}")


def _matrix(records: list[dict[str, Any]], metric: str | None, force: bool) -> pd.DataFrame | None:
    """Mean metric as a loss x architecture matrix, when both vary."""
    grouped = leaderboard(records, metric=metric, by=["loss", "arch"], force=force)
    if grouped["loss"].nunique(dropna=False) < 2 or grouped["arch"].nunique(dropna=False) < 2:
        return None
    matrix = pivot(grouped, "loss", "arch")
    matrix.columns.name = None
    return matrix.reset_index().rename(columns={"loss": "loss \\ arch"})


def _budget_excerpt(report: dict[str, Any]) -> pd.DataFrame:
    curve = pd.DataFrame(report["budget"])
    if len(curve) > 10:
        keep = np.unique(np.round(np.geomspace(1, len(curve), 10)).astype(int)) - 1
        curve = curve.iloc[keep]
    return curve


def _failures(report: dict[str, Any]) -> list[str]:
    return [f"{t.get('config')} (seed {(t.get('spec') or {}).get('seed')}): {t.get('status')}"
            + (f" — {t['error']}" if t.get("error") else "")
            for t in report["trials"] if t.get("status") in ("failed", "diverged")]


def _protocol_frame(report: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{"protocol": pid, **fields} for pid, fields in report["protocols"].items()])


_BUDGET_NOTE = "expected best value over k trials drawn at random (Lucic et al. 2018), 95% bootstrap band"


def _markdown_or_none(df: pd.DataFrame, note: str = "") -> str:
    return to_markdown(df, note) if len(df) else "None: no trial produced a finite value.\n"


def render_markdown(report: dict[str, Any], board: pd.DataFrame, matrix: pd.DataFrame | None) -> str:
    parts = [f"# ganbench report: {report['study']}\n", _summary_line(report) + "\n",
             "## Leaderboard\n", to_markdown(display_columns(board), report["ranking_rule"])]
    if matrix is not None:
        parts += [f"## Loss × architecture (mean {report['metric']})\n", to_markdown(matrix)]
    parts += ["## Budget curve\n", _markdown_or_none(_budget_excerpt(report), _BUDGET_NOTE)]
    failures = _failures(report)
    parts += ["## Failed and diverged trials\n", "\n".join(f"- {f}" for f in failures) + "\n" if failures else "None.\n"]
    parts += ["## Measurement protocol\n", _markdown_or_none(_protocol_frame(report)),
              "Figures (metric curves, D accuracy, samples, throughput vs quality): see report.html.\n"]
    return "\n".join(parts)


# -- report.html -----------------------------------------------------------------------------------

def _figures(records: list[dict[str, Any]], board: pd.DataFrame, report: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, <figure> HTML) for every figure the records allow; absent data skips its figure."""
    from . import report_figures as rf
    from .budget import budget_figure

    top = board.head(TOP_CONFIGS)
    labels = dict(zip(top["config_key"], top["config"]))
    metric = report["metric"]
    points = rf.curve_points(records, metric, labels)
    out = []
    if points["value"].notna().any():
        out.append(("Metric curves", _img(rf.metric_curves_figure(points, metric), f"{metric} over steps and seconds")))
    if points[["d_acc_real", "d_acc_fake"]].notna().any().any():
        out.append(("Discriminator accuracy", _img(rf.d_accuracy_figure(points), "D accuracy over training")))
    samples = _sample_images(records, top)
    if samples:
        out.append(("Generated samples", '<div class="grid">' + "".join(samples) + "</div>"))
    if board["images_per_s"].notna().any() and board["mean"].notna().any():
        out.append(("Throughput vs quality", _img(rf.pareto_figure(board), "throughput vs quality, Pareto front")))
    if report["budget"]:
        curve = pd.DataFrame(report["budget"])
        curve.attrs.update(metric=metric, level=0.95)
        out.append(("Budget curve", _img(budget_figure(curve), "expected best metric vs number of trials")))
    return out


def _img(fig: Any, alt: str) -> str:
    from .report_figures import figure_uri

    return f'<figure><img src="{figure_uri(fig)}" alt="{html.escape(alt)}"></figure>'


def _sample_images(records: list[dict[str, Any]], top: pd.DataFrame) -> list[str]:
    """One sample figure per top configuration: its lowest seed that stored usable samples."""
    from .leaderboard import config_key
    from .plots import sample_figure
    from .report_figures import samples_of

    by_config: dict[str, tuple[Any, dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: str((r.get("spec") or {}).get("seed"))):
        key = config_key(record.get("spec") or {})
        if key in set(top["config_key"]) and key not in by_config and (found := samples_of(record)):
            by_config[key] = (found, record)
    images = []
    for key, label in zip(top["config_key"], top["config"]):
        if key in by_config:
            (tensor, spec), record = by_config[key]
            title = f"{label} (seed {(record.get('spec') or {}).get('seed')})"
            images.append(_img(sample_figure(tensor, spec, title=_wrap(title)), f"samples of {label}"))
    return images


def _wrap(text: str, width: int = 40) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0)


def render_html(report: dict[str, Any], board: pd.DataFrame, matrix: pd.DataFrame | None,
                figures: list[tuple[str, str]]) -> str:
    esc = html.escape
    body = [f"<h1>ganbench report: {esc(report['study'])}</h1>",
            f"<p>{esc(_summary_line(report).replace('**', ''))}</p>",
            "<h2>Leaderboard</h2>", _html_table(display_columns(board)), f"<p><em>{esc(report['ranking_rule'])}</em></p>"]
    if matrix is not None:
        body += [f"<h2>Loss × architecture (mean {esc(report['metric'])})</h2>", _html_table(matrix)]
    for title, content in figures:
        body += [f"<h2>{esc(title)}</h2>", content]
    if len(board) > TOP_CONFIGS:
        body.append(f"<p><em>Curves and samples show the {TOP_CONFIGS} best-ranked configurations.</em></p>")
    failures = _failures(report)
    body += ["<h2>Failed and diverged trials</h2>",
             "<ul>" + "".join(f"<li>{esc(f)}</li>" for f in failures) + "</ul>" if failures else "<p>None.</p>"]
    protocols = _protocol_frame(report)
    body += ["<h2>Measurement protocol</h2>",
             _html_table(protocols) if len(protocols) else "<p>None: no trial produced a finite value.</p>"]
    style = ".grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;width:320px}figure{margin:0 0 1em}"
    return page(f"ganbench report: {report['study']}", f"<style>{style}</style>\n" + "\n".join(body))


# -- writing -----------------------------------------------------------------------------------------

def write_report(records: Iterable[dict[str, Any]], study: str, out_dir: str | Path | None = None, *,
                 metric: str | None = None, force: bool = False) -> dict[str, Path]:
    """Write report.json, report.md and report.html for ``study``; returns {format: path}."""
    from . import store

    records = list(records)
    out = Path(out_dir) if out_dir is not None else store.study_dir(study)
    report = build_report(records, study, metric=metric, force=force)
    board = leaderboard(records, metric=metric, force=force)
    matrix = _matrix(records, metric, force)
    texts = {
        "json": json.dumps(report, indent=1, sort_keys=False, allow_nan=False) + "\n",
        "md": render_markdown(report, board, matrix),
        "html": render_html(report, board, matrix, _figures(records, board, report)),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {fmt: out / f"report.{fmt}" for fmt in texts}
        for fmt, text in texts.items():
            paths[fmt].write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GanbenchError(f"cannot write the report to {out}: {exc.strerror}") from None
    return paths


def register_cli(subparsers: Any) -> None:
    """Add ``ganbench report`` to the CLI's subparsers."""
    parser = subparsers.add_parser("report", help="write report.md, report.json and report.html for a study",
                                   description=__doc__.split("\n\n")[0])
    add_study_arguments(parser)
    parser.add_argument("--metric", metavar="NAME", help="metric to rank by (default: the primary metric)")
    parser.add_argument("--force", action="store_true", help="rank rows measured under different protocols together")
    parser.add_argument("--output-dir", metavar="DIR", help="where to write (default: results/<study>/)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    study, records = load_study(args.study, args.storage)
    paths = write_report(records, study, args.output_dir, metric=args.metric, force=args.force)
    for path in paths.values():
        print(path)
    return 0
