"""The contracts a plugin implements: GAN, Loss, Schedule, Dataset, Metric.

Plugins register *factories* (see ``hookspecs.py``); a factory's keyword arguments are the
component's parameters and its keyword defaults are their defaults. The objects the factories
return follow the small contracts below. Base classes exist for convenience; duck typing is fine.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import torch
from torch import Tensor, nn

DataKind = Literal["points", "images"]


class GanbenchError(Exception):
    """An error the user can cause and fix (bad config, unknown name, missing file...).

    The CLI prints it as one line and exits with status 2; it never becomes a traceback.
    """


@dataclass(frozen=True)
class DataSpec:
    """What one data instance looks like.

    ``shape`` is the per-sample shape: ``(2,)`` for 2-D points, ``(C, H, W)`` for images.
    Images live in [-1, 1].
    """

    kind: DataKind
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[0] if self.kind == "images" else 1

    @property
    def size(self) -> int:
        """Image side length in pixels (images are square); 0 for points."""
        return self.shape[-1] if self.kind == "images" else 0

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class GAN(nn.Module):
    """A generator and a discriminator.

    ``generator(z)`` maps noise of shape ``(n, z_dim)`` to data of shape ``(n, *spec.shape)``;
    ``discriminator(x)`` maps data to one raw logit / critic score per sample, shape ``(n,)``.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, z_dim: int):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.z_dim = z_dim

    def sample_z(self, n: int, device: torch.device | str, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.z_dim, device=device, generator=generator)


class Loss:
    """An adversarial loss. Both methods get D itself so penalties are ordinary losses.

    ``real`` and ``fake`` are data batches. In ``d_loss`` the fake batch is already detached from G;
    in ``g_loss`` it carries G's graph and gradients must flow through D into G.
    Return scalar tensors. D outputs raw logits: apply your own link function.
    """

    #: True when the loss uses a critic (Wasserstein-style) rather than a classifier; D accuracy
    #: is still reported as sign(score) but is less meaningful.
    critic: bool = False
    #: D "says real" when its raw output exceeds this (0 for logits/critics, 0.5 for LSGAN's 0/1 targets).
    decision_threshold: float = 0.0

    def d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:  # pragma: no cover - contract
        raise NotImplementedError

    def g_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:  # pragma: no cover - contract
        raise NotImplementedError

    def after_d_step(self, D: nn.Module) -> None:
        """Hook run after every D optimizer step (weight clipping lives here)."""


@dataclass(frozen=True)
class StepPlan:
    """What a schedule says for one iteration."""

    d_steps: int = 1
    g_steps: int = 1
    d_lr_scale: float = 1.0
    g_lr_scale: float = 1.0


class Schedule:
    """A training schedule: D and G updates per iteration, learning-rate multipliers, EMA of G.

    ``plan(step, total_steps)`` is asked once per iteration (``step`` counts iterations from 0).
    ``ema_decay`` is None for no EMA, else the decay of an exponential moving average of G's
    weights; the EMA generator is then the one evaluated.
    """

    ema_decay: float | None = None

    def plan(self, step: int, total_steps: int) -> StepPlan:  # pragma: no cover - contract
        raise NotImplementedError


class Dataset:
    """Real data. Subclasses set ``spec`` and implement ``sample``.

    - ``sample(n, generator, device)``: a batch of ``n`` real instances (images in [-1, 1]).
    - ``reference(n)``: a fixed, deterministic reference set for metrics (held out where possible).
    - ``labels``: class labels of the reference set where they exist (else None).
    - ``num_classes``/``modes``: what mode-collapse metrics count (classes or mixture centres).
    - ``default_metrics``: metric names evaluated when the config names none.
    - ``fingerprint()``: a hash of everything that changes the data (caches key on it).
    """

    name: str = "dataset"
    spec: DataSpec
    default_metrics: tuple[str, ...] = ()
    num_classes: int | None = None
    modes: Tensor | None = None
    mode_std: float | None = None

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def reference(self, n: int | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def reference_labels(self, n: int | None = None) -> Tensor | None:
        return None

    def labelled_train(self) -> tuple[Tensor, Tensor] | None:
        """(images, labels) to train a domain feature extractor on; None when unlabelled."""
        return None

    def fingerprint(self) -> str:  # pragma: no cover
        raise NotImplementedError


class TensorDataset(Dataset):
    """A dataset held in memory as one tensor; batches are drawn uniformly with replacement.

    The training tensor is moved to the device once, so drawing a batch is one index op
    (no DataLoader, no host round-trip per step).
    """

    def __init__(self, name: str, train: Tensor, test: Tensor | None = None,
                 train_labels: Tensor | None = None, test_labels: Tensor | None = None,
                 kind: DataKind = "images", num_classes: int | None = None,
                 default_metrics: tuple[str, ...] = ()):
        self.name = name
        self.train = train.float().contiguous()
        self.test = (test if test is not None else train).float().contiguous()
        self.train_labels = train_labels
        self.test_labels = test_labels if test is not None else train_labels
        self.spec = DataSpec(kind, tuple(train.shape[1:]))
        self.num_classes = num_classes
        self.default_metrics = default_metrics
        self._on_device: dict[str, Tensor] = {}
        self._fingerprint: str | None = None

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
        key = str(device)
        data = self._on_device.get(key)
        if data is None:
            data = self._on_device[key] = self.train.to(device)
        idx = torch.randint(len(self.train), (n,), generator=generator, device=generator.device)
        return data[idx.to(data.device)]

    def reference(self, n: int | None = None) -> Tensor:
        return self.test if n is None else self.test[:n]

    def reference_labels(self, n: int | None = None) -> Tensor | None:
        if self.test_labels is None:
            return None
        return self.test_labels if n is None else self.test_labels[:n]

    def labelled_train(self) -> tuple[Tensor, Tensor] | None:
        if self.train_labels is None:
            return None
        return self.train, self.train_labels

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256()
            for t in (self.train, self.test):
                h.update(t.detach().cpu().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


@dataclass
class MetricResult:
    """Named values plus the protocol that produced them (see DESIGN.md section 5)."""

    values: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)


SampleFn = Callable[[int], Tensor]
"""``sample_fn(n)`` returns ``n`` generated instances in data space (no grad, eval mode)."""


class Metric:
    """A metric: given a way to sample the generator and the dataset, named floats.

    ``lower_is_better`` maps each value name this metric returns to its direction; ``primary``
    names the value a leaderboard ranks by when this metric is the dataset's first.
    """

    name: str = "metric"
    primary: str = ""
    lower_is_better: Mapping[str, bool] = {}

    def evaluate(self, sample_fn: SampleFn, dataset: Dataset, device: torch.device | str) -> MetricResult:  # pragma: no cover
        raise NotImplementedError
