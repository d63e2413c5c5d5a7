"""Simulation-based calibration (SBC): does fitting recover the prior it simulated from?

Talts, Betancourt, Simpson, Vehtari & Gelman (2018, "Validating Bayesian inference
algorithms with simulation-based calibration"): draw parameters ``theta~`` from the prior,
simulate data ``y~`` from them, fit the model to ``y~`` and record the rank of each true
scalar parameter among L posterior draws,

    rank = #{l : theta^(l) < theta~}   in {0, ..., L}.

If the model, the simulator and the sampler are all correct, every rank is uniform on
``{0, ..., L}``. Ranks piled at one end mean a biased posterior; a U shape, an
overconfident one (too narrow); a hump, an underconfident one (too wide).

:func:`sbc` runs the loop with :meth:`hierbayes.Model.fit` for every simulation, so it
checks exactly what users run (the graph, the parameterisation, the sampler and the
post-processing that adds group effects to a marginal fit).

Uniformity is tested two ways, per parameter:

* the simultaneous ECDF test of Säilynoja, Bürkner & Vehtari (2022, "Graphical test for
  discrete uniformity and its applications in goodness-of-fit evaluation and multiple
  sample comparison"): at K evaluation points ``z_k = t_k / (L + 1)`` the count of ranks
  below ``t_k`` is Binomial(N, z_k) under uniformity; the statistic is the smallest two-sided
  binomial tail probability over the K points. Its null distribution is computed exactly
  (a recursion over the counts at consecutive points, no simulation), and so are the
  simultaneous bands of the ECDF-difference plot;
* Pearson's chi-square on the ranks in equal-probability bins (Talts et al.'s histogram).

The combined verdict (:meth:`SBCResult.uniformity`) is Bonferroni over the parameters of
the ECDF test: ``min(1, m * min_j p_j)`` for m scalar parameters.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from hierbayes.errors import (
    DataError,
    IdentifiabilityWarning,
    PriorWarning,
    SamplingWarning,
    SpecError,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierbayes.design import Design
    from hierbayes.model import Model

__all__ = [
    "sbc",
    "SBCResult",
    "SBCInterrupted",
    "Uniformity",
    "Band",
    "compute_ranks",
    "ecdf_thresholds",
    "ecdf_difference",
    "ecdf_pvalues",
    "ecdf_band",
    "chi_square",
    "example_result",
]

#: At most this many ECDF evaluation points (all L ranks when L is smaller).
MAX_ECDF_POINTS = 100

#: Fit arguments that :func:`sbc` sets itself.
_RESERVED_FIT_ARGS = ("draws", "tune", "chains", "random_seed", "progressbar", "strict")


# ---------------------------------------------------------------------------------------------
# Ranks and uniformity tests: NumPy and SciPy only.


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


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Uniformity:
    """Uniformity tests of an SBC run: per parameter, and one Bonferroni verdict.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per scalar parameter: ``ecdf_p`` (exact p-value of the simultaneous ECDF
        test), ``chi2``, ``chi2_p`` (Pearson's test in ``bins`` bins) and ``ecdf_p_adjusted``
        (Bonferroni, ``min(1, m * ecdf_p)``).
    p_value : float
        The combined verdict: ``min(1, m * min ecdf_p)`` over the m parameters.
    alpha : float
        Level of the verdict.
    passed : bool
        ``p_value >= alpha``: no evidence against uniform ranks.
    """

    table: pd.DataFrame
    p_value: float
    alpha: float
    n_simulations: int
    n_draws: int
    bins: int

    @property
    def passed(self) -> bool:
        return bool(self.p_value >= self.alpha)

    @property
    def worst(self) -> str:
        """The parameter with the smallest ECDF p-value."""
        return str(self.table["ecdf_p"].idxmin())

    def __repr__(self) -> str:
        verdict = "uniform" if self.passed else "NOT uniform"
        return (
            f"SBC uniformity ({self.n_simulations} simulations, ranks 0..{self.n_draws}): "
            f"{verdict} at alpha={self.alpha:g}; Bonferroni p = {self.p_value:.3g} over "
            f"{len(self.table)} parameters (worst: {self.worst}, "
            f"ECDF p = {self.table['ecdf_p'].min():.3g})"
        )


@dataclass(frozen=True, eq=False)
class SBCResult:
    """The ranks of an SBC run (see :func:`sbc`).

    Attributes
    ----------
    ranks : pandas.DataFrame
        One row per simulation (index ``simulation``), one column per scalar parameter
        (``Intercept``, ``sd_g[Intercept]``, ``sigma``, ``b_g[g01, Intercept]``, ...); values in
        ``0..n_draws``.
    n_draws : int
        L, the number of (thinned) posterior draws per simulation, and so the largest rank.
    truth : pandas.DataFrame
        The simulated true values, laid out like ``ranks``.
    diagnostics : pandas.DataFrame
        Per simulation: ``divergences``, ``min_ess_bulk`` (of the unthinned draws),
        ``seconds`` (wall time of the fit).
    settings : dict
        The arguments of the run (draws, tune, chains, thin, seed, models).
    n_requested : int
        Simulations asked for; more than ``len(ranks)`` only in the partial result of an
        interrupted run.
    """

    ranks: pd.DataFrame
    n_draws: int
    truth: pd.DataFrame
    diagnostics: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    n_requested: int = 0

    @property
    def n_simulations(self) -> int:
        return len(self.ranks)

    @property
    def complete(self) -> bool:
        return self.n_simulations >= self.n_requested

    @property
    def divergences(self) -> pd.Series:
        """Divergent transitions after tuning, per simulation."""
        return self.diagnostics["divergences"]

    def uniformity(
        self, alpha: float = 0.05, *, bins: int | None = None, n_points: int | None = None
    ) -> Uniformity:
        """Test every parameter's ranks for uniformity, with one Bonferroni verdict.

        Parameters
        ----------
        alpha : float
            Level of the combined verdict ``Uniformity.passed``.
        bins : int, optional
            Bins of the chi-square test (see :func:`chi_square`).
        n_points : int, optional
            ECDF evaluation points (see :func:`ecdf_thresholds`).

        Examples
        --------
        >>> result = example_result()
        >>> u = result.uniformity()
        >>> u.passed, list(u.table.columns)
        (True, ['ecdf_p', 'ecdf_p_adjusted', 'chi2', 'chi2_p'])
        """
        if not 0 < alpha < 1:
            raise SpecError(f"alpha must be in (0, 1), got {alpha!r}")
        if self.n_simulations == 0:
            raise SpecError("no completed simulations to test")
        ranks = self.ranks.to_numpy()
        m = ranks.shape[1]
        p = ecdf_pvalues(ranks, self.n_draws, n_points)
        statistic, chi_p, used_bins = chi_square(ranks, self.n_draws, bins)
        table = pd.DataFrame(
            {
                "ecdf_p": p,
                "ecdf_p_adjusted": np.minimum(1.0, m * p),
                "chi2": statistic,
                "chi2_p": chi_p,
            },
            index=pd.Index(self.ranks.columns, name="parameter"),
        )
        return Uniformity(
            table=table,
            p_value=float(min(1.0, m * p.min())),
            alpha=float(alpha),
            n_simulations=self.n_simulations,
            n_draws=self.n_draws,
            bins=used_bins,
        )

    def ecdf_difference(self, n_points: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
        """Evaluation points and the ECDF difference of each parameter's ranks."""
        z, d = ecdf_difference(self.ranks.to_numpy(), self.n_draws, n_points)
        return z, pd.DataFrame(d, columns=self.ranks.columns)

    def ecdf_band(self, prob: float = 0.95, n_points: int | None = None) -> Band:
        """The simultaneous band of the ECDF difference for this run's N and L."""
        return ecdf_band(self.n_simulations, self.n_draws, prob, n_points)

    def plot(
        self,
        params: Sequence[str] | None = None,
        *,
        prob: float = 0.95,
        ncols: int = 4,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        """ECDF-difference plots with simultaneous bands, one panel per parameter.

        See :func:`hierbayes.plots.plot_sbc`.

        Examples
        --------
        >>> fig = example_result().plot(["mu", "tau"])
        >>> [ax.get_title().split(" ")[0] for ax in fig.axes]
        ['mu', 'tau']
        """
        from hierbayes.plots import plot_sbc

        return plot_sbc(self, params=params, prob=prob, ncols=ncols, figsize=figsize)

    def __repr__(self) -> str:
        s = self.settings
        partial = "" if self.complete else f" (interrupted: {self.n_requested} requested)"
        div = int((self.divergences > 0).sum()) if len(self.diagnostics) else 0
        return (
            f"hierbayes.SBCResult: {self.n_simulations} simulations{partial}, "
            f"{self.ranks.shape[1]} parameters, ranks 0..{self.n_draws}"
            + (f" ({s['chains']} chain(s) x {s['draws']} draws, thin {s['thin']})" if s else "")
            + f"; {div} simulation(s) with divergences"
        )


class SBCInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`sbc`; ``.result`` holds the simulations that completed."""

    def __init__(self, result: SBCResult) -> None:
        super().__init__(
            f"SBC interrupted after {result.n_simulations} of {result.n_requested} "
            "simulations; the partial result is in the exception's .result"
        )
        self.result = result


def example_result(n_simulations: int = 100, seed: int = 0) -> SBCResult:
    """A fake, calibrated SBC result (uniform ranks; no sampling), for examples and tests.

    Examples
    --------
    >>> example_result().ranks.shape
    (100, 2)
    """
    rng = np.random.default_rng(seed)
    names = ["mu", "tau"]
    ranks = pd.DataFrame(rng.integers(0, 100, size=(n_simulations, 2)), columns=names)
    ranks.index.name = "simulation"
    truth = pd.DataFrame(rng.normal(size=(n_simulations, 2)), columns=names, index=ranks.index)
    diagnostics = pd.DataFrame(
        {"divergences": 0, "min_ess_bulk": np.nan, "seconds": 0.0}, index=ranks.index
    )
    return SBCResult(ranks, 99, truth, diagnostics, {}, n_simulations)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class _Scalar:
    """One scalar parameter: its column label, model variable and index within the variable."""

    label: str
    var: str
    index: tuple[int, ...]
    dims: tuple[str, ...]


def _scalar_parameters(design: Design) -> list[_Scalar]:
    """Population coefficients, group SDs, correlations, sigma, then every group coefficient."""
    out = [_Scalar(name, name, (), ()) for name in design.fixed_names]
    for f in design.factors:
        for t, term in enumerate(f.terms):
            out.append(_Scalar(f"sd_{f.name}[{term}]", f"sd_{f.name}", (t,), (f.term_dim,)))
        if f.correlated:
            for i, j in zip(*np.triu_indices(len(f.terms), k=1), strict=True):
                out.append(
                    _Scalar(
                        f"corr_{f.name}[{f.terms[i]}, {f.terms[j]}]",
                        f"corr_{f.name}",
                        (int(i), int(j)),
                        (f.term_dim, f"{f.term_dim}2"),
                    )
                )
    if design.estimates_sigma:
        out.append(_Scalar("sigma", "sigma", (), ()))
    for f in design.factors:
        for j, level in enumerate(f.levels):
            for t, term in enumerate(f.terms):
                out.append(
                    _Scalar(
                        f"b_{f.name}[{level}, {term}]", f"b_{f.name}", (j, t), (f.name, f.term_dim)
                    )
                )
    return out


def _values(dataset: Any, scalars: Sequence[_Scalar], where: str) -> dict[str, np.ndarray]:
    """Each variable's values (chain, draw, ...), checking that its dims are the expected ones."""
    out: dict[str, np.ndarray] = {}
    for s in scalars:
        if s.var in out:
            continue
        if s.var not in dataset:
            raise SpecError(f"{where} has no variable {s.var!r}, which SBC needs")
        var = dataset[s.var]
        if tuple(var.dims[2:]) != s.dims:
            raise SpecError(f"{where}: {s.var!r} has dims {var.dims[2:]}, expected {s.dims}")
        out[s.var] = np.asarray(var.values, dtype=float)
    return out


def _check_simulator(model: Model, simulator: Model) -> None:
    """The simulator must describe the same observations: formula, family, columns, rows."""
    a, b = model.design, simulator.design
    problems = []
    for name in ("formula", "family", "se", "trials"):
        if getattr(model.spec, name) != getattr(simulator.spec, name):
            problems.append(
                f"{name}: simulator {getattr(simulator.spec, name)!r}, "
                f"model {getattr(model.spec, name)!r}"
            )
    if not problems:
        same = (
            a.n_obs == b.n_obs
            and np.array_equal(a.X, b.X)
            and (a.se is None) == (b.se is None)
            and (a.se is None or np.array_equal(a.se, b.se))
            and (a.trials is None or np.array_equal(a.trials, b.trials))
            and len(a.factors) == len(b.factors)
            and all(
                np.array_equal(fa.codes, fb.codes)
                and list(fa.levels) == list(fb.levels)
                and np.array_equal(fa.Z, fb.Z)
                for fa, fb in zip(a.factors, b.factors, strict=False)
            )
        )
        if not same:
            problems.append("its data differ from the model's (rows, predictors or groups)")
    if problems:
        raise SpecError(
            "the simulator must be the same model on the same data, with other priors or "
            "parameterisation: " + "; ".join(problems)
        )


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _Context:
    """What every simulation shares (sent once to each worker process)."""

    spec: Any
    data: pd.DataFrame
    response: str
    scalars: tuple[_Scalar, ...]
    draws: int
    tune: int
    chains: int
    thin: int
    fit_kwargs: Mapping[str, Any]
    #: The model's own names in-process; worker processes get the safe set only.
    namespace: Any = "safe"


@contextmanager
def _quiet_inner_fits() -> Iterator[None]:
    """Mute what 100s of inner fits repeat: PyMC's per-fit log lines and sampler warnings.

    Divergences are still counted (``SBCResult.diagnostics``); warnings about the priors
    were already shown when the model was created.
    """
    loggers = [logging.getLogger(name) for name in ("pymc", "arviz")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (SamplingWarning, PriorWarning, IdentifiabilityWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _simulate(
    ctx: _Context, i: int, y: np.ndarray, truth: np.ndarray, seed: int
) -> tuple[int, np.ndarray, int, float, float]:
    """Fit simulation i: (i, ranks, divergences, min bulk ESS, seconds)."""
    from hierbayes.model import Model

    start = time.perf_counter()
    data = ctx.data.copy()
    data[ctx.response] = y
    try:
        model = Model.from_spec(ctx.spec, data, namespace=ctx.namespace)
    except DataError as err:
        raise DataError(f"SBC simulation {i}: the model refuses the simulated data: {err}") from err
    fit = model.fit(
        draws=ctx.draws,
        tune=ctx.tune,
        chains=ctx.chains,
        random_seed=seed,
        progressbar=False,
        **ctx.fit_kwargs,
    )
    post = fit.idata.posterior
    if post.sizes["draw"] != ctx.draws or post.sizes["chain"] != ctx.chains:
        raise KeyboardInterrupt  # the sampler stopped early: it was interrupted
    values = _values(post, ctx.scalars, f"the posterior of simulation {i}")
    draws = np.stack(
        [
            values[s.var][(slice(None), slice(None, None, ctx.thin), *s.index)].ravel()
            for s in ctx.scalars
        ]
    )
    rng = np.random.default_rng([seed, 2])  # ties only
    ranks = compute_ranks(truth, draws, rng)
    return (
        i,
        ranks,
        fit.diagnostics.divergences,
        fit.diagnostics.min_ess_bulk,
        time.perf_counter() - start,
    )


_WORKER: dict[str, _Context] = {}


def _worker_init(ctx: _Context) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    logging.getLogger("pymc").setLevel(logging.ERROR)
    logging.getLogger("arviz").setLevel(logging.ERROR)
    for category in (SamplingWarning, PriorWarning, IdentifiabilityWarning):
        warnings.simplefilter("ignore", category)
    # PyTensor says this once per process; the parent process has said it already.
    warnings.filterwarnings("ignore", "PyTensor could not link to a BLAS", UserWarning)
    _WORKER["ctx"] = ctx


def _worker_run(task: tuple[int, np.ndarray, np.ndarray, int]):
    return _simulate(_WORKER["ctx"], *task)


@contextmanager
def _catch_interrupt() -> Iterator[dict[str, bool]]:
    """Note a Ctrl-C (and raise KeyboardInterrupt as usual).

    PyMC catches a KeyboardInterrupt during sampling and returns the draws so far; the flag
    tells the loop that the user asked to stop, so one Ctrl-C stops the whole run.
    """
    state = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        state["hit"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """One line on stderr, rewritten after every simulation."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.start = total, enabled, time.perf_counter()
        self.done = self.divergent = 0

    def update(self, divergences: int) -> None:
        self.done += 1
        self.divergent += int(divergences > 0)
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        sys.stderr.write(
            f"\rSBC {self.done}/{self.total} simulations, {_clock(elapsed)} elapsed, "
            f"~{_clock(left)} left, {self.divergent} with divergences "
        )
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        if self.enabled:
            sys.stderr.write(f"\n{note}\n" if note else "\n")
            sys.stderr.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def sbc(
    model: Model,
    n_simulations: int,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 1,
    thin: int = 10,
    random_seed: int,
    progressbar: bool | None = None,
    simulator: Model | None = None,
    workers: int = 1,
    fit_kwargs: Mapping[str, Any] | None = None,
) -> SBCResult:
    """Simulation-based calibration of ``model`` (Talts et al. 2018).

    For each of ``n_simulations`` draws of the parameters and the response from the prior
    predictive of ``simulator`` (``model`` itself by default), fit ``model``'s specification
    to the simulated response with :meth:`hierbayes.Model.fit` and record the rank of each
    true scalar parameter among the thinned posterior draws. With a correct model, sampler
    and simulator the ranks are uniform: test them with :meth:`SBCResult.uniformity`, look
    at them with :meth:`SBCResult.plot`.

    The fitted model keeps the priors ``model`` resolved on its own data: the data-scaled
    defaults are frozen, not recomputed from each simulated response (that would make the
    prior depend on the data, and SBC fail).

    Parameters
    ----------
    model : hierbayes.Model
        The model to check; its data supply the design (predictors, groups, known SEs).
    n_simulations : int
        Number of simulated data sets. 100 detect gross errors; Talts et al. use 1000.
    draws, tune, chains : int
        Sampler settings of each fit.
    thin : int
        Keep every ``thin``-th draw of each chain, so that the kept draws are roughly
        independent: autocorrelated draws alone make the ranks non-uniform. The largest
        rank is ``L = chains * ceil(draws / thin)`` (``SBCResult.n_draws``); compare the
        ``min_ess_bulk`` column of ``SBCResult.diagnostics`` with L.
    random_seed : int
        Seeds the prior draws and every fit: a run is reproducible, whatever ``workers``.
    progressbar : bool, optional
        A progress line per simulation on stderr; by default on in a terminal or notebook,
        off under CI.
    simulator : hierbayes.Model, optional
        Simulate from this model instead: the same formula, family and data, with other
        priors (or another parameterisation). A simulator whose prior differs from the
        model's must fail the uniformity test; that is how to check the check.
    workers : int
        Fit this many simulations at once, each in its own process (``spawn``; in a script,
        call :func:`sbc` under ``if __name__ == "__main__":``). Each fit then runs its
        chains one after another. With 1 (the default) everything runs in this process.
    fit_kwargs : dict, optional
        More arguments of :meth:`hierbayes.Model.fit`, e.g. ``{"target_accept": 0.99}``.

    Returns
    -------
    SBCResult

    Raises
    ------
    SBCInterrupted
        On Ctrl-C, after stopping the running fit(s); a ``KeyboardInterrupt`` whose
        ``.result`` holds the completed simulations.

    Notes
    -----
    The sampler warnings of the inner fits are silenced and PyMC's log lines muted while the
    loop runs; ``SBCResult.diagnostics`` keeps each fit's divergences and bulk ESS. Each fit
    builds and compiles its model again, so that every simulation takes the same path as a
    user's fit. PyTensor reuses its compiled C code from ``~/.pytensor``, but rewriting and
    compiling the graph still takes about 0.5-1 s of the 1-3 s a simulation costs (8 groups
    of 5 rows, 1 chain of 300 + 300 iterations).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import hierbayes as hb
    >>> from hierbayes.sbc import sbc
    >>> df = pd.DataFrame({"y": np.arange(40.0), "g": np.repeat(list("abcdefgh"), 5)})
    >>> priors = {"Intercept": hb.priors.Normal(0, 2), "sd": hb.priors.HalfNormal(1),
    ...           "sigma": hb.priors.HalfNormal(1)}
    >>> model = hb.Model("y ~ 1 + (1 | g)", df, priors=priors)
    >>> result = sbc(model, 100, draws=300, tune=300, thin=6, random_seed=1)  # doctest: +SKIP
    >>> result.uniformity()  # doctest: +SKIP
    >>> fig = result.plot(["Intercept", "sd_g[Intercept]", "sigma"])  # doctest: +SKIP
    """
    from hierbayes.model import Model, _default_progressbar

    if not isinstance(model, Model):
        raise SpecError(f"model must be a hierbayes.Model, got {type(model).__name__}")
    if simulator is not None and not isinstance(simulator, Model):
        raise SpecError(f"simulator must be a hierbayes.Model, got {type(simulator).__name__}")
    n_simulations = _check_count("n_simulations", n_simulations)
    draws = _check_count("draws", draws)
    tune = _check_count("tune", tune)
    chains = _check_count("chains", chains)
    thin = _check_count("thin", thin)
    workers = _check_count("workers", workers)
    if thin > draws:
        raise SpecError(f"thin ({thin}) must not exceed draws ({draws})")
    if isinstance(random_seed, bool) or not isinstance(random_seed, int | np.integer):
        raise SpecError(f"random_seed must be an integer, got {random_seed!r}")
    fit_kwargs = dict(fit_kwargs or {})
    reserved = sorted(set(fit_kwargs) & set(_RESERVED_FIT_ARGS))
    if reserved:
        raise SpecError(f"fit_kwargs must not set {reserved}: they are sbc()'s own arguments")
    fit_kwargs.setdefault("log_likelihood", False)  # SBC needs no LOO
    if workers > 1:
        fit_kwargs.setdefault("cores", 1)
    simulator = model if simulator is None else simulator
    if simulator is not model:
        _check_simulator(model, simulator)

    seeds = np.random.SeedSequence(int(random_seed)).spawn(n_simulations + 1)
    prior_seed = int(seeds[0].generate_state(1)[0])
    fit_seeds = [int(s.generate_state(1)[0]) for s in seeds[1:]]

    scalars = tuple(_scalar_parameters(model.design))
    with _quiet_inner_fits():
        idata = simulator.prior_predictive(draws=n_simulations, random_seed=prior_seed)
    prior = _values(idata.prior, scalars, "the simulator's prior")
    truth = np.stack(
        [prior[s.var][(0, slice(None), *s.index)] for s in scalars], axis=1
    )  # (n_simulations, m)
    response = model.design.response
    ys = np.asarray(idata.prior_predictive[response].values)[0]  # (n_simulations, N)

    ctx = _Context(
        spec=dataclasses.replace(model.spec, priors=dict(model.priors)),
        data=model.data.copy(),
        response=response,
        scalars=scalars,
        draws=draws,
        tune=tune,
        chains=chains,
        thin=thin,
        fit_kwargs=fit_kwargs,
        namespace=model.namespace if workers == 1 else "safe",
    )
    n_draws = chains * math.ceil(draws / thin)
    ranks = np.zeros((n_simulations, len(scalars)), dtype=int)
    diag = np.full((n_simulations, 3), np.nan)
    done = np.zeros(n_simulations, dtype=bool)
    progress = _Progress(
        n_simulations, _default_progressbar() if progressbar is None else bool(progressbar)
    )

    def record(row: tuple[int, np.ndarray, int, float, float]) -> None:
        i, r, divergences, ess, seconds = row
        ranks[i], diag[i], done[i] = r, (divergences, ess, seconds), True
        progress.update(divergences)

    tasks = ((i, ys[i], truth[i], fit_seeds[i]) for i in range(n_simulations))
    interrupted = False
    start = time.perf_counter()
    with _catch_interrupt() as ctrl_c, _quiet_inner_fits():
        if workers == 1:
            for task in tasks:
                try:
                    row = _simulate(ctx, *task)
                except KeyboardInterrupt:
                    interrupted = True
                    break
                except Exception:
                    if ctrl_c["hit"]:  # a fit cut short by Ctrl-C failed afterwards
                        interrupted = True
                        break
                    raise
                if ctrl_c["hit"]:  # PyMC swallowed the Ctrl-C: drop the cut-short fit
                    interrupted = True
                    break
                record(row)
        else:
            interrupted = _run_pool(ctx, tasks, workers, record)
    elapsed = time.perf_counter() - start

    labels = [s.label for s in scalars]
    index = pd.Index(np.flatnonzero(done), name="simulation")
    result = SBCResult(
        ranks=pd.DataFrame(ranks[done], index=index, columns=labels),
        n_draws=n_draws,
        truth=pd.DataFrame(truth[done], index=index, columns=labels),
        diagnostics=pd.DataFrame(
            {
                "divergences": diag[done, 0].astype(int),
                "min_ess_bulk": diag[done, 1],
                "seconds": diag[done, 2],
            },
            index=index,
        ),
        settings={
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "thin": thin,
            "random_seed": int(random_seed),
            "workers": workers,
            "fit_kwargs": fit_kwargs,
            "model": str(model.spec),
            "simulator": str(simulator.spec),
            "seconds": elapsed,
        },
        n_requested=n_simulations,
    )
    if interrupted:
        progress.close(f"SBC interrupted after {result.n_simulations} of {n_simulations}")
        raise SBCInterrupted(result)
    progress.close()
    return result


def _run_pool(ctx: _Context, tasks, workers: int, record) -> bool:
    """Run the simulations in ``workers`` spawned processes; True when interrupted."""
    pool = multiprocessing.get_context("spawn").Pool(
        workers, initializer=_worker_init, initargs=(ctx,)
    )
    try:
        for row in pool.imap_unordered(_worker_run, tasks):
            record(row)
    except KeyboardInterrupt:
        pool.terminate()
        return True
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()
    return False
