"""Fréchet distance between Gaussians, in float64, and streaming mean/covariance statistics.

torch-fidelity computes the image metrics; this module serves the point metrics (Fréchet distance on
2-D coordinates) and the tests of the distance's invariants.

The distance between N(mu1, S1) and N(mu2, S2) is

    |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1^(1/2) S2 S1^(1/2)).

The trace term is computed from the *symmetric* matrix S1^(1/2) S2 S1^(1/2) with ``eigvalsh``: its
eigenvalues are real by construction, tiny negatives from round-off are clipped to 0, so the result
is never complex or NaN, even for singular covariances (fewer samples than dimensions).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .api import GanbenchError


def _as_f64(x: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix via its eigen-decomposition (negatives clipped)."""
    sym = (sigma + sigma.T) / 2
    w, v = np.linalg.eigh(sym)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray | Tensor, sigma1: np.ndarray | Tensor,
                     mu2: np.ndarray | Tensor, sigma2: np.ndarray | Tensor) -> float:
    """Fréchet distance between two Gaussians given by mean and covariance (float64 throughout)."""
    mu1, mu2 = _as_f64(mu1).reshape(-1), _as_f64(mu2).reshape(-1)
    s1, s2 = np.atleast_2d(_as_f64(sigma1)), np.atleast_2d(_as_f64(sigma2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise GanbenchError(f"Fréchet distance: shapes do not match: mu {mu1.shape} vs {mu2.shape}, "
                            f"sigma {s1.shape} vs {s2.shape}")
    if not all(np.all(np.isfinite(a)) for a in (mu1, s1, mu2, s2)):
        return float("nan")  # non-finite statistics (a diverged generator): no distance to report
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # The distance is >= 0 mathematically; anything below is round-off of the trace terms.
    return max(fd, 0.0)


class StreamingStats:
    """Mean and covariance of feature vectors fed in batches, in float64.

    Batches are merged with Chan et al.'s pairwise update (per-batch mean and centred scatter
    matrix, then a rank-one correction) rather than raw sums of x and x x^T: the raw-sum formula
    loses precision to cancellation when the mean is large relative to the spread, while the
    pairwise merge gives the same statistics, to round-off, for any batch sizes or order.
    """

    def __init__(self, dim: int | None = None):
        self.n = 0
        self.dim = dim
        self._mean: Tensor | None = None
        self._scatter: Tensor | None = None  # sum of (x - mean)(x - mean)^T

    def update(self, batch: Tensor | np.ndarray) -> "StreamingStats":
        x = torch.as_tensor(batch).detach().to(torch.float64)
        if x.dim() < 2:
            raise GanbenchError(f"StreamingStats: expected a batch of shape (n, d), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            return self
        x = x.reshape(x.shape[0], -1)
        if self.dim is None:
            self.dim = x.shape[1]
        if x.shape[1] != self.dim:
            raise GanbenchError(f"StreamingStats: got features of dimension {x.shape[1]}, expected {self.dim}")
        nb = x.shape[0]
        mean_b = x.mean(dim=0)
        centred = x - mean_b
        scatter_b = centred.T @ centred
        if self._mean is None:
            self.n, self._mean, self._scatter = nb, mean_b, scatter_b
            return self
        mean_b, scatter_b = mean_b.to(self._mean.device), scatter_b.to(self._mean.device)
        n = self.n + nb
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._scatter = self._scatter + scatter_b + torch.outer(delta, delta) * (self.n * nb / n)
        self.n = n
        return self

    def _require(self, what: str) -> None:
        if self.n < 2:
            raise GanbenchError(f"{what} needs at least 2 samples, got {self.n}")

    @property
    def mean(self) -> np.ndarray:
        self._require("a mean/covariance estimate")
        return self._mean.cpu().numpy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (divides by n - 1, as numpy.cov and torch-fidelity do)."""
        self._require("a covariance estimate")
        return (self._scatter / (self.n - 1)).cpu().numpy()


def feature_stats(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of a set of feature vectors, float64; at least 2 samples."""
    stats = StreamingStats().update(features)
    return stats.mean, stats.cov


def frechet_distance_between(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two sets of feature vectors."""
    mu1, s1 = feature_stats(x)
    mu2, s2 = feature_stats(y)
    return frechet_distance(mu1, s1, mu2, s2)
