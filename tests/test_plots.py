from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbench.api import DataSpec, GanbenchError
from ganbench.plots import DPI, figure_to_data_uri, image_grid, sample_figure, save_samples

GRAY8 = DataSpec("images", (1, 8, 8))
POINTS = DataSpec("points", (2,))


def test_image_grid_layout_and_range() -> None:
    images = torch.full((5, 1, 2, 2), -1.0)
    images[4] = 1.0
    grid = image_grid(images, pad=1)
    # 5 images -> 3 columns, 2 rows; each cell 2 px plus 1 px gutters.
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 1)
    assert grid[1:3, 1:3, 0].eq(0.0).all()  # -1 maps to black
    assert grid[4:6, 4:6, 0].eq(1.0).all()  # the fifth image (row 1, col 1) is white
    assert grid[0, :, 0].eq(1.0).all()  # gutters are white


def test_image_grid_caps_at_64_and_clamps() -> None:
    grid = image_grid(torch.full((100, 3, 4, 4), 3.0), pad=0)
    assert grid.shape == (32, 32, 3)  # 8 x 8 cells of 4 px
    assert grid.max().item() == 1.0


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return img.size


@pytest.mark.parametrize("spec,samples,modes", [
    (GRAY8, torch.rand(70, 1, 8, 8) * 2 - 1, None),
    (DataSpec("images", (3, 16, 16)), torch.rand(9, 3, 16, 16) * 2 - 1, None),
    (POINTS, torch.randn(500, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]])),
])
def test_save_samples_writes_a_png(tmp_path: Path, spec: DataSpec, samples: torch.Tensor, modes) -> None:
    path = save_samples(samples, spec, tmp_path / "deep" / "samples.png", modes=modes, title="step 100")
    assert path.is_file()
    assert _png_size(path.read_bytes()) == (4 * DPI, 4 * DPI)


def test_gray_images_are_drawn_gray() -> None:
    fig = sample_figure(torch.rand(4, 1, 8, 8) * 2 - 1, GRAY8)
    (image,) = fig.axes[0].get_images()
    assert image.get_cmap().name == "gray"
    assert image.get_array().shape == (2 * 9 + 1, 2 * 9 + 1)


def test_points_plot_marks_modes() -> None:
    modes = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
    fig = sample_figure(torch.randn(50, 2), POINTS, modes=modes, title="ring")
    samples, centres = fig.axes[0].collections
    assert samples.get_offsets().shape == (50, 2)
    assert np.allclose(centres.get_offsets(), modes.numpy())
    assert fig.texts[0].get_text() == "ring"


def test_data_uri_round_trips() -> None:
    fig = sample_figure(torch.randn(20, 2), POINTS)
    uri = figure_to_data_uri(fig)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    data = base64.b64decode(uri[len(prefix):], validate=True)
    assert _png_size(data) == (4 * DPI, 4 * DPI)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert data == buf.getvalue()


def test_shape_mismatch_and_empty_are_clear_errors() -> None:
    with pytest.raises(GanbenchError, match=r"shape \(2,\) do not match \(1, 8, 8\)"):
        sample_figure(torch.randn(4, 2), GRAY8)
    with pytest.raises(GanbenchError, match="no samples"):
        sample_figure(torch.empty(0, 2), POINTS)
