from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ganbench.api import GanbenchError
from ganbench.builtin import datasets as ds
from ganbench.registry import Registry


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- 2-D mixtures ------------------------------------------------------------------------------

def test_ring_centres_are_exact() -> None:
    ring = ds.ring()
    assert ring.modes.shape == (8, 2)
    assert torch.allclose(ring.modes.norm(dim=1), torch.full((8,), 2.0))
    assert torch.allclose(ring.modes[2], torch.tensor([0.0, 2.0]), atol=1e-6)  # 90 degrees
    assert ring.mode_std == 0.02
    assert ring.spec.kind == "points" and ring.spec.shape == (2,)
    assert ring.default_metrics == ("point_metrics",)


def test_grid_is_centred_5x5() -> None:
    grid = ds.grid()
    assert grid.modes.shape == (25, 2)
    assert torch.equal(grid.modes.mean(0), torch.zeros(2))
    assert sorted(set(grid.modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(m) for m in grid.modes.tolist()}) == 25
    assert ds.grid(side=3, spacing=1.0).modes.abs().max().item() == 1.0


@pytest.mark.parametrize("make", [ds.ring, ds.grid])
def test_mixture_samples_sit_on_their_modes(make) -> None:
    data = make()
    x = data.sample(20_000, _gen(1))
    dist = torch.cdist(x, data.modes)
    nearest, which = dist.min(dim=1)
    # Gaussian noise in 2-D: the distance to the centre is Rayleigh with scale std.
    assert nearest.max().item() < 6 * data.mode_std
    assert nearest.pow(2).mean().sqrt().item() == pytest.approx(math.sqrt(2) * data.mode_std, rel=0.03)
    counts = torch.bincount(which, minlength=len(data.modes)).double()
    assert (counts > 0).all()
    assert counts.std().item() / counts.mean().item() < 0.1  # equal weights


def test_spiral_has_no_modes_and_follows_its_curve() -> None:
    spiral = ds.spiral(noise=0.0)
    assert spiral.modes is None
    x = spiral.reference(2000).double()
    r = x.norm(dim=1)
    assert r.max().item() <= 2.0 + 1e-5
    # Noise-free points satisfy r = radius * theta / (2 pi turns), theta unwrapped along the arc.
    theta = 2 * math.pi * 1.5 * r / 2.0
    expected = torch.stack([r * theta.cos(), r * theta.sin()], dim=1)
    assert torch.allclose(x, expected, atol=1e-4)


@pytest.mark.parametrize("make", [ds.ring, ds.grid, ds.spiral])
def test_same_seeded_generator_gives_same_batch(make) -> None:
    data = make()
    assert torch.equal(data.sample(64, _gen(7)), data.sample(64, _gen(7)))
    assert not torch.equal(data.sample(64, _gen(7)), data.sample(64, _gen(8)))


@pytest.mark.parametrize("make", [ds.ring, ds.grid, ds.spiral])
def test_mixture_reference_is_fixed_and_prefix_stable(make) -> None:
    ref = make().reference()
    assert ref.shape == (10_000, 2)
    torch.manual_seed(123)  # the global seed must not matter
    fresh = make()
    assert torch.equal(fresh.reference(100), ref[:100])
    big = fresh.reference(25_000)
    assert big.shape == (25_000, 2)
    assert torch.equal(big[:10_000], ref)
    assert not torch.equal(ref[:64], make().sample(64, _gen(0)))  # not the trial's stream


def test_mixture_fingerprint_is_stable_and_parameter_sensitive() -> None:
    fp = ds.ring().fingerprint()
    assert fp == ds.ring().fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp != ds.ring(n_modes=6).fingerprint()
    assert fp != ds.grid().fingerprint()


def test_bad_mixture_params() -> None:
    with pytest.raises(GanbenchError, match="ring"):
        ds.ring(n_modes=0)
    with pytest.raises(GanbenchError, match="spiral"):
        ds.spiral(turns=-1.0)


# -- digits --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits8() -> ds.TensorDataset:
    return ds.digits()


def test_digits_values_and_split(digits8) -> None:
    from sklearn.datasets import load_digits

    assert digits8.spec.shape == (1, 8, 8)
    assert len(digits8.train) + len(digits8.test) == 1797
    assert len(digits8.test) == 540  # ceil(0.3 * 1797)
    assert digits8.train.min().item() == -1.0 and digits8.train.max().item() == 1.0
    # Pixel values are the 17 levels 0..16 mapped onto [-1, 1] in steps of 1/8.
    assert torch.equal(((digits8.test + 1) * 8).round(), (digits8.test + 1) * 8)
    raw = load_digits()
    first = torch.tensor(raw.images[0], dtype=torch.float32) / 8 - 1
    assert any(torch.equal(first, img[0]) for img in torch.cat([digits8.train, digits8.test]))
    assert digits8.num_classes == 10
    assert digits8.default_metrics == ("fidelity", "class_coverage")


def test_digits_split_is_stratified_and_fixed(digits8) -> None:
    counts = torch.bincount(digits8.reference_labels(), minlength=10)
    assert (counts >= 52).all() and (counts <= 55).all()  # ~30% of each class's ~180
    again = ds.digits()
    assert torch.equal(again.reference(), digits8.reference())
    assert again.fingerprint() == digits8.fingerprint()
    images, labels = digits8.labelled_train()
    assert len(images) == len(labels) == 1257


def _bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """1-D bilinear resampling with half-pixel centres (align_corners=False), edges clamped."""
    a = torch.zeros(n_out, n_in, dtype=torch.float64)
    for j in range(n_out):
        src = max((j + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(src)
        i1, frac = min(i0 + 1, n_in - 1), src - i0
        a[j, i0] += 1 - frac
        a[j, i1] += frac
    return a


@pytest.mark.parametrize("size", [16, 32])
def test_digits_resized_bilinearly(size: int, digits8) -> None:
    big = ds.digits(size=size)
    assert big.spec.shape == (1, size, size)
    assert big.train.min().item() >= -1.0 and big.train.max().item() <= 1.0
    a = _bilinear_matrix(8, size)
    expected = a @ digits8.test[:, 0].double() @ a.T  # separable: rows, then columns
    assert torch.allclose(big.test[:, 0].double(), expected, atol=1e-5)
    assert torch.equal(big.reference_labels(), digits8.reference_labels())


def test_digits_bad_size() -> None:
    with pytest.raises(GanbenchError, match="8, 16 or 32"):
        ds.digits(size=12)


def test_digits_sample_with_same_generator(digits8) -> None:
    assert torch.equal(digits8.sample(32, _gen(3)), digits8.sample(32, _gen(3)))


# -- MNIST-style IDX files -------------------------------------------------------------------------

def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_split(folder: Path, split: str, n: int, seed: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = np.arange(n, dtype=np.uint8) % 10
    for base, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
        if gz:
            with gzip.open(folder / f"{base}.gz", "wb") as f:
                f.write(_idx(arr))
        else:
            (folder / base).write_bytes(_idx(arr))
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_tiny_idx_files(tmp_path: Path, gz: bool) -> None:
    train_images, train_labels = _write_idx_split(tmp_path, "train", 20, 0, gz)
    test_images, test_labels = _write_idx_split(tmp_path, "t10k", 10, 1, gz)
    data = ds.mnist(root=str(tmp_path))
    assert data.spec.shape == (1, 28, 28)
    assert data.train.shape == (20, 1, 28, 28) and data.test.shape == (10, 1, 28, 28)
    assert data.train[0, 0, 0, 0].item() == -1.0 and data.train[0, 0, 0, 1].item() == 1.0
    assert torch.allclose(data.train[:, 0], torch.tensor(train_images, dtype=torch.float32) / 127.5 - 1)
    assert torch.allclose(data.reference()[:, 0], torch.tensor(test_images, dtype=torch.float32) / 127.5 - 1)
    assert data.reference_labels().tolist() == test_labels.tolist()
    assert data.labelled_train()[1].tolist() == train_labels.tolist()
    assert data.num_classes == 10 and data.default_metrics == ("fidelity", "class_coverage")


def test_mnist_train_only_needs_no_test_files(tmp_path: Path) -> None:
    _write_idx_split(tmp_path, "train", 20, 0, False)
    data = ds.mnist(root=str(tmp_path), train_only=True)
    assert torch.equal(data.reference(), data.train)
    with pytest.raises(GanbenchError, match="t10k-images-idx3-ubyte"):
        ds.mnist(root=str(tmp_path))


def test_fashion_mnist_uses_env_folder(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    _write_idx_split(folder, "train", 20, 0, True)
    _write_idx_split(folder, "t10k", 10, 1, True)
    monkeypatch.setenv("GANBENCH_DATA", str(tmp_path))
    assert ds.fashion_mnist().train.shape == (20, 1, 28, 28)


def test_mnist_missing_files_is_one_error_naming_paths(tmp_path: Path) -> None:
    with pytest.raises(GanbenchError) as err:
        ds.mnist(root=str(tmp_path))
    msg = str(err.value)
    assert msg.startswith(f"mnist: expected {tmp_path / 'train-images-idx3-ubyte'}[.gz], ")
    for base in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert f"{tmp_path / base}[.gz]" in msg
    assert "IDX format" in msg and "GANBENCH_DATA" in msg and "\n" not in msg


def test_mnist_corrupt_file_names_it(tmp_path: Path) -> None:
    _write_idx_split(tmp_path, "train", 20, 0, False)
    _write_idx_split(tmp_path, "t10k", 10, 1, False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])  # truncated
    with pytest.raises(GanbenchError, match=rf"cannot read {bad}.*holds"):
        ds.mnist(root=str(tmp_path))
    bad.write_bytes(b"not an idx file at all")
    with pytest.raises(GanbenchError, match="not an unsigned-byte IDX file"):
        ds.mnist(root=str(tmp_path))


# -- CIFAR-10 python pickles -------------------------------------------------------------------------

def _write_cifar(folder: Path, n: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    written = {}
    for i, name in enumerate(ds.CIFAR_FILES):
        data = np.random.default_rng(i).integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n)]
        with open(batches / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        written[name] = (data, labels)
    return written


def test_cifar10_reads_tiny_pickles(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path)
    data = ds.cifar10(root=str(tmp_path))
    assert data.spec.shape == (3, 32, 32)
    assert data.train.shape == (20, 3, 32, 32) and data.test.shape == (4, 3, 32, 32)
    raw, labels = written["data_batch_2"]
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32.
    expected = torch.tensor(raw.reshape(4, 3, 32, 32), dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(data.train[4:8], expected)
    assert data.train[4, 1, 0, 0].item() == pytest.approx(raw[0, 1024] / 127.5 - 1)
    assert data.labelled_train()[1][4:8].tolist() == labels
    assert data.reference_labels().tolist() == written["test_batch"][1]


def test_cifar10_missing_files(tmp_path: Path) -> None:
    with pytest.raises(GanbenchError, match=rf"cifar10: expected {tmp_path / 'cifar-10-batches-py'}.*test_batch"):
        ds.cifar10(root=str(tmp_path))
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(GanbenchError, match="missing data_batch_3; set root="):
        ds.cifar10(root=str(tmp_path))


def test_cifar10_unreadable_pickle(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(b"garbage")
    with pytest.raises(GanbenchError, match=rf"cannot read {bad}"):
        ds.cifar10(root=str(tmp_path))


# -- image folder ------------------------------------------------------------------------------------

def test_image_folder_loads_resizes_and_crops(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a.png")
    # Wide image: left and right thirds white, centre black -> the centre crop is all black.
    wide = np.full((30, 90, 3), 255, dtype=np.uint8)
    wide[:, 30:60] = 0
    Image.fromarray(wide).save(tmp_path / "sub" / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    data = ds.image_folder(root=str(tmp_path), size=8, channels=3)
    assert data.train.shape == (2, 3, 8, 8)
    assert torch.allclose(data.train[0, 0], torch.ones(8, 8)) and torch.allclose(data.train[0, 1], -torch.ones(8, 8))
    assert data.train[1, :, 2:6, 2:6].max().item() < -0.9
    assert data.reference_labels() is None and data.labelled_train() is None
    assert data.default_metrics == ("fidelity",)
    gray = ds.image_folder(root=str(tmp_path), size=4, channels=1)
    assert gray.spec.shape == (1, 4, 4)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(GanbenchError, match="set root="):
        ds.image_folder()
    with pytest.raises(GanbenchError, match=rf"{tmp_path / 'nope'} does not exist"):
        ds.image_folder(root=str(tmp_path / "nope"))
    with pytest.raises(GanbenchError, match=rf"no image files .* under {tmp_path}"):
        ds.image_folder(root=str(tmp_path))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(GanbenchError, match="cannot read image .*broken.png"):
        ds.image_folder(root=str(tmp_path))


# -- registration ------------------------------------------------------------------------------------

def test_registered_factories_have_defaults() -> None:
    reg = Registry("dataset")
    ds.ganbench_register_datasets(reg)
    assert reg.names() == sorted(["ring", "grid", "spiral", "digits", "mnist", "fashion_mnist", "cifar10",
                                  "image_folder"])
    assert reg.get("ring").params["n_modes"].default == 8
    assert reg.create("grid", {"side": "3"}).modes.shape == (9, 2)
