"""SBC rank statistics and uniformity tests on known cases: ranks from exact posteriors,
miscalibrated ones, complete enumeration of small cases, and the result's verdict and plot."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.analysis.sbc_result import SBCResult
from hierbayes.core.ranks import (
    chi_square,
    compute_ranks,
    ecdf_band,
    ecdf_difference,
    ecdf_pvalues,
    ecdf_thresholds,
)


def result_from(ranks: np.ndarray, n_draws: int, names=None) -> SBCResult:
    ranks = np.asarray(ranks).reshape(len(ranks), -1)
    names = names or [f"p{j}" for j in range(ranks.shape[1])]
    frame = pd.DataFrame(ranks, columns=names)
    diagnostics = pd.DataFrame(
        {"divergences": 0, "min_ess_bulk": np.nan, "seconds": 0.0}, frame.index
    )
    return SBCResult(frame, n_draws, frame * 0.0, diagnostics, {}, len(frame))


# ---------------------------------------------------------------------------------------------
# Ranks and uniformity tests on synthetic draws where the truth is known


def conjugate_ranks(n_sims, n_draws, *, shift=0.0, scale=1.0, seed=0):
    """theta ~ N(0, 1), y ~ N(theta, 1): the posterior is N(y/2, 1/2). Draw L posterior
    draws exactly, optionally shifted (biased) or rescaled (over/underconfident)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_sims)
    y = rng.normal(theta, 1.0)
    draws = rng.normal(
        y[:, None] / 2 + shift * np.sqrt(0.5), scale * np.sqrt(0.5), (n_sims, n_draws)
    )
    return compute_ranks(theta, draws, rng)


def test_compute_ranks_counts_draws_below_the_truth_and_breaks_ties_at_random():
    draws = np.array([[0.1, 0.5, 0.5, 0.9], [1.0, 2.0, 3.0, 4.0]])
    assert compute_ranks(np.array([0.5, 5.0]), draws).tolist() == [1, 4]
    rng = np.random.default_rng(1)
    tied = [int(compute_ranks(np.array([0.5]), draws[:1], rng)[0]) for _ in range(300)]
    assert set(tied) == {1, 2, 3}  # 1 below, 2 ties
    with pytest.raises(hb.SpecError, match="shape"):
        compute_ranks(np.zeros(3), np.zeros((2, 5)))


def test_exact_posterior_draws_give_uniform_ranks():
    ranks = conjugate_ranks(1000, 99)
    assert ranks.min() >= 0 and ranks.max() <= 99
    u = result_from(ranks, 99).uniformity()
    assert u.passed, u
    assert u.table.loc["p0", "ecdf_p"] > 0.05 and u.table.loc["p0", "chi2_p"] > 0.05


@pytest.mark.parametrize(
    "shift, scale",
    [(0.4, 1.0), (-0.4, 1.0), (0.0, 0.6), (0.0, 1.6)],
    ids=["biased-up", "biased-down", "overconfident", "underconfident"],
)
def test_miscalibrated_posteriors_fail(shift, scale):
    ranks = conjugate_ranks(300, 99, shift=shift, scale=scale)
    u = result_from(ranks, 99).uniformity(alpha=0.01)
    assert not u.passed, u
    assert u.table.loc["p0", "ecdf_p"] < 1e-4
    z, d = ecdf_difference(ranks, 99)
    band = ecdf_band(300, 99)
    assert np.any((d < band.lower) | (d > band.upper))  # the plot shows it too
    if shift > 0:  # draws too high: the truth ranks low, the ECDF rises early
        assert d.max() > band.upper.max()


def all_rank_vectors(n, n_draws):
    return np.array(list(itertools.product(range(n_draws + 1), repeat=n)))


def statistic(ranks, n_draws):
    """The ECDF test statistic by its definition, for each row of ranks (n,)."""
    t = ecdf_thresholds(n_draws)
    z = t / (n_draws + 1)
    n = ranks.shape[1]
    counts = (ranks[:, None, :] < t[None, :, None]).sum(axis=2)
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1, 2 * np.minimum(lower, upper)).min(axis=1)


@pytest.mark.parametrize("n, n_draws", [(3, 2), (5, 3), (6, 4)])
def test_ecdf_pvalue_and_band_match_complete_enumeration(n, n_draws):
    """Every rank vector of n simulations with ranks 0..L is equally likely under
    uniformity: enumerate them all and compare the exact recursion with the counts."""
    every = all_rank_vectors(n, n_draws)
    null = statistic(every, n_draws)
    rng = np.random.default_rng(n)
    observed = rng.integers(0, n_draws + 1, size=(n, 6))
    expected = [np.mean(null <= s) for s in statistic(observed.T, n_draws)]
    np.testing.assert_allclose(ecdf_pvalues(observed, n_draws), expected, rtol=1e-10)
    for prob in (0.5, 0.8, 0.9):
        band = ecdf_band(n, n_draws, prob)
        t = ecdf_thresholds(n_draws)
        diff = (every[:, None, :] < t[None, :, None]).mean(axis=2) - band.z
        inside = np.all((diff >= band.lower - 1e-12) & (diff <= band.upper + 1e-12), axis=1)
        assert inside.mean() >= prob  # simultaneous coverage ...
        assert inside.mean() == pytest.approx(np.mean(null >= band.gamma))
        tighter = np.unique(null[null > band.gamma])
        if tighter.size:  # ... and the band is the narrowest of its form with it
            assert np.mean(null >= tighter[0]) < prob


def test_band_and_pvalue_with_one_point_are_the_binomial_test():
    """L = 1: one evaluation point, z = 1/2; the count of zeros is Binomial(N, 1/2)."""
    n = 20  # P(C <= 5) = 0.0207, P(C <= 6) = 0.0577: the 95% acceptance region is 6..14
    band = ecdf_band(n, 1, 0.95)
    assert band.z.tolist() == [0.5]
    np.testing.assert_allclose([band.lower[0], band.upper[0]], [6 / 20 - 0.5, 14 / 20 - 0.5])
    ranks = np.array([0] * 5 + [1] * 15)
    p = ecdf_pvalues(ranks, 1)
    np.testing.assert_allclose(p, stats.binomtest(5, 20, 0.5).pvalue, rtol=1e-12)
    np.testing.assert_allclose(p, 2 * stats.binom.cdf(5, 20, 0.5), rtol=1e-12)


def test_ecdf_pvalues_match_the_simulated_null_distribution():
    """Beyond enumeration: the exact p-value is the null CDF of the statistic; compare it
    with the empirical CDF of 4000 uniform samples (DKW: off by > 0.043 w.p. < 1e-6)."""
    n, n_draws, m = 60, 49, 4000
    rng = np.random.default_rng(7)
    ranks = rng.integers(0, n_draws + 1, size=(n, m))
    null = statistic(ranks.T, n_draws)
    empirical = np.searchsorted(np.sort(null), null, side="right") / m
    p = ecdf_pvalues(ranks, n_draws)
    assert np.max(np.abs(empirical - p)) < np.sqrt(np.log(2 / 1e-6) / (2 * m))
    assert np.mean(p <= 0.05) == pytest.approx(0.05, abs=0.015)


def test_tiny_pvalues_keep_their_precision():
    ranks = np.zeros(200, dtype=int)  # every truth below every draw
    p = float(ecdf_pvalues(ranks, 99))
    assert 0 < p < 1e-100


def test_chi_square_against_scipy_and_known_cases():
    rng = np.random.default_rng(3)
    ranks = rng.integers(0, 100, size=200)
    stat, p, bins = chi_square(ranks, 99)
    assert bins == 20  # 100 ranks, 5 per bin
    ref = stats.chisquare(np.bincount(ranks // 5, minlength=20))
    np.testing.assert_allclose([stat, p], [ref.statistic, ref.pvalue])
    stat, p, _ = chi_square(np.arange(100), 99)
    assert (stat, p) == (0.0, 1.0)
    assert chi_square(np.zeros(100, dtype=int), 99)[1] < 1e-50
    assert chi_square(np.arange(10), 9)[2] == 2  # N // 5 bins at most
    # unequal bins (L + 1 = 7 ranks in 3 bins: 2, 2, 3) use their exact share
    stat, p, bins = chi_square(np.array([0, 1, 2, 3, 4, 5, 6] * 3), 6, bins=3)
    assert bins == 3 and stat == pytest.approx(0.0)


def test_uniformity_verdict_is_bonferroni_over_parameters():
    rng = np.random.default_rng(5)
    good = rng.integers(0, 50, size=(150, 4))
    bad = good.copy()
    bad[:, 2] = np.minimum(bad[:, 2] + 15, 49)  # one parameter biased
    for ranks in (good, bad):
        u = result_from(ranks, 49).uniformity(alpha=0.01)
        p = u.table["ecdf_p"].to_numpy()
        assert u.p_value == pytest.approx(min(1.0, 4 * p.min()))
        np.testing.assert_allclose(u.table["ecdf_p_adjusted"], np.minimum(1, 4 * p))
    assert result_from(good, 49).uniformity(alpha=0.01).passed
    u = result_from(bad, 49).uniformity(alpha=0.01)
    assert not u.passed and u.worst == "p2" and "NOT uniform" in repr(u)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ecdf_pvalues(np.array([0, 5]), 4), "0..4"),
        (lambda: ecdf_pvalues(np.array([0.5, 1]), 4), "integers"),
        (lambda: ecdf_band(10, 9, prob=1.0), "prob"),
        (lambda: ecdf_band(0, 9), "n_simulations"),
        (lambda: chi_square(np.arange(10), 9, bins=1), "bins"),
        (lambda: ecdf_thresholds(9, n_points=0), "n_points"),
        (lambda: result_from(np.arange(10), 9).uniformity(alpha=0), "alpha"),
    ],
)
def test_statistics_reject_bad_arguments(call, match):
    with pytest.raises(hb.SpecError, match=match):
        call()


def test_sbc_plot_on_fake_ranks():
    rng = np.random.default_rng(2)
    names = ["Intercept", "sd_g[Intercept]", "sigma", "b_g[g0, Intercept]", "b_g[g1, Intercept]"]
    result = result_from(rng.integers(0, 100, size=(120, 5)), 99, names)
    fig = result.plot()
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5 and len(fig.axes) == 8  # 2 rows of 4
    assert visible[0].get_title().startswith("Intercept (p = ")
    assert len(visible[0].collections) == 1  # the band
    plt.close(fig)
    fig = result.plot(["sigma"], prob=0.99)
    assert [ax.get_title().split(" ")[0] for ax in fig.axes] == ["sigma"]
    plt.close(fig)
    with pytest.raises(hb.SpecError, match="unknown SBC parameter"):
        result.plot(["tau"])
    plt.close("all")
