"""Plumbing between ganbench and torch-fidelity: image conversion, inputs, extractor choice, caching.

torch-fidelity computes every image metric (Fréchet distance, KID, precision/recall). This module
only decides what it is fed:

- Real and generated images go through one conversion, :func:`ganbench.features.to_uint8`
  (round-and-clamp), and 1-channel images are replicated to 3 channels when the extractor is
  InceptionV3 (the domain extractor takes the native channels).
- The generated images reach torch-fidelity through :class:`SampledGenerator`, a
  ``GenerativeModelBase`` that serves the images the generator produced for this evaluation;
  they are never cached (torch-fidelity only caches inputs that are given a cache name).
- The reference set is given a cache name derived from everything that changes its features
  (:func:`reference_cache_name`), so torch-fidelity's on-disk feature/statistics cache can never
  hand back stale statistics.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch_fidelity
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from .api import GanbenchError
from .features import cache_dir, to_uint8

INCEPTION_ENV = "GANBENCH_INCEPTION_WEIGHTS"
INCEPTION_NAME = "inception-v3-compat"
INCEPTION_FILE = os.path.basename(URL_INCEPTION_V3)
#: Version of the image conversion (uint8 round-and-clamp, channel handling); part of cache keys.
CONVERSION = "uint8-round-clamp-v1"
#: Seed torch-fidelity uses for KID subsets; fixed so repeated evaluations are comparable.
FIDELITY_SEED = 2020


def hub_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_weights_path(explicit: str = "") -> str | None:
    """The InceptionV3 weights file to use, or None: the parameter, then $GANBENCH_INCEPTION_WEIGHTS,
    then torch's hub cache. A path that is given but missing is an error, never a silent fallback."""
    for source, path in (("inception_weights", explicit), (INCEPTION_ENV, os.environ.get(INCEPTION_ENV, ""))):
        if path:
            if not os.path.isfile(path):
                raise GanbenchError(f"InceptionV3 weights file {path!r} (from {source}) does not exist")
            return os.path.abspath(path)
    hub = hub_inception_path()
    return str(hub) if hub.is_file() else None


def missing_weights_message(dataset_name: str) -> str:
    return (f"dataset {dataset_name!r} has no labels, so it has no domain feature extractor, and no InceptionV3 "
            f"weights were found: download {URL_INCEPTION_V3} once and pass --inception-weights PATH, set "
            f"{INCEPTION_ENV}=PATH, or put the file in torch's hub cache at {hub_inception_path()}")


_FILE_HASHES: dict[tuple[str, int, float], str] = {}


def file_sha256(path: str) -> str:
    """sha256 of a file, memoised on (path, size, mtime) so a 100 MB weights file is read once."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def prepare_images(images: Tensor, replicate_to: int | None) -> Tensor:
    """Float images in [-1, 1] -> uint8 on the CPU; 1 channel replicated when the extractor needs 3."""
    u8 = to_uint8(images).cpu()
    if replicate_to and u8.shape[1] == 1 and replicate_to != 1:
        u8 = u8.expand(-1, replicate_to, -1, -1).contiguous()
    return u8


class LazyImages(TorchDataset):
    """A reference set built only if torch-fidelity needs it (a cache hit never touches it)."""

    def __init__(self, build: Callable[[], Tensor]):
        self._build = build
        self._images: Tensor | None = None

    def _get(self) -> Tensor:
        if self._images is None:
            self._images = self._build()
        return self._images

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, i: int) -> Tensor:
        return self._get()[i]


class SampledGenerator(torch_fidelity.GenerativeModelBase):
    """The generator as torch-fidelity sees it: serves, batch by batch, the images it produced.

    torch-fidelity draws its own noise and asks for ``len(noise)`` images per call; the noise is
    ignored because ganbench samples the generator itself (with its own seeded noise, in eval mode
    without gradients) before handing the images over.
    """

    def __init__(self, images_uint8: Tensor):
        super().__init__()
        self.images = images_uint8
        self._next = 0

    @property
    def z_size(self) -> int:
        return 1

    @property
    def z_type(self) -> str:
        return "normal"

    @property
    def num_classes(self) -> int:
        return 0

    def forward(self, noise: Tensor) -> Tensor:
        n = noise.shape[0]
        batch = self.images[self._next:self._next + n]
        if len(batch) != n:
            raise RuntimeError(f"torch-fidelity asked for more samples than were generated ({len(self.images)})")
        self._next += n
        return batch.to(noise.device)


def reference_cache_name(**key: Any) -> str:
    """A torch-fidelity cache name for a reference set, derived from everything that changes its
    features: data fingerprint, split, count, extractor and weights hash, image size, channels,
    conversion and library version. Different inputs can never share an entry."""
    key = {**key, "conversion": CONVERSION, "torch_fidelity": torch_fidelity.__version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return f"ganbench-ref-{key.get('dataset', 'data')}-{digest}"


def fidelity_cache_root() -> Path:
    return cache_dir() / "fidelity"


def compute_fidelity(generated: Tensor, reference: TorchDataset, reference_name: str, extractor: str, *,
                     weights_path: str | None, precision_recall: bool, kid_subset_size: int,
                     kid_subsets: int, device: torch.device | str) -> dict[str, float]:
    """Fréchet distance, KID (mean, std) and optionally precision/recall through torch-fidelity.

    ``generated`` and ``reference`` hold uint8 images prepared by :func:`prepare_images`.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    kwargs = dict(
        input1=SampledGenerator(generated), input1_model_num_samples=len(generated),
        input2=reference, input2_cache_name=reference_name,
        fid=True, kid=True, prc=precision_recall, feature_extractor=extractor,
        kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, rng_seed=FIDELITY_SEED,
        cuda=cuda, batch_size=250, cache=True, cache_root=str(fidelity_cache_root()),
        save_cpu_ram=True,  # no DataLoader worker processes on shared CPU machines
        verbose=False,
    )
    if weights_path:
        kwargs["feature_extractor_weights_path"] = weights_path
    if cuda:
        with torch.cuda.device(device):  # torch-fidelity's .cuda() means the current device
            out = torch_fidelity.calculate_metrics(**kwargs)
    else:
        out = torch_fidelity.calculate_metrics(**kwargs)
    return {
        "fd": float(out[torch_fidelity.KEY_METRIC_FID]),
        "kid": float(out[torch_fidelity.KEY_METRIC_KID_MEAN]),
        "kid_std": float(out[torch_fidelity.KEY_METRIC_KID_STD]),
        **({"precision": float(out[torch_fidelity.KEY_METRIC_PRECISION]),
            "recall": float(out[torch_fidelity.KEY_METRIC_RECALL])} if precision_recall else {}),
    }
