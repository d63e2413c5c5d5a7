"""SBC rank statistics and uniformity tests: NumPy and SciPy only.

The rank of a true scalar parameter ``theta~`` among L posterior draws is
``#{l : theta^(l) < theta~}`` in ``{0, ..., L}``; under a correct model, simulator and
sampler it is uniform (Talts et al. 2018). Uniformity is tested two ways, per parameter:

* the simultaneous ECDF test of Säilynoja, Bürkner & Vehtari (2022, "Graphical test for
  discrete uniformity and its applications in goodness-of-fit evaluation and multiple
  sample comparison"): at K evaluation points ``z_k = t_k / (L + 1)`` the count of ranks
  below ``t_k`` is Binomial(N, z_k) under uniformity; the statistic is the smallest two-sided
  binomial tail probability over the K points. Its null distribution is computed exactly
  (a recursion over the counts at consecutive points, no simulation), and so are the
  simultaneous bands of the ECDF-difference plot;
* Pearson's chi-square on the ranks in equal-probability bins (Talts et al.'s histogram).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from hierbayes.errors import SpecError

__all__ = [
    "MAX_ECDF_POINTS",
    "Band",
    "chi_square",
    "compute_ranks",
    "ecdf_band",
    "ecdf_difference",
    "ecdf_pvalues",
    "ecdf_thresholds",
]

#: At most this many ECDF evaluation points (all L ranks when L is smaller).
MAX_ECDF_POINTS = 100


def compute_ranks(
    truth: np.ndarray, draws: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Rank of each true value among its posterior draws: ``#{l : draw_l < truth}``.

    Parameters
    ----------
    truth : array, shape (...)
        True values.
    draws : array, shape (..., L)
        Posterior draws, the last axis the L draws belonging to each true value.
    rng : numpy.random.Generator, optional
        Breaks ties (draws equal to the truth) at random, as Talts et al. do for discrete
        parameters; without it ties count as "not below".

    Returns
    -------
    ndarray of int, shape (...)
        Ranks in ``{0, ..., L}``.

    Examples
    --------
    >>> import numpy as np
    >>> compute_ranks(np.array([0.5, -3.0]), np.array([[0.1, 0.9, 0.2], [0.0, 1.0, 2.0]]))
    array([2, 0])
    """
    truth = np.asarray(truth, dtype=float)
    draws = np.asarray(draws, dtype=float)
    if draws.shape[:-1] != truth.shape:
        raise SpecError(
            f"draws must have shape truth.shape + (L,): got {draws.shape} for {truth.shape}"
        )
    below = np.sum(draws < truth[..., None], axis=-1)
    if rng is None:
        return below.astype(int)
    ties = np.sum(draws == truth[..., None], axis=-1)
    return (below + rng.integers(0, ties + 1)).astype(int)


def _check_ranks(ranks: np.ndarray, n_draws: int) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    if ranks.ndim != 2 or ranks.shape[0] < 1:
        raise SpecError(
            f"ranks must be (simulations,) or (simulations, parameters), got {ranks.shape}"
        )
    if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 1:
        raise SpecError(
            f"n_draws (L, the largest rank) must be a positive integer, got {n_draws!r}"
        )
    if np.any((ranks < 0) | (ranks > n_draws)) or not np.all(ranks == np.round(ranks)):
        raise SpecError(f"ranks must be integers in 0..{n_draws}")
    return ranks.astype(int)


def ecdf_thresholds(n_draws: int, n_points: int | None = None) -> np.ndarray:
    """The rank thresholds ``t_k`` (1 <= t_k <= L) at which the rank ECDF is evaluated.

    Every threshold when ``L <= n_points`` (default :data:`MAX_ECDF_POINTS`), otherwise
    ``n_points`` evenly spaced ones. The ECDF at ``t_k`` is the fraction of ranks below
    ``t_k``, whose expectation under uniformity is ``z_k = t_k / (L + 1)``.

    Examples
    --------
    >>> ecdf_thresholds(4).tolist()
    [1, 2, 3, 4]
    >>> ecdf_thresholds(999, n_points=4).tolist()
    [200, 400, 600, 800]
    """
    n_points = MAX_ECDF_POINTS if n_points is None else n_points
    if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 1:
        raise SpecError(f"n_points must be a positive integer, got {n_points!r}")
    if n_draws <= n_points:
        return np.arange(1, n_draws + 1)
    points = np.round(np.arange(1, n_points + 1) * (n_draws + 1) / (n_points + 1)).astype(int)
    return np.unique(np.clip(points, 1, n_draws))


def ecdf_difference(
    ranks: np.ndarray, n_draws: int, n_points: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ECDF of the fractional ranks minus the uniform CDF, at the evaluation points.

    Returns
    -------
    z : ndarray, shape (K,)
        Evaluation points ``t_k / (L + 1)``.
    difference : ndarray, shape (K,) or (K, parameters)
        ``#{ranks < t_k} / N - z_k``.

    Examples
    --------
    >>> z, d = ecdf_difference(np.array([0, 1, 2, 3]), 3)
    >>> z.tolist(), d.tolist()
    ([0.25, 0.5, 0.75], [0.0, 0.0, 0.0])
    """
    flat = np.ndim(ranks) == 1
    ranks = _check_ranks(ranks, n_draws)
    t = ecdf_thresholds(n_draws, n_points)
    z = t / (n_draws + 1)
    ecdf = (ranks[None, :, :] < t[:, None, None]).mean(axis=1)
    difference = ecdf - z[:, None]
    return z, difference[:, 0] if flat else difference


def _tail_probabilities(n: int, z: np.ndarray) -> np.ndarray:
    """``P[k, c] = min(1, 2 min(F(c), 1 - F(c - 1)))`` for Binomial(n, z_k): (K, n + 1)."""
    c = np.arange(n + 1)[None, :]
    lower = stats.binom.cdf(c, n, z[:, None])
    upper = stats.binom.sf(c - 1, n, z[:, None])
    return np.minimum(1.0, 2.0 * np.minimum(lower, upper))


def _intervals(tails: np.ndarray, gammas: np.ndarray, strict: bool) -> tuple[np.ndarray, ...]:
    """Per row r and point k, the counts c with ``tails[k, c] >= gammas[r]`` (or ``>``).

    ``tails[k]`` rises and then falls in c, so each set is an interval ``lo..hi`` (empty
    when ``lo > hi``). Returns ``lo, hi`` of shape (R, K).
    """
    inside = (
        tails[None, :, :] > gammas[:, None, None]
        if strict
        else tails[None] >= gammas[:, None, None]
    )
    counts = np.arange(tails.shape[1])
    lo = np.where(inside, counts, tails.shape[1]).min(axis=2)
    hi = np.where(inside, counts, -1).max(axis=2)
    return lo, hi


def _escape_probabilities(n: int, z: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """P(the count of n uniform ranks below z_k leaves ``lo[r, k]..hi[r, k]`` at some k).

    Given ``a`` of the n fractional ranks below ``z_{k-1}``, the number below ``z_k`` is
    ``a`` plus Binomial(n - a, (z_k - z_{k-1}) / (1 - z_{k-1})): a Markov chain over the
    counts, exact for discrete uniform ranks at thresholds that are whole ranks. The chain
    is followed only inside the union of the rows' intervals, and the probability that
    leaves them is summed as it leaves (no ``1 - coverage`` cancellation for tiny values).
    """
    rows = lo.shape[0]
    escaped = np.zeros(rows)
    state = np.ones((rows, 1))  # all n ranks lie above z_0 = 0: the count is 0
    window_lo, previous = 0, 0.0
    for k, zk in enumerate(z):
        q = (zk - previous) / (1.0 - previous)
        new_lo, new_hi = int(lo[:, k].min()), int(hi[:, k].max())
        a = np.arange(window_lo, window_lo + state.shape[1])
        if new_hi < new_lo:  # every interval is empty: everything escapes here
            return escaped + state.sum(axis=1)
        c = np.arange(new_lo, new_hi + 1)
        step = stats.binom.pmf(c[None, :] - a[:, None], n - a[:, None], q)
        outside = stats.binom.cdf(new_lo - 1 - a, n - a, q) + stats.binom.sf(new_hi - a, n - a, q)
        moved = state @ step
        keep = (c[None, :] >= lo[:, k : k + 1]) & (c[None, :] <= hi[:, k : k + 1])
        escaped += state @ outside + np.where(keep, 0.0, moved).sum(axis=1)
        state = np.where(keep, moved, 0.0)
        window_lo, previous = new_lo, zk
    return escaped


def ecdf_pvalues(ranks: np.ndarray, n_draws: int, n_points: int | None = None) -> np.ndarray:
    """Exact p-values of the simultaneous ECDF uniformity test (Säilynoja et al. 2022).

    The statistic is the smallest two-sided binomial tail probability of the ECDF over the
    evaluation points (:func:`ecdf_thresholds`); the p-value is the probability, under
    uniform ranks, of a statistic as small or smaller, computed exactly.

    Parameters
    ----------
    ranks : array of int, shape (N,) or (N, m)
        Ranks in ``{0, ..., n_draws}``, one column per parameter.
    n_draws : int
        L, the largest possible rank.
    n_points : int, optional
        At most this many evaluation points (default :data:`MAX_ECDF_POINTS`).

    Returns
    -------
    ndarray, shape () or (m,)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bool(ecdf_pvalues(rng.integers(0, 100, size=200), 99) > 0.05)
    True
    >>> float(ecdf_pvalues(rng.integers(0, 50, size=200), 99)) < 1e-10  # all in the lower half
    True
    """
    flat = np.ndim(ranks) == 1
    ranks = _check_ranks(ranks, n_draws)
    n = ranks.shape[0]
    t = ecdf_thresholds(n_draws, n_points)
    z = t / (n_draws + 1)
    tails = _tail_probabilities(n, z)  # (K, n + 1)
    counts = (ranks[None, :, :] < t[:, None, None]).sum(axis=1)  # (K, m)
    observed = np.take_along_axis(tails, counts, axis=1).min(axis=0)  # (m,)
    # p = P(statistic <= observed) = P(some count leaves {c : tails[k, c] > observed})
    p = np.clip(_escape_probabilities(n, z, *_intervals(tails, observed, strict=True)), 0, 1)
    return p[0] if flat else p


class Band(NamedTuple):
    """Simultaneous band of the ECDF difference: ``lower <= ECDF(z) - z <= upper`` at every
    point with probability ``prob`` (at least) under uniform ranks."""

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    prob: float
    gamma: float


def ecdf_band(
    n_simulations: int, n_draws: int, prob: float = 0.95, n_points: int | None = None
) -> Band:
    """Simultaneous ``prob`` band of the ECDF difference of N uniform ranks in 0..L.

    The pointwise binomial band at level ``gamma`` is widened to simultaneous coverage by
    choosing the largest ``gamma`` whose exact coverage over all K points is at least
    ``prob`` (Säilynoja et al. 2022), so a rank ECDF leaves the band anywhere with
    probability at most ``1 - prob``. The band is exact for discrete ranks.

    Examples
    --------
    >>> band = ecdf_band(100, 99)
    >>> round(band.gamma, 4) < 0.05, bool(band.lower.max() < 0 < band.upper.min())
    (True, True)
    """
    if not 0 < prob < 1:
        raise SpecError(f"prob must be in (0, 1), got {prob!r}")
    n = int(n_simulations)
    if n < 1:
        raise SpecError(f"n_simulations must be at least 1, got {n_simulations!r}")
    t = ecdf_thresholds(n_draws, n_points)
    z = t / (n_draws + 1)
    tails = _tail_probabilities(n, z)
    # The band at gamma keeps the counts with tails >= gamma; coverage falls as gamma rises.
    # Each point's tail probability is a valid p-value, so gamma = (1 - prob) / K has
    # coverage >= prob (union bound): search the candidates above it, 32 per pass.
    floor = (1.0 - prob) / len(z)
    candidates = np.unique(tails)
    lo = max(0, int(np.searchsorted(candidates, floor, side="right")) - 1)
    hi = len(candidates) - 1

    def covered(gammas: np.ndarray) -> np.ndarray:
        escape = _escape_probabilities(n, z, *_intervals(tails, gammas, strict=False))
        return escape <= 1.0 - prob + 1e-12

    while hi > lo:
        picks = np.unique(np.linspace(lo, hi, min(32, hi - lo + 1)).round().astype(int))
        ok = covered(candidates[picks])
        lo = max(lo, int(picks[ok].max())) if ok.any() else lo
        hi = int(picks[~ok].min()) - 1 if (~ok).any() else lo
    gamma = float(candidates[lo])
    low, high = _intervals(tails, np.array([gamma]), strict=False)
    low, high = low[0], high[0]
    return Band(z=z, lower=low / n - z, upper=high / n - z, prob=float(prob), gamma=gamma)


def chi_square(
    ranks: np.ndarray, n_draws: int, bins: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pearson's chi-square test of uniform ranks in (nearly) equal-probability bins.

    ``bins`` defaults to ``min(20, L + 1, N // 5)`` (at least 2), so that every bin expects
    about 5 ranks or more; the expected counts follow each bin's exact share of 0..L.

    Returns
    -------
    statistic, p_value : ndarray, shape () or (m,)
    bins : int

    Examples
    --------
    >>> stat, p, bins = chi_square(np.arange(100), 99)
    >>> float(stat), float(p), bins
    (0.0, 1.0, 20)
    """
    flat = np.ndim(ranks) == 1
    ranks = _check_ranks(ranks, n_draws)
    n = ranks.shape[0]
    if bins is None:
        bins = max(2, min(20, n_draws + 1, n // 5))
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise SpecError(f"bins must be an integer >= 2, got {bins!r}")
    bins = int(min(bins, n_draws + 1))
    edges = np.floor(np.arange(bins + 1) * (n_draws + 1) / bins).astype(int)
    which = np.searchsorted(edges, ranks, side="right") - 1  # bin of each rank
    observed = np.stack([(which == b).sum(axis=0) for b in range(bins)])  # (bins, m)
    expected = n * np.diff(edges)[:, None] / (n_draws + 1)
    statistic = ((observed - expected) ** 2 / expected).sum(axis=0)
    p = stats.chi2.sf(statistic, bins - 1)
    return (statistic[0], p[0], bins) if flat else (statistic, p, bins)
