"""Posterior summaries in NumPy against ArviZ."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from hierbayes.core.intervals import hdi, summarize


@pytest.mark.parametrize("prob", [0.5, 0.89, 0.94])
def test_hdi_matches_arviz(prob):
    rng = np.random.default_rng(4)
    draws = np.column_stack([rng.gamma(2.0, size=4000), rng.normal(size=4000)])
    expected = np.stack([az.hdi(draws[:, k], hdi_prob=prob) for k in range(2)])
    np.testing.assert_array_equal(hdi(draws, prob), expected)


def test_summary_columns_and_shape():
    draws = np.random.default_rng(0).normal(3.0, 2.0, size=(200_000, 2, 3))
    stats = summarize(draws, 0.9)
    assert stats.shape == (2, 3, 4)
    np.testing.assert_allclose(stats[..., 0], 3.0, atol=0.05)
    np.testing.assert_allclose(stats[..., 1], 2.0, rtol=0.02)
    # a normal's 90% HDI is mean +- 1.645 sd
    # A normal's 90% HDI is the mean +- 1.645 sd; its width is what the draws pin down (the
    # ends move together: the width is flat in the interval's position near its minimum).
    np.testing.assert_allclose(stats[..., 3] - stats[..., 2], 2 * 1.645 * 2.0, rtol=0.01)
    inside = (draws >= stats[..., 2]) & (draws <= stats[..., 3])
    np.testing.assert_allclose(inside.mean(axis=0), 0.9, atol=1e-4)


def test_bad_probability_is_refused():
    with pytest.raises(ValueError, match="prob must lie in"):
        hdi([1.0, 2.0], 1.0)
