"""Mode and class histograms: coverage, sample quality, KL divergence (point and class metrics).

Coverage rule: a mode (or class) counts as covered when it receives at least 10% of its fair share
of the samples (``0.1 * n * p``), so a few stray samples near a mode the generator has dropped do
not count as covering it, while a generator that covers every mode unevenly still gets credit.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

COVERAGE_FRACTION = 0.1


def coverage_threshold(n: int, share: Tensor) -> Tensor:
    """Sample count each mode/class needs to count as covered, given its share of the data."""
    return COVERAGE_FRACTION * n * share


def histogram_kl(p: Tensor, q: Tensor) -> float:
    """KL(p || q) in nats for two histograms (each sums to 1); terms with p = 0 contribute 0."""
    p, q = p.double(), q.double()
    mask = p > 0
    if bool((q[mask] <= 0).any()):
        return math.inf
    return float((p[mask] * (p[mask] / q[mask]).log()).sum())


def mode_statistics(samples: Tensor, modes: Tensor, std: float, quality_stds: float = 3.0) -> dict[str, float]:
    """Mode metrics of 2-D samples against a Gaussian mixture with centres ``modes`` and std ``std``.

    - ``high_quality``: fraction of samples within ``quality_stds`` standard deviations of their
      nearest mode *in every coordinate* (a box, not a disc: exact samples of an isotropic 2-D
      Gaussian fall inside the 3-sigma box with probability 0.9973^2 = 0.9946, but inside the
      3-sigma disc only with probability 1 - exp(-4.5) = 0.9889, so the disc would call 1.1% of
      perfect samples low quality);
    - ``modes_covered`` / ``num_modes``: modes whose high-quality samples reach the coverage rule;
    - ``mode_kl``: KL of the high-quality samples' mode histogram from uniform, in nats
      (0 = all modes equally represented, log K = a single mode); NaN with no high-quality sample.
    Non-finite samples are never high quality.
    """
    x = samples.double().cpu()
    centres = modes.double().cpu()
    k, n = len(centres), len(x)
    diff = (x[:, None, :] - centres[None, :, :])  # (n, K, 2)
    nearest = diff.pow(2).sum(-1).nan_to_num(math.inf).argmin(dim=1)
    offset = diff[torch.arange(n), nearest].abs().amax(dim=1)
    good = offset <= quality_stds * std  # NaN compares False
    counts = torch.bincount(nearest[good], minlength=k).double()
    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)
    covered = int((counts >= coverage_threshold(n, uniform)).sum())
    hq = int(good.sum())
    return {"modes_covered": covered, "num_modes": k, "high_quality": hq / n if n else math.nan,
            "mode_kl": histogram_kl(counts / hq, uniform) if hq else math.nan}
