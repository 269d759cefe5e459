"""Domain feature extractors: a small classifier per labelled image dataset, trained once, cached.

Without InceptionV3 weights (nothing is downloaded at run time) an image dataset's FID-family
metrics use features of a small CNN trained on the dataset's own labelled data. It is trained the
first time it is needed, saved under the ganbench cache directory keyed by the dataset fingerprint
and the architecture version, and registered with torch-fidelity as a feature extractor so that
torch-fidelity computes Fréchet distance, KID and precision/recall on its features. Its held-out
accuracy and weights hash go into every metric protocol that uses it. The same classifier labels
generated samples for class coverage.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import Tensor, nn
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from .api import Dataset, GanbenchError

#: Bump when DomainClassifier or its training recipe changes: cached extractors are keyed on it.
#: (2: features standardised with training-data statistics.)
ARCH_VERSION = 2
CACHE_ENV = "GANBENCH_CACHE"
FEATURE_LAYER = "features"
_TRAIN_SEED = 1234


def cache_dir() -> Path:
    """Where ganbench caches extractors and reference statistics ($GANBENCH_CACHE, ~/.cache/ganbench)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "ganbench")
    return Path(root)


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] floats -> uint8 by round-and-clamp; the one conversion used for real and generated images."""
    return ((images.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(images: Tensor) -> Tensor:
    return images.float() / 127.5 - 1.0


class DomainClassifier(nn.Module):
    """Three conv layers, global average pooling, a 64-d feature layer and a linear class head.

    Global pooling makes one architecture serve 8x8 digits, 28x28 MNIST and 32x32 CIFAR-10. The
    features are taken before the ReLU, so no feature dimension is identically zero (a dead
    dimension makes the covariance singular), and standardised per dimension with statistics of
    the training data: KID's polynomial kernel (x.y/d + 1)^3 assumes features of order one, as
    Inception's are; unscaled features made it overflow float32 precision and come out negative.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, feature_dim),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_scale", torch.ones(feature_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images in [-1, 1] -> (standardised features, logits)."""
        raw = self.body(x)
        return (raw - self.feature_mean) / self.feature_scale, self.head(F.relu(raw))

    @torch.no_grad()
    def fit_standardisation(self, x: Tensor, batch_size: int = 1000) -> None:
        raw = torch.cat([self.body(b) for b in x.split(batch_size)]).double()
        self.feature_mean.copy_(raw.mean(0).float())
        self.feature_scale.copy_(raw.std(0).clamp_min(1e-6).float())


@dataclass
class DomainExtractor:
    """A trained classifier plus what the protocol records about it."""

    name: str  # the torch-fidelity feature-extractor name
    dataset: str
    model: DomainClassifier
    weights_hash: str
    accuracy: float
    accuracy_split: str
    meta: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, images_uint8: Tensor, batch_size: int = 500) -> Tensor:
        """Class predictions for uint8 images (the same input torch-fidelity feeds the extractor)."""
        device = next(self.model.parameters()).device
        out = [self.model(from_uint8(b.to(device)))[1].argmax(1).cpu() for b in images_uint8.split(batch_size)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def protocol(self) -> dict[str, Any]:
        return {"extractor": self.name, "extractor_kind": "domain classifier", "weights_hash": self.weights_hash,
                "extractor_accuracy": self.accuracy, "extractor_accuracy_split": self.accuracy_split,
                "extractor_arch_version": ARCH_VERSION}


# -- torch-fidelity registration ------------------------------------------------------------

_MODELS: dict[str, DomainClassifier] = {}


class DomainFeatureExtractor(torch_fidelity.FeatureExtractorBase):
    """torch-fidelity's view of a DomainClassifier: uint8 images in, (features, logits) out."""

    def __init__(self, name: str, features_list: list[str], **kwargs: Any):
        super().__init__(name, features_list)
        self.net = _MODELS[name]

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (FEATURE_LAYER, "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return FEATURE_LAYER

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:  # pragma: no cover - compile is disabled
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"domain extractor expects uint8 images (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
        feats, logits = self.net(from_uint8(x))
        by_name = {FEATURE_LAYER: feats, "logits": logits}
        return tuple(by_name[n] for n in self.features_list)


def _register(extractor: DomainExtractor) -> None:
    _MODELS[extractor.name] = extractor.model
    if extractor.name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(extractor.name, DomainFeatureExtractor)


# -- training and the on-disk cache ---------------------------------------------------------

_LOADED: dict[str, DomainExtractor] = {}


def domain_extractor(dataset: Dataset, device: torch.device | str = "cpu") -> DomainExtractor:
    """The dataset's domain extractor: from memory, else from the disk cache, else trained now."""
    labelled = dataset.labelled_train()
    if labelled is None or not dataset.num_classes:
        raise GanbenchError(f"dataset {dataset.name!r} has no labels, so it has no domain feature extractor")
    path = cache_dir() / "extractors" / f"{dataset.name}-{dataset.fingerprint()}-v{ARCH_VERSION}.pt"
    key = str(path)
    if key not in _LOADED:
        with _file_lock(path.with_suffix(".lock")):  # several workers: one trains, the others wait and load
            _LOADED[key] = _load_or_train(path, dataset, labelled)
        _register(_LOADED[key])
    extractor = _LOADED[key]
    extractor.model.to(device)
    return extractor


def _load_or_train(path: Path, dataset: Dataset, labelled: tuple[Tensor, Tensor]) -> DomainExtractor:
    if path.exists():
        try:
            return _load(path, dataset)
        except Exception as exc:  # noqa: BLE001 - a truncated or incompatible file is rebuilt, not fatal
            print(f"ganbench: cached extractor {path} is unreadable ({type(exc).__name__}); retraining",
                  file=sys.stderr)
    _save_atomic(_train(dataset, labelled), path)
    return _load(path, dataset)


def _train(dataset: Dataset, labelled: tuple[Tensor, Tensor]) -> dict[str, Any]:
    images, labels = labelled
    x = from_uint8(to_uint8(images.cpu()))  # train on exactly what evaluation will feed it
    y = labels.cpu().long()
    test_x, test_y, split = _held_out(dataset, x, y)
    if split == "train[90%:]":
        x, y = x[: len(x) * 9 // 10], y[: len(y) * 9 // 10]
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), _one_thread():  # never disturb the trial's RNG stream
        torch.manual_seed(_TRAIN_SEED)
        model = DomainClassifier(x.shape[1], int(dataset.num_classes))
        steps = _fit(model, x, y)
        model.fit_standardisation(x)
    seconds = time.perf_counter() - start
    accuracy = _accuracy(model, test_x, test_y)
    meta = {"dataset": dataset.name, "fingerprint": dataset.fingerprint(), "arch_version": ARCH_VERSION,
            "channels": x.shape[1], "num_classes": int(dataset.num_classes), "accuracy": accuracy,
            "accuracy_split": split, "train_seconds": round(seconds, 2), "train_steps": steps,
            "train_count": len(x)}
    return {"state_dict": model.state_dict(), "meta": meta}


def _held_out(dataset: Dataset, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, str]:
    """The test split when it has labels, else the last 10% of the labelled training data."""
    ref_labels = dataset.reference_labels()
    if ref_labels is not None:
        ref = dataset.reference()
        return from_uint8(to_uint8(ref.cpu())), ref_labels.cpu().long(), "test"
    cut = len(x) * 9 // 10
    return x[cut:], y[cut:], "train[90%:]"


def _fit(model: DomainClassifier, x: Tensor, y: Tensor, batch_size: int = 64) -> int:
    """Adam with a cosine-decayed rate: 60 epochs on small data (digits: ~98% held out, ~10 s on
    one CPU thread), at most 2000 steps on large data so MNIST-sized sets stay a one-off of minutes."""
    steps = int(min(max(60 * len(x) // batch_size, 300), 2000))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,))
        xb = _jitter(x[idx])
        loss = F.cross_entropy(model(xb)[1], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return steps


def _jitter(x: Tensor) -> Tensor:
    """Shift a batch by up to one pixel: cheap augmentation that keeps the classifier from
    overfitting tiny datasets (and makes its features less sensitive to exact pixel positions)."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,)))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def _accuracy(model: DomainClassifier, x: Tensor, y: Tensor) -> float:
    model.eval()
    pred = torch.cat([model(b)[1].argmax(1) for b in x.split(1000)])
    return float((pred == y).float().mean())


def _load(path: Path, dataset: Dataset) -> DomainExtractor:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = blob["meta"]
    model = DomainClassifier(meta["channels"], meta["num_classes"])
    model.load_state_dict(blob["state_dict"])
    model.eval().requires_grad_(False)
    digest = weights_hash(blob["state_dict"])
    return DomainExtractor(f"ganbench-{dataset.name}-{digest[:12]}", dataset.name, model, digest,
                           meta["accuracy"], meta["accuracy_split"], meta)


def weights_hash(state_dict: dict[str, Tensor]) -> str:
    """sha256 over parameter names and bytes (stable, unlike the bytes of a pickled file)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _save_atomic(blob: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Train on one CPU thread: batches of tiny images gain nothing from intra-op threads, and on a
    shared machine extra threads spin-wait (measured: 8x slower with 2 threads under load 8 on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
