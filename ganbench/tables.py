"""Writing a DataFrame as a rich table, Markdown, CSV, JSON, Parquet or HTML.

Shared by the leaderboard, the budget curve, the report and compare. ``note`` is a sentence
that belongs with the numbers (the ranking rule): it is printed under text tables, kept as a
caption in HTML and Markdown, and stored beside the rows in JSON.
"""
from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .api import GanbenchError

FORMATS = ("table", "md", "csv", "json", "parquet", "html")
_SUFFIXES = {".md": "md", ".markdown": "md", ".csv": "csv", ".json": "json", ".parquet": "parquet",
             ".html": "html", ".htm": "html", ".txt": "table"}


def choose_format(fmt: str | None, output: str | Path | None) -> str:
    """``fmt`` if given, else the one the output's suffix names, else a text table."""
    if fmt:
        if fmt not in FORMATS:
            raise GanbenchError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")
        return fmt
    if output is not None:
        return _SUFFIXES.get(Path(output).suffix.lower(), "table")
    return "table"


def cell(value: Any) -> str:
    """One value as text: floats to 4 significant digits, missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(df: pd.DataFrame, note: str = "") -> str:
    def row(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|").replace("\n", " ") for v in values) + " |"

    lines = [row([str(c) for c in df.columns]), "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += [row([cell(v) for v in values]) for values in df.itertuples(index=False, name=None)]
    if note:
        lines += ["", f"_{note}_"]
    return "\n".join(lines) + "\n"


def to_text(df: pd.DataFrame, title: str = "", note: str = "", width: int = 200) -> str:
    """A rich table rendered to plain text (no colour codes), the way a terminal shows it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, caption=note or None, caption_justify="left")
    for column in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column])
        table.add_column(str(column), justify="right" if numeric else "left", overflow="fold")
    for values in df.itertuples(index=False, name=None):
        table.add_row(*(cell(v) for v in values))
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(table)
    return console.file.getvalue()


def to_json(df: pd.DataFrame, note: str = "") -> str:
    rows = json.loads(df.to_json(orient="records", double_precision=15, default_handler=str))
    attrs = {k: v for k, v in df.attrs.items() if isinstance(v, (str, int, float, bool))}
    if note:
        attrs["note"] = note
    return json.dumps({**attrs, "rows": rows}, indent=2) + "\n"


def to_html(df: pd.DataFrame, title: str = "", note: str = "") -> str:
    """A complete, self-contained HTML page with the table."""
    table = df.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0)
    caption = f"<p><em>{html.escape(note)}</em></p>" if note else ""
    return page(title or "ganbench", f"<h1>{html.escape(title)}</h1>{table}{caption}" if title else table + caption)


def page(title: str, body: str) -> str:
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}"
             "table{border-collapse:collapse;font-size:90%}th,td{padding:3px 8px;border-bottom:1px solid #ddd}"
             "th{background:#f3f3f3;text-align:left}td{font-variant-numeric:tabular-nums}img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def for_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix Python types become strings (Arrow needs one type per column)."""
    out = df.copy()
    for column in out.columns:
        if out[column].dtype == object:
            types = {type(v) for v in out[column] if not (v is None or (isinstance(v, float) and math.isnan(v)))}
            if len(types) > 1 or types & {dict, list, tuple}:
                out[column] = out[column].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out


def render(df: pd.DataFrame, fmt: str, *, title: str = "", note: str = "") -> str:
    """Text of ``df`` in ``fmt`` (every format but parquet, which is binary: see :func:`emit`)."""
    if fmt == "table":
        return to_text(df, title, note)
    if fmt == "md":
        return (f"## {title}\n\n" if title else "") + to_markdown(df, note)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return to_json(df, note)
    if fmt == "html":
        return to_html(df, title, note)
    raise GanbenchError(f"format {fmt!r} cannot be printed; write it to a file with --output")


def emit(df: pd.DataFrame, fmt: str, output: str | Path | None, *, title: str = "", note: str = "") -> None:
    """Print ``df`` in ``fmt``, or write it to ``output``."""
    if fmt == "parquet":
        if output is None:
            raise GanbenchError("--format parquet needs --output FILE")
        for_parquet(df).to_parquet(output, index=False)
        return
    text = render(df, fmt, title=title, note=note)
    if output is None:
        print(text, end="")
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GanbenchError(f"cannot write {output}: {exc.strerror}") from None
