"""Image metrics: the FID family through torch-fidelity, and class coverage by the domain classifier.

Apart from ``metrics.py`` (which registers them) because torch-fidelity takes over a second to
import: only processes that score images load it, not every ``ganbench`` command.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..api import Dataset, GanbenchError, Metric, MetricResult, SampleFn
from ..features import domain_extractor, to_uint8
from ..fidelity import (
    CONVERSION, FIDELITY_SEED, INCEPTION_NAME, LazyImages, compute_fidelity, file_sha256,
    inception_weights_path, missing_weights_message, prepare_images, reference_cache_name,
)
from ..modes import coverage_threshold, histogram_kl
from .metrics import _draw, _reference_split, versions


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
