"""Built-in metrics: point metrics for 2-D mixtures, FID-family image metrics, class coverage.

- ``point_metrics``: exact float64 Fréchet distance on coordinates and mode metrics.
- ``fidelity``: Fréchet distance, KID, precision and recall computed by torch-fidelity, on
  InceptionV3 features when its weights are available locally (``fid``, ``kid``), else on the
  dataset's domain classifier (``fd_<dataset>``, ``kid_<dataset>``).
- ``class_coverage``: classes the generated samples cover, and the KL divergence of their class
  histogram from the data's, judged by the domain classifier.

Every result carries its protocol (DESIGN.md section 5).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..api import Dataset, GanbenchError, Metric, MetricResult, SampleFn, TensorDataset
from ..frechet import StreamingStats, frechet_distance
from ..plugins import hookimpl
from ..modes import mode_statistics

#: Points further than this many standard deviations (per coordinate) from their nearest mode are
#: low quality; see ``mode_statistics``.
QUALITY_STDS = 3.0


def versions() -> dict[str, str]:
    from importlib.metadata import version

    from .. import __version__
    return {"torch": torch.__version__, "torch_fidelity": version("torch-fidelity"), "ganbench": __version__}


def _draw(sample_fn: SampleFn, n: int, dataset: Dataset) -> Tensor:
    samples = sample_fn(n).detach()
    expected = (n, *dataset.spec.shape)
    if tuple(samples.shape) != expected:
        raise GanbenchError(f"the generator produced samples of shape {tuple(samples.shape)}, expected {expected}")
    return samples


def _reference_split(dataset: Dataset) -> str:
    """Which data the reference set is: a dataset's own ``reference_split`` if it names one; for a
    TensorDataset its test split, or its training data when it was given no test split."""
    split = getattr(dataset, "reference_split", None)
    if split:
        return str(split)
    if isinstance(dataset, TensorDataset):
        return "train" if dataset.test is dataset.train else "test"
    return "reference"


# -- 2-D points -----------------------------------------------------------------------------------

class PointMetrics(Metric):
    """Exact Fréchet distance on coordinates; modes covered, high-quality fraction, mode KL."""

    name = "point_metrics"
    primary = "fd_points"
    lower_is_better = {"fd_points": True, "modes_covered": False, "num_modes": False,
                       "high_quality": False, "mode_kl": True}

    def __init__(self, num_samples: int):
        if num_samples < 2:
            raise GanbenchError(f"metric 'point_metrics': num_samples must be >= 2, got {num_samples}")
        self.num_samples = num_samples
        self._reference: dict[tuple[str, int], tuple[Any, Any, int]] = {}

    def check(self, dataset: Dataset) -> None:
        if dataset.spec.kind != "points" or dataset.spec.shape != (2,):
            raise GanbenchError(f"metric 'point_metrics' needs 2-D points; dataset {dataset.name!r} holds "
                                f"{dataset.spec.kind} of shape {dataset.spec.shape}")

    def _reference_stats(self, dataset: Dataset) -> tuple[Any, Any, int]:
        # Keyed by the data fingerprint and count: a different dataset or count recomputes.
        key = (dataset.fingerprint(), self.num_samples)
        if key not in self._reference:
            ref = dataset.reference(self.num_samples)
            stats = StreamingStats().update(ref)
            self._reference[key] = (stats.mean, stats.cov, stats.n)
        return self._reference[key]

    def evaluate(self, sample_fn: SampleFn, dataset: Dataset, device: torch.device | str) -> MetricResult:
        self.check(dataset)
        samples = _draw(sample_fn, self.num_samples, dataset).double().cpu()
        mu_r, cov_r, n_ref = self._reference_stats(dataset)
        finite = bool(torch.isfinite(samples).all())
        values = {"fd_points": math.nan}
        if finite:
            gen = StreamingStats().update(samples)
            values["fd_points"] = frechet_distance(gen.mean, gen.cov, mu_r, cov_r)
        if dataset.modes is not None and dataset.mode_std is not None:
            values.update(mode_statistics(samples, dataset.modes, dataset.mode_std, QUALITY_STDS))
        protocol = {"metric": self.name, "extractor": "coordinates", "weights_hash": None,
                    "reference_split": _reference_split(dataset), "reference_count": n_ref,
                    "generated_count": self.num_samples, "image_size": 0, "channels": "n/a",
                    "statistics": "float64", "quality_stds": QUALITY_STDS,
                    "coverage_rule": "a mode is covered when it gets >= 10% of its fair share of samples",
                    "generated_finite": finite, "versions": versions()}
        return MetricResult(values, protocol)


# -- registration ----------------------------------------------------------------------------------

def point_metrics(num_samples: int = 2000) -> PointMetrics:
    """Exact float64 Fréchet distance on 2-D coordinates plus mode coverage, quality and mode KL."""
    return PointMetrics(num_samples)


def fidelity(num_samples: int = 1000, inception_weights: str = "", kid_subset_size: int = 0,
             kid_subsets: int = 10, precision_recall: bool = True) -> Metric:
    """FD, KID, precision/recall via torch-fidelity: InceptionV3 if its weights are local, else the domain extractor.

    ``kid_subset_size=0`` means min(1000, reference count, num_samples). ``kid_subsets`` is 10
    rather than torch-fidelity's 100: KID's polynomial kernels are computed with numpy on the CPU
    and 100 subsets made KID alone cost ~2 s per eval point on digits (benchmarks/eval_overhead.py);
    the mean over 10 subsets is the same unbiased estimate with a wider spread (reported as *_std).
    """
    from .image_metrics import Fidelity

    return Fidelity(num_samples, inception_weights, kid_subset_size, kid_subsets, precision_recall)


def class_coverage(num_samples: int = 1000) -> Metric:
    """Classes covered by generated images and KL of their class histogram from the data's."""
    from .image_metrics import ClassCoverage

    return ClassCoverage(num_samples)


@hookimpl
def ganbench_register_metrics(registry: Any) -> None:
    registry.add("point_metrics", point_metrics, kinds=("points",))
    registry.add("fidelity", fidelity, kinds=("images",))
    registry.add("class_coverage", class_coverage, kinds=("images",))
