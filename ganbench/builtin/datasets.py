"""Built-in datasets. Nothing is ever downloaded.

- 2-D mixtures (ring, grid, spiral) are generated exactly from their parameters.
- ``digits`` is scikit-learn's bundled 8x8 handwritten digits (shipped inside scikit-learn).
- MNIST, Fashion-MNIST, CIFAR-10 and image folders load from local files, parsed here with
  numpy; a missing or unreadable file is one clear error naming where it should be.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..api import DataSpec, Dataset, GanbenchError, TensorDataset
from ..plugins import hookimpl

IMAGE_METRICS = ("fidelity", "class_coverage")
# Fixed seeds: train/test splits and reference sets must not depend on the trial seed.
SPLIT_SEED = 0
REFERENCE_SEED = 12345
REFERENCE_CHUNK = 10_000


# -- 2-D mixtures: exact generators -----------------------------------------------------------

def ring_centres(n_modes: int, radius: float) -> torch.Tensor:
    angle = torch.arange(n_modes, dtype=torch.float64) * (2 * torch.pi / n_modes)
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def grid_centres(side: int, spacing: float) -> torch.Tensor:
    axis = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing  # centred on 0
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()


def spiral_points(n: int, gen: torch.Generator, turns: float, radius: float, noise: float) -> torch.Tensor:
    # t = sqrt(u) spreads points evenly along the arc (arc length of r = a*theta grows as theta^2).
    t = torch.rand(n, generator=gen, device=gen.device).sqrt()
    theta, r = 2 * torch.pi * turns * t, radius * t
    curve = torch.stack([r * theta.cos(), r * theta.sin()], dim=1)
    return curve + noise * torch.randn(n, 2, generator=gen, device=gen.device)


class Mixture2D(Dataset):
    """A 2-D distribution generated exactly: a Gaussian mixture (``centres``/``std``) or a ``draw`` function.

    ``reference(n)`` is a fixed set drawn in chunks of 10,000 with fixed seeds, so any prefix of
    it is the same whatever ``n`` asks for and whatever the trial seed is.
    """

    def __init__(self, name: str, params: dict[str, Any], *, centres: torch.Tensor | None = None,
                 std: float | None = None, draw: Callable[[int, torch.Generator], torch.Tensor] | None = None):
        self.name = name
        self.params = dict(params)
        self.spec = DataSpec("points", (2,))
        self.default_metrics = ("point_metrics",)
        self.modes = centres
        self.mode_std = std
        self._draw = draw if draw is not None else self._draw_mixture
        self._reference = torch.empty(0, 2)

    def _draw_mixture(self, n: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.modes), (n,), generator=gen, device=gen.device)
        noise = torch.randn(n, 2, generator=gen, device=gen.device)
        return self.modes.to(gen.device)[idx] + self.mode_std * noise

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        return self._draw(n, generator).to(device)

    def reference(self, n: int | None = None) -> torch.Tensor:
        want = REFERENCE_CHUNK if n is None else n
        while len(self._reference) < want:
            chunk = len(self._reference) // REFERENCE_CHUNK
            gen = torch.Generator().manual_seed(REFERENCE_SEED + chunk)
            self._reference = torch.cat([self._reference, self._draw(REFERENCE_CHUNK, gen)])
        return self._reference[:want]

    def fingerprint(self) -> str:
        blob = json.dumps({"dataset": self.name, "params": self.params, "generator": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- 2-D mixtures: registered factories ------------------------------------------------------------------------

def ring(n_modes: int = 8, radius: float = 2.0, std: float = 0.02) -> Mixture2D:
    """Gaussians of equal weight evenly spaced on a circle (8 modes, radius 2, std 0.02)."""
    if n_modes < 1 or radius <= 0 or std < 0:
        raise GanbenchError(f"dataset 'ring': need n_modes >= 1, radius > 0, std >= 0; got {n_modes}, {radius}, {std}")
    return Mixture2D("ring", {"n_modes": n_modes, "radius": radius, "std": std},
                     centres=ring_centres(n_modes, radius), std=std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> Mixture2D:
    """Gaussians of equal weight on a centred side x side grid (5x5, spacing 2, std 0.05)."""
    if side < 1 or spacing <= 0 or std < 0:
        raise GanbenchError(f"dataset 'grid': need side >= 1, spacing > 0, std >= 0; got {side}, {spacing}, {std}")
    return Mixture2D("grid", {"side": side, "spacing": spacing, "std": std},
                     centres=grid_centres(side, spacing), std=std)


def spiral(noise: float = 0.05, turns: float = 1.5, radius: float = 2.0) -> Mixture2D:
    """An Archimedean spiral of `turns` turns out to `radius`, with Gaussian noise; no discrete modes."""
    if turns <= 0 or radius <= 0 or noise < 0:
        raise GanbenchError(f"dataset 'spiral': need turns > 0, radius > 0, noise >= 0; got {turns}, {radius}, {noise}")
    return Mixture2D("spiral", {"noise": noise, "turns": turns, "radius": radius},
                     draw=lambda n, gen: spiral_points(n, gen, turns, radius, noise))


# -- digits (bundled with scikit-learn) -------------------------------------------------------

def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    # Bilinear: a convex combination of pixels, so [-1, 1] is kept (the clamp only absorbs
    # rounding); antialiasing matters only when shrinking.
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=size < images.shape[-1])
    return out.clamp_(-1.0, 1.0)


def digits(size: int = 8, test_fraction: float = 0.3) -> TensorDataset:
    """scikit-learn's 1,797 bundled 8x8 handwritten digits in [-1, 1], fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if size not in (8, 16, 32):
        raise GanbenchError(f"dataset 'digits': size must be 8, 16 or 32, got {size}")
    if not 0.0 < test_fraction < 1.0:
        raise GanbenchError(f"dataset 'digits': test_fraction must be in (0, 1), got {test_fraction}")
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # 0..16 -> [-1, 1]
    labels = torch.tensor(data.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(torch.arange(len(labels)).numpy(), test_size=test_fraction,
                                           random_state=SPLIT_SEED, stratify=labels.numpy())
    images = _resize(images, size)
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return TensorDataset("digits", images[train_idx], images[test_idx], labels[train_idx], labels[test_idx],
                         kind="images", num_classes=10, default_metrics=IMAGE_METRICS)


# -- local file formats (parsed with numpy; nothing is downloaded) ----------------------------

IDX_SOURCES = {"mnist": "as distributed by Yann LeCun's site",
               "fashion_mnist": "as distributed by Zalando Research"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def resolve_root(name: str, root: str) -> Path:
    """``root`` if given, else ``$GANBENCH_DATA/<name>``, else ``./data/<name>``."""
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("GANBENCH_DATA", "data")).expanduser() / name


def _to_unit_range(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels 0..255 -> float32 in [-1, 1]."""
    return torch.from_numpy(pixels.astype(np.float32)) / 127.5 - 1.0


def _idx_paths(name: str, folder: Path, splits: tuple[str, ...]) -> dict[str, Path]:
    """Locate every IDX file the splits need (plain or .gz); one error lists all that are missing."""
    found, missing = {}, []
    for split in splits:
        for base in (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"):
            path = next((p for p in (folder / base, folder / f"{base}.gz") if p.is_file()), None)
            if path is None:
                missing.append(f"{folder / base}[.gz]")
            else:
                found[base] = path
    if missing:
        raise GanbenchError(f"{name}: expected {', '.join(missing)} (IDX format, {IDX_SOURCES[name]}); "
                            f"set root= or GANBENCH_DATA")
    return found


def _read_idx(name: str, path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array: magic 0x0000 08 <ndim>, big-endian int32 dims, then the data."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
        if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
            raise ValueError(f"not an unsigned-byte IDX file with {ndim} dimension(s)")
        dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        if data.size != int(np.prod(dims)):
            raise ValueError(f"header says {dims} but holds {data.size} bytes")
        return data.reshape(dims)
    except (OSError, EOFError, ValueError) as exc:
        raise GanbenchError(f"{name}: cannot read {path} as IDX ({exc}); {IDX_SOURCES[name]}") from None


def load_idx_pair(name: str, paths: dict[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, H, W) in [-1, 1] and labels (n,) of one IDX split ('train' or 't10k')."""
    images = _read_idx(name, paths[f"{split}-images-idx3-ubyte"], 3)
    labels = _read_idx(name, paths[f"{split}-labels-idx1-ubyte"], 1)
    if len(images) != len(labels):
        raise GanbenchError(f"{name}: the {split} split has {len(images)} images but {len(labels)} labels")
    return _to_unit_range(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        data = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(labels, dtype=np.int64)
        if len(data) != len(labels):
            raise ValueError(f"{len(data)} images but {len(labels)} labels")
        return data, labels
    except (OSError, EOFError, ValueError, TypeError, AttributeError, pickle.UnpicklingError) as exc:
        raise GanbenchError(f"cifar10: cannot read {path} as a CIFAR-10 python batch ({exc})") from None


def load_cifar10(folder: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((train images, labels), (test images, labels)) from cifar-10-batches-py under ``folder``."""
    batches = folder / "cifar-10-batches-py"
    if not batches.is_dir():
        batches = folder  # the batch files may also sit directly in root
    missing = [name for name in CIFAR_FILES if not (batches / name).is_file()]
    if missing:
        raise GanbenchError(f"cifar10: expected {folder / 'cifar-10-batches-py'}/{{data_batch_1..5, test_batch}} "
                            f"(CIFAR-10 python version, cifar-10-python.tar.gz extracted); missing "
                            f"{', '.join(missing)}; set root= or GANBENCH_DATA")
    parts = [_read_cifar_batch(batches / name) for name in CIFAR_FILES]
    train_images = _to_unit_range(np.concatenate([images for images, _ in parts[:5]]))
    train_labels = torch.from_numpy(np.concatenate([labels for _, labels in parts[:5]]))
    test_images, test_labels = parts[5]
    return (train_images, train_labels), (_to_unit_range(test_images), torch.from_numpy(test_labels))


def _load_image(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            # Scale the shorter side to `size`, then crop the centre: no distortion, no padding.
            img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
            pixels = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise GanbenchError(f"image_folder: cannot read image {path} ({exc})") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def image_folder_tensor(root: str, size: int, channels: int) -> torch.Tensor:
    """Every image file under ``root`` (recursively, sorted), as (n, channels, size, size) in [-1, 1]."""
    if not root:
        raise GanbenchError("image_folder: set root= to a folder of image files")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise GanbenchError(f"image_folder: folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise GanbenchError(f"image_folder: no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return _to_unit_range(np.stack([_load_image(p, size, channels) for p in files]))


# -- real datasets from local files -----------------------------------------------------------

def _idx_dataset(name: str, root: str, train_only: bool) -> TensorDataset:
    splits = ("train",) if train_only else ("train", "t10k")
    paths = _idx_paths(name, resolve_root(name, root), splits)  # all files checked before any is read
    train, train_labels = load_idx_pair(name, paths, "train")
    if train_only:  # the training set doubles as the reference set (common GAN-paper practice)
        return TensorDataset(name, train, None, train_labels, None, kind="images", num_classes=10,
                             default_metrics=IMAGE_METRICS)
    test, test_labels = load_idx_pair(name, paths, "t10k")
    return TensorDataset(name, train, test, train_labels, test_labels, kind="images", num_classes=10,
                         default_metrics=IMAGE_METRICS)


def mnist(root: str = "", train_only: bool = False) -> TensorDataset:
    """MNIST from local IDX files (root, else $GANBENCH_DATA/mnist); t10k is the reference set."""
    return _idx_dataset("mnist", root, train_only)


def fashion_mnist(root: str = "", train_only: bool = False) -> TensorDataset:
    """Fashion-MNIST from local IDX files (root, else $GANBENCH_DATA/fashion_mnist)."""
    return _idx_dataset("fashion_mnist", root, train_only)


def cifar10(root: str = "") -> TensorDataset:
    """CIFAR-10 from the python pickles (cifar-10-batches-py) under root, else $GANBENCH_DATA/cifar10."""
    (train, train_labels), (test, test_labels) = load_cifar10(resolve_root("cifar10", root))
    return TensorDataset("cifar10", train, test, train_labels, test_labels, kind="images", num_classes=10,
                         default_metrics=IMAGE_METRICS)


def image_folder(root: str = "", size: int = 32, channels: int = 3) -> TensorDataset:
    """Every image under root, resized and center-cropped to size; unlabelled, reference = all images."""
    if channels not in (1, 3):
        raise GanbenchError(f"dataset 'image_folder': channels must be 1 or 3, got {channels}")
    if size < 1:
        raise GanbenchError(f"dataset 'image_folder': size must be >= 1, got {size}")
    images = image_folder_tensor(root, size, channels)
    return TensorDataset("image_folder", images, None, kind="images", default_metrics=("fidelity",))


@hookimpl
def ganbench_register_datasets(registry: Any) -> None:
    for factory in (ring, grid, spiral):
        registry.add(factory.__name__, factory, data_kind="points")
    for factory in (digits, mnist, fashion_mnist, cifar10, image_folder):
        registry.add(factory.__name__, factory, data_kind="images")
