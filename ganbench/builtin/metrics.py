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
from ..features import domain_extractor, to_uint8
from ..fidelity import (
    CONVERSION, FIDELITY_SEED, INCEPTION_NAME, LazyImages, compute_fidelity, file_sha256,
    inception_weights_path, missing_weights_message, prepare_images, reference_cache_name,
)
from ..frechet import StreamingStats, frechet_distance
from ..plugins import hookimpl
from ..modes import coverage_threshold, histogram_kl, mode_statistics

#: Points further than this many standard deviations (per coordinate) from their nearest mode are
#: low quality; see ``mode_statistics``.
QUALITY_STDS = 3.0


def versions() -> dict[str, str]:
    import torch_fidelity

    from .. import __version__
    return {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__, "ganbench": __version__}


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


# -- images: FID family through torch-fidelity ------------------------------------------------------

class Fidelity(Metric):
    """Fréchet distance, KID, precision and recall through torch-fidelity."""

    name = "fidelity"

    def __init__(self, num_samples: int, inception_weights: str, kid_subset_size: int, kid_subsets: int,
                 precision_recall: bool):
        if num_samples < 2 or kid_subsets < 1 or kid_subset_size < 0:
            raise GanbenchError("metric 'fidelity': need num_samples >= 2, kid_subsets >= 1, kid_subset_size >= 0")
        self.num_samples, self.inception_weights = num_samples, inception_weights
        self.kid_subset_size, self.kid_subsets = kid_subset_size, kid_subsets
        self.precision_recall = precision_recall
        self.weights_path: str | None = None
        self.primary = "fd"
        self.lower_is_better = {}

    def check(self, dataset: Dataset) -> None:
        """Choose the extractor (and so the value names) before training; fail early if there is none."""
        if dataset.spec.kind != "images":
            raise GanbenchError(f"metric 'fidelity' needs images; dataset {dataset.name!r} holds {dataset.spec.kind}")
        self.weights_path = inception_weights_path(self.inception_weights)
        if self.weights_path is None and not dataset.num_classes:
            raise GanbenchError(missing_weights_message(dataset.name))
        fd, kid = ("fid", "kid") if self.weights_path else (f"fd_{dataset.name}", f"kid_{dataset.name}")
        self._names = {"fd": fd, "kid": kid, "kid_std": f"{kid}_std", "precision": "precision", "recall": "recall"}
        self.primary = fd
        self.lower_is_better = {fd: True, kid: True, f"{kid}_std": True, "precision": False, "recall": False}

    def _extractor(self, dataset: Dataset, device: torch.device | str) -> tuple[str, int | None, dict[str, Any]]:
        """(torch-fidelity extractor name, channels to replicate to, protocol entries)."""
        if self.weights_path:
            channels = 3 if dataset.spec.channels in (1, 3) else None
            if channels is None:
                raise GanbenchError(f"InceptionV3 needs 1- or 3-channel images, dataset {dataset.name!r} has "
                                    f"{dataset.spec.channels}")
            handling = "gray replicated to 3 channels" if dataset.spec.channels == 1 else "rgb"
            return INCEPTION_NAME, 3, {"extractor": INCEPTION_NAME, "extractor_kind": "InceptionV3 (torch-fidelity)",
                                       "weights_hash": file_sha256(self.weights_path), "channels": handling,
                                       "extractor_input_size": 299}
        ext = domain_extractor(dataset, device)
        return ext.name, None, {**ext.protocol(), "channels": f"native ({dataset.spec.channels})"}

    def evaluate(self, sample_fn: SampleFn, dataset: Dataset, device: torch.device | str) -> MetricResult:
        self.check(dataset)
        name, replicate, proto = self._extractor(dataset, device)
        ref_count = min(self.num_samples, len(dataset.reference()))
        if ref_count < 2:
            raise GanbenchError(f"metric 'fidelity': dataset {dataset.name!r} has fewer than 2 reference images")
        generated = _draw(sample_fn, self.num_samples, dataset)
        kid_size = self.kid_subset_size or min(1000, ref_count, self.num_samples)
        protocol = {"metric": self.name, **proto, "reference_split": _reference_split(dataset),
                    "reference_count": ref_count, "generated_count": self.num_samples,
                    "image_size": dataset.spec.size, "conversion": CONVERSION, "kid_subset_size": kid_size,
                    "kid_subsets": self.kid_subsets, "prc_neighborhood": 3, "rng_seed": FIDELITY_SEED,
                    "versions": versions()}
        if not bool(torch.isfinite(generated).all()):
            nan = {k: math.nan for k in ("fd", "kid", "kid_std") + (("precision", "recall") if self.precision_recall else ())}
            return MetricResult({self._names[k]: v for k, v in nan.items()}, {**protocol, "generated_finite": False})
        cache_name = reference_cache_name(dataset=dataset.name, fingerprint=dataset.fingerprint(),
                                          split=protocol["reference_split"], count=ref_count, extractor=name,
                                          weights_hash=proto["weights_hash"], image_size=dataset.spec.size,
                                          channels=proto["channels"])
        reference = LazyImages(lambda: prepare_images(dataset.reference(ref_count), replicate))
        out = compute_fidelity(prepare_images(generated, replicate), reference, cache_name, name,
                               weights_path=self.weights_path, precision_recall=self.precision_recall,
                               kid_subset_size=kid_size, kid_subsets=self.kid_subsets, device=device)
        protocol["reference_cache"] = cache_name
        return MetricResult({self._names[k]: v for k, v in out.items()}, protocol)


# -- images: class coverage -----------------------------------------------------------------------

class ClassCoverage(Metric):
    """Classes covered by generated samples and KL(generated class histogram || data's)."""

    name = "class_coverage"
    primary = "class_kl"
    lower_is_better = {"classes_covered": False, "num_classes": False, "class_kl": True}

    def __init__(self, num_samples: int):
        if num_samples < 1:
            raise GanbenchError(f"metric 'class_coverage': num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples

    def check(self, dataset: Dataset) -> None:
        if dataset.spec.kind != "images" or not dataset.num_classes:
            raise GanbenchError(f"metric 'class_coverage' needs a labelled image dataset; {dataset.name!r} is not one")

    def _data_histogram(self, dataset: Dataset) -> tuple[Tensor, str, int]:
        labels = dataset.reference_labels()
        split = _reference_split(dataset)
        if labels is None:
            labels, split = dataset.labelled_train()[1], "train"
        counts = torch.bincount(labels.long().cpu(), minlength=dataset.num_classes).double()
        return counts / counts.sum(), split, len(labels)

    def evaluate(self, sample_fn: SampleFn, dataset: Dataset, device: torch.device | str) -> MetricResult:
        self.check(dataset)
        ext = domain_extractor(dataset, device)
        generated = _draw(sample_fn, self.num_samples, dataset)
        p_data, split, n_labels = self._data_histogram(dataset)
        k = int(dataset.num_classes)
        protocol = {"metric": self.name, **ext.protocol(), "reference_split": split,
                    "reference_count": n_labels, "generated_count": self.num_samples,
                    "image_size": dataset.spec.size, "channels": f"native ({dataset.spec.channels})",
                    "conversion": CONVERSION, "versions": versions(),
                    "coverage_rule": "a class is covered when it gets >= 10% of its share of samples in the data"}
        if not bool(torch.isfinite(generated).all()):
            return MetricResult({"classes_covered": math.nan, "num_classes": k, "class_kl": math.nan},
                                {**protocol, "generated_finite": False})
        pred = ext.predict(to_uint8(generated))
        counts = torch.bincount(pred, minlength=k).double()
        covered = int((counts >= coverage_threshold(self.num_samples, p_data)).sum())
        values = {"classes_covered": covered, "num_classes": k,
                  "class_kl": histogram_kl(counts / counts.sum(), p_data)}
        return MetricResult(values, protocol)


# -- registration ----------------------------------------------------------------------------------

def point_metrics(num_samples: int = 2000) -> PointMetrics:
    """Exact float64 Fréchet distance on 2-D coordinates plus mode coverage, quality and mode KL."""
    return PointMetrics(num_samples)


def fidelity(num_samples: int = 1000, inception_weights: str = "", kid_subset_size: int = 0,
             kid_subsets: int = 10, precision_recall: bool = True) -> Fidelity:
    """FD, KID, precision/recall via torch-fidelity: InceptionV3 if its weights are local, else the domain extractor.

    ``kid_subset_size=0`` means min(1000, reference count, num_samples). ``kid_subsets`` is 10
    rather than torch-fidelity's 100: KID's polynomial kernels are computed with numpy on the CPU
    and 100 subsets made KID alone cost ~2 s per eval point on digits (benchmarks/eval_overhead.py);
    the mean over 10 subsets is the same unbiased estimate with a wider spread (reported as *_std).
    """
    return Fidelity(num_samples, inception_weights, kid_subset_size, kid_subsets, precision_recall)


def class_coverage(num_samples: int = 1000) -> ClassCoverage:
    """Classes covered by generated images and KL of their class histogram from the data's."""
    return ClassCoverage(num_samples)


@hookimpl
def ganbench_register_metrics(registry: Any) -> None:
    registry.add("point_metrics", point_metrics, kinds=("points",))
    registry.add("fidelity", fidelity, kinds=("images",))
    registry.add("class_coverage", class_coverage, kinds=("images",))
