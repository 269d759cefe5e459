"""Sample figures: image grids and 2-D scatter plots, as PNG files or data URIs.

Figures are built with matplotlib's object API on an explicit Agg canvas (never pyplot): nothing
needs a display, the process-wide backend of an interactive user is left alone, and no figure is
kept alive by pyplot's global registry.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .api import DataSpec, GanbenchError

MAX_GRID = 64
DPI = 100


def image_grid(images: Tensor, pad: int = 1) -> Tensor:
    """Up to 64 images (n, C, H, W) in [-1, 1] -> one (rows*H', cols*W', C) array in [0, 1]."""
    images = images[:MAX_GRID].detach().float().cpu()
    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad)  # white gutters
    for i, img in enumerate(((images + 1) / 2).clamp(0, 1)):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        canvas[:, top:top + h, left:left + w] = img
    return canvas.permute(1, 2, 0)


def _draw_images(fig: Figure, samples: Tensor) -> None:
    ax = fig.add_subplot()
    grid = image_grid(samples)
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid.numpy(), interpolation="nearest")
    ax.set_axis_off()


def _draw_points(fig: Figure, samples: Tensor, modes: Tensor | None) -> None:
    ax = fig.add_subplot()
    pts = samples.detach().double().cpu().reshape(len(samples), -1)
    if pts.shape[1] < 2:
        ax.hist(pts[:, 0].numpy(), bins=50, color="tab:blue")
        return
    ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), s=3, alpha=0.5, color="tab:blue", label="samples")
    if modes is not None:
        m = modes.detach().double().cpu()
        ax.scatter(m[:, 0].numpy(), m[:, 1].numpy(), s=60, marker="x", color="tab:red", label="mode centres")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)


def sample_figure(samples: Tensor, spec: DataSpec, modes: Tensor | None = None, title: str = "") -> Figure:
    """Images: a grid of up to 64 samples; points: a scatter plot with the mode centres marked."""
    if len(samples) == 0:
        raise GanbenchError("sample_figure: no samples to plot")
    if tuple(samples.shape[1:]) != tuple(spec.shape):
        raise GanbenchError(f"sample_figure: samples of shape {tuple(samples.shape[1:])} do not match {spec.shape}")
    fig = Figure(figsize=(4, 4), dpi=DPI)
    FigureCanvasAgg(fig)  # headless rendering, whatever backend the process uses
    if spec.kind == "images":
        _draw_images(fig, samples)
    else:
        _draw_points(fig, samples, modes)
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def save_samples(samples: Tensor, spec: DataSpec, path: str | Path, modes: Tensor | None = None,
                 title: str = "") -> Path:
    """Write the sample figure as a PNG at ``path`` (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_figure(samples, spec, modes, title).savefig(path, format="png")
    return path


def figure_to_data_uri(fig: Figure) -> str:
    """``data:image/png;base64,...`` for embedding a figure in a self-contained HTML report."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
