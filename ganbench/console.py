"""Terminal output with rich: tables of components and plugins, progress bars, trial summaries."""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, highlight=False)


def component_table(components: list[Any]) -> Table:
    table = Table(title="ganbench components", show_lines=False)
    for col in ("kind", "name", "parameters (defaults)", "plugin", "description"):
        table.add_column(col, overflow="fold")
    for c in components:
        params = ", ".join(p.describe() for p in c.params.values()) or "-"
        table.add_row(c.kind, c.name, params, c.provider, c.description)
    return table


def plugin_table(pm: Any) -> Table:
    table = Table(title="ganbench plugins")
    for col in ("plugin", "version", "source", "module", "provides"):
        table.add_column(col, overflow="fold")
    for info in pm.info.values():
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items()) or "(hooks only)"
        table.add_row(info.name, info.version or "-", info.source, info.module, provides)
    for name, error in pm.broken.items():
        table.add_row(f"[red]{name}[/red]", "-", "[red]failed to load[/red]", "", f"[red]{error}[/red]")
    return table


@contextlib.contextmanager
def progress_bar(total: int, label: str, disable: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(done)``; redraws at most ~10 times a second whatever the step rate."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                        disable=disable, refresh_per_second=8)
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def trial_summary(record: dict) -> None:
    table = Table(title=f"trial {record['config']} seed={record['spec']['seed']}", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("status", record["status"] + (f" ({record['error']})" if record.get("error") else ""))
    for name, value in (record.get("metrics") or {}).items():
        table.add_row(name, fmt(value))
    conv = record.get("convergence") or {}
    if conv.get("diverged_step") is not None:
        table.add_row("diverged at step", str(conv["diverged_step"]))
    tp = record.get("throughput") or {}
    if tp:
        table.add_row("throughput", f"{tp['images_per_s']:.0f} images/s, {tp['step_time_ms']:.2f} ms/step")
        table.add_row("time", f"train {tp['train_seconds']:.1f}s, eval {tp['eval_seconds']:.1f}s")
    table.add_row("D/G steps", f"{record.get('d_steps', 0)}/{record.get('g_steps', 0)} on {record['device']}")
    console.print(table)


def progress_table(state: Any, started: float, workers: int) -> Table:
    """The live sweep display: done / total, running, failed, elapsed, ETA, best so far."""
    import time

    elapsed = time.time() - started
    finished = state.finished
    eta = "-"
    if 0 < finished < state.total:
        eta = f"{elapsed / finished * (state.total - finished):.0f}s"
    table = Table(show_header=True, title=f"sweep: {workers} worker(s)")
    for col in ("done", "running", "failed", "waiting", "elapsed", "ETA", "best so far"):
        table.add_column(col)
    best = f"{state.best[0]:.4g}  {state.best[1]}" if state.best else "-"
    table.add_row(f"{state.completed}/{state.total}", str(state.running), str(state.failed),
                  str(state.waiting), f"{elapsed:.0f}s", eta, best)
    return table


def ranking_table(records: list[dict], title: str) -> Table:
    """The end-of-sweep ranking: the leaderboard's main columns, as a terminal table."""
    from .leaderboard import display_columns, leaderboard

    table = Table(title=f"{title}: ranked")
    if not records:
        table.add_column("no finished trials")
        return table
    board = display_columns(leaderboard(records, force=True))
    # the first columns a person reads; the full table is `ganbench leaderboard`
    board = board[[c for c in ("rank", "config", "mean", "std", "n", "failed", "diverged", "collapsed",
                               "images_per_s") if c in board.columns]]
    metric = board.attrs.get("metric", "")
    for col in board.columns:
        table.add_column(f"{col} ({metric})" if col == "mean" else col, overflow="fold")
    for _, row in board.iterrows():
        table.add_row(*(fmt(row[c]) for c in board.columns))
    table.caption = board.attrs.get("ranking_rule", "")
    return table
