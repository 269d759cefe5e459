"""Fréchet distance in float64 and streaming statistics: closed forms and invariants."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ganbench.api import GanbenchError
from ganbench.frechet import StreamingStats, feature_stats, frechet_distance, frechet_distance_between


def test_closed_form_diagonal_gaussians():
    # |mu|^2 = 1; tr S1 + tr S2 = 4 + 15; tr sqrt(S1 S2) = 2 + 1 + 3 + 1 = 7  ->  1 + 19 - 14 = 6.
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, 0.0, 0.0])
    fd = frechet_distance(mu1, np.eye(4), mu2, np.diag([4.0, 1.0, 9.0, 1.0]))
    assert isinstance(fd, float)
    assert fd == pytest.approx(6.0, abs=1e-9)


def test_closed_form_is_symmetric_and_accepts_tensors():
    s2 = torch.diag(torch.tensor([4.0, 1.0, 9.0, 1.0], dtype=torch.float64))
    fd = frechet_distance(torch.tensor([1.0, 0, 0, 0]), s2, torch.zeros(4), torch.eye(4))
    assert fd == pytest.approx(6.0, abs=1e-9)


def test_non_diagonal_closed_form():
    # Commuting covariances S and 4S: tr sqrt(S 4S) = 2 tr S, so FD = tr S + 4 tr S - 4 tr S = tr S.
    a = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])
    assert frechet_distance(np.zeros(3), a, np.zeros(3), 4 * a) == pytest.approx(np.trace(a), abs=1e-9)


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    sigma = a @ a.T
    mu = rng.normal(size=6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_feature_set_against_itself_with_fewer_samples_than_dims():
    torch.manual_seed(0)
    feats = torch.randn(10, 64) * 3 + 5  # rank-deficient covariance: 10 samples, 64 dimensions
    fd = frechet_distance_between(feats, feats)
    assert isinstance(fd, float) and not math.isnan(fd)
    assert abs(fd) <= 1e-6


def test_singular_and_near_singular_never_complex_or_nan():
    rng = np.random.default_rng(1)
    for n, d in ((3, 50), (20, 20), (2, 8)):
        x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 0.5
        fd = frechet_distance_between(x, y)
        assert isinstance(fd, float) and math.isfinite(fd) and fd >= 0.0
    # A zero covariance on one side: FD reduces to |mu1 - mu2|^2 + tr S2.
    s = np.diag([1.0, 2.0])
    assert frechet_distance([0, 0], np.zeros((2, 2)), [3, 4], s) == pytest.approx(25 + 3, abs=1e-9)


def test_fewer_than_two_samples_is_a_clear_error():
    with pytest.raises(GanbenchError, match="at least 2 samples"):
        frechet_distance_between(torch.randn(1, 4), torch.randn(5, 4))
    with pytest.raises(GanbenchError, match="at least 2 samples"):
        feature_stats(torch.zeros(0, 3))


def test_shape_mismatch_is_an_error():
    with pytest.raises(GanbenchError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_non_finite_statistics_give_nan_not_an_exception():
    assert math.isnan(frechet_distance([math.nan, 0], np.eye(2), [0, 0], np.eye(2)))


def test_stats_invariant_to_batch_size_and_order():
    torch.manual_seed(0)
    feats = torch.randn(300, 7, dtype=torch.float64) * 2 + 1000  # large mean: cancellation-prone
    whole = StreamingStats().update(feats)
    ref_mean, ref_cov = feats.mean(0).numpy(), np.cov(feats.numpy(), rowvar=False)
    np.testing.assert_allclose(whole.mean, ref_mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(whole.cov, ref_cov, rtol=1e-10, atol=1e-10)
    for batch, seed in ((1, 1), (7, 2), (64, 3), (299, 4)):
        perm = torch.randperm(300, generator=torch.Generator().manual_seed(seed))
        stats = StreamingStats()
        for chunk in feats[perm].split(batch):
            stats.update(chunk)
        assert stats.n == 300
        np.testing.assert_allclose(stats.mean, whole.mean, rtol=0, atol=1e-9)
        np.testing.assert_allclose(stats.cov, whole.cov, rtol=1e-10, atol=1e-10)


def test_stats_are_float64_even_from_float32_input():
    x = torch.randn(50, 3, dtype=torch.float32)
    mu, cov = feature_stats(x)
    assert mu.dtype == np.float64 and cov.dtype == np.float64
    np.testing.assert_allclose(cov, np.cov(x.double().numpy(), rowvar=False), atol=1e-12)


def test_dimension_change_is_an_error():
    stats = StreamingStats().update(torch.randn(4, 3))
    with pytest.raises(GanbenchError, match="dimension"):
        stats.update(torch.randn(4, 5))
