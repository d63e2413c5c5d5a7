"""The kernels of :mod:`hierbayes.core.convergence`: sorting, rank normal scores, split
R-hat, the folded R-hat, type-7 quantiles and Geyer's truncated ESS, on blocks of
parameters (rows) at once. NumPy and SciPy only; see that module for the estimators.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from scipy.fftpack import next_fast_len

BLOM = 3 / 8  # fractional offset of the rank normal scores (Blom, 1958)
LAG_BLOCKS = (5, 13)  # lags summed directly, in blocks, before the FFT takes over (odd)
SIGN = np.uint64(1 << 63)
SORT_RUN = 256  # the longest run sorted before the runs are merged

Float = NDArray[np.float64]


class Workspace:
    """Arrays for chunks of up to ``n_par`` parameters, reused from one chunk to the next.

    Fresh arrays for every chunk would cost more than the arithmetic on them: the memory
    returned to the system after each chunk is faulted in again for the next.
    """

    def __init__(self, n_par: int, n_chain: int, n_draw: int) -> None:
        half = n_draw // 2
        size = 2 * n_chain * half
        self.block = np.empty((n_par, n_chain, n_draw))
        self.split = np.empty((n_par, 2 * n_chain, half))
        self.full = np.empty((n_par, n_chain * n_draw)) if n_draw % 2 else None
        self.ordered, self.scores, self.z, self.dev, self.folded = (
            np.empty((n_par, size)) for _ in range(5)
        )
        self.keys, self.fold_keys = (np.empty((n_par, size), np.uint64) for _ in range(2))
        self.index = np.empty((n_par, size), np.int64)
        self.mask = np.empty((n_par, size), bool)


def sort_rows(
    values: Float,
    runs: int,
    nonnegative: bool,
    keys: NDArray[np.uint64],
    ordered: Float,
    mask: NDArray[np.bool_],
) -> NDArray[np.int64]:
    """Sort each row: the flat indices into ``values`` of the sorted rows, sorted to ``ordered``.

    Sorts 64-bit keys that carry the order of the value in their high bits and the position
    in the row in their low bits (cheaper than ``argsort``): first ``runs`` equal parts of each
    row (see :func:`runs`), then the whole row, merging the sorted parts. ``runs=0`` says
    that each row already falls, then rises (a folded sorted row): one stable sort merges the
    two runs. Values closer than ``2**bits`` units in the last place share their high bits and
    may come out of order; a stable sort of the few rows where that happens puts them in order.
    ``nonnegative`` says that no value is negative (nor -0.0). ``keys`` becomes the returned
    indices; ``mask`` is scratch space.
    """
    n_row, size = values.shape
    bits = max(size - 1, 1).bit_length()
    low = np.uint64((1 << bits) - 1)
    if nonnegative:  # the bits of a float64 >= 0 order like the float
        np.bitwise_and(values.view(np.uint64), ~low, out=keys)
    else:  # flip every bit of a negative value, the sign bit of a positive one
        np.right_shift(values.view(np.int64), 63, out=keys.view(np.int64))
        keys |= SIGN
        keys ^= values.view(np.uint64)
        keys &= ~low
    keys |= np.arange(size, dtype=np.uint64)
    if runs == 1:
        keys.sort(axis=1)
    else:
        if runs > 1:
            keys.reshape(n_row, runs, size // runs).sort(axis=2)
        keys.sort(axis=1, kind="stable")  # merges sorted runs
    keys &= low
    pos = keys.view(np.int64)
    pos += (np.arange(n_row, dtype=np.int64) * size)[:, None]
    np.take(values, pos, out=ordered, mode="clip")  # "clip": no checks, the indices are valid
    descents = np.less(ordered[:, 1:], ordered[:, :-1], out=mask[:, 1:])
    unsorted = np.flatnonzero(descents.any(axis=1))
    if unsorted.size:  # nearly sorted: a stable sort swaps the few values out of order
        order = np.argsort(ordered[unsorted], axis=1, kind="stable")
        pos[unsorted] = np.take_along_axis(pos[unsorted], order, axis=1)
        ordered[unsorted] = np.take_along_axis(ordered[unsorted], order, axis=1)
    return pos


@lru_cache(maxsize=16)
def runs(size: int) -> int:
    """Into how many equal runs to cut rows of ``size`` values before sorting them.

    NumPy sorts up to 256 64-bit values at a time with vectorised sorting networks, much
    faster than longer runs; merging more runs costs more, so runs of fewer than 64 values are
    not worth it.
    """
    runs = next(r for r in range(1, size + 1) if size % r == 0 and size // r <= SORT_RUN)
    return runs if size // runs >= SORT_RUN // 4 else 1  # 1: one sort of the whole row


def scatter(values: Float, pos: NDArray[np.int64], out: Float) -> Float:
    """``out.flat[pos] = values``."""
    out.reshape(-1)[pos.reshape(-1)] = values.reshape(-1)
    return out


@lru_cache(maxsize=16)
def normal_scores(size: int) -> Float:
    """Rank normal scores of ``size`` draws indexed by twice the rank: ``table[2 r]``.

    Average ranks of ties are multiples of 1/2, so every score is in this table, computed with
    ArviZ's arithmetic (``scipy.stats.rankdata`` ranks, then ``scipy.stats.norm.ppf``).
    """
    rank = np.arange(2 * size + 1) * 0.5
    with np.errstate(divide="ignore", invalid="ignore"):  # entries 0 and 1 are never used
        table = stats.norm.ppf((rank - BLOM) / (size - 2 * BLOM + 1))
    table.setflags(write=False)
    return table


def scores_of_sorted(ordered: Float, table: Float, out: Float, mask: NDArray[np.bool_]) -> Float:
    """Rank normal scores of rows sorted ascending, into ``out``; ties get their average rank.

    ``mask`` is scratch space.
    """
    n_row, size = ordered.shape
    out[...] = table[2::2]  # without ties the j-th smallest value has rank j + 1
    equal = np.equal(ordered[:, 1:], ordered[:, :-1], out=mask[:, 1:])
    tied = np.flatnonzero(equal)  # pairs (j, j + 1) of equal values, as row * (size - 1) + j
    if tied.size:
        row, col = np.divmod(tied, size - 1)
        first = row * size + col  # flat index of the first value of each tied pair
        # a run of overlapping tied pairs is one group of ties, from its first pair's first
        # value to its last pair's second value
        opens = np.ones(first.size, bool)
        opens[1:] = first[1:] != first[:-1] + 1
        group = np.cumsum(opens) - 1
        closes = np.append(np.flatnonzero(opens)[1:] - 1, first.size - 1)
        lo = col[opens]
        hi = col[closes] + 1
        average = table[lo + hi + 2][group]  # ranks lo+1..hi+1, twice their average
        flat = out.reshape(-1)
        flat[first] = average
        flat[first + 1] = average
    return out


def chain_moments(ary: NDArray, dev: Float) -> tuple[Float, Float]:
    """Chain means and sums of squared deviations of (par, chain, draw) values.

    The deviations from the chain means go to ``dev``.
    """
    mean = ary.mean(axis=2)
    np.subtract(ary, mean[:, :, None], out=dev)
    return mean, dot(dev, dev)


def dot(a: Float, b: Float) -> Float:
    """``sum(a * b)`` over the last axis of (par, chain, n) arrays: shape (par, chain)."""
    return np.matmul(a[:, :, None, :], b[:, :, :, None])[:, :, 0, 0]


def split_rhat(mean: Float, sumsq: Float, n: int) -> Float:
    """Potential scale reduction ``sqrt((B / W + n - 1) / n)`` from chain moments."""
    within = (sumsq / (n - 1)).mean(axis=1)
    between = n * mean.var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant parameter: 0/0
        return np.sqrt((between / within + n - 1) / n)


def folded_rhat(
    ordered: Float,
    pos: NDArray[np.int64],
    table: Float,
    shape: tuple[int, int, int],
    work: Workspace,
    fold_dtype: np.dtype | None,
) -> Float:
    """Split R-hat of the rank normal scores of the split draws folded about their median.

    ``ordered`` holds the sorted split draws and ``pos`` their flat indices in the split
    draws, of shape ``shape`` (par, chain, draw). Draws of a precision lower than float64
    (``fold_dtype``) are folded in that precision, as ``np.median`` and the subtraction
    round them in ArviZ: the rounding decides ties and the order of nearly equal distances.
    """
    n_par, size = ordered.shape
    folded = work.folded[:n_par]
    middle = ordered[:, size // 2 - 1 : size // 2 + 1]  # size is even
    if fold_dtype is None:
        median = (middle[:, 0] + middle[:, 1]) / 2
        with np.errstate(invalid="ignore"):  # inf - inf when half the draws are infinite
            np.subtract(ordered, median[:, None], out=folded)
    else:
        median = middle.astype(fold_dtype).mean(axis=1)
        with np.errstate(invalid="ignore"):
            folded[...] = ordered.astype(fold_dtype) - median[:, None]
    np.abs(folded, out=folded)
    undefined = ~np.isfinite(median)  # half the draws infinite: ArviZ's folded ranks are NaN
    folded[undefined] = 0.0
    # |sorted - median| falls, then rises: two runs, which one stable sort merges
    fold_ordered = work.z[:n_par]
    mask = work.mask[:n_par]
    fold_pos = sort_rows(folded, 0, True, work.fold_keys[:n_par], fold_ordered, mask)
    scores = scores_of_sorted(fold_ordered, table, work.scores[:n_par], mask)
    origin = np.take(pos, fold_pos, out=work.index[:n_par], mode="clip")
    z = scatter(scores, origin, folded).reshape(shape)
    rhat = split_rhat(*chain_moments(z, work.dev[:n_par].reshape(shape)), shape[2])
    rhat[undefined] = np.nan
    return rhat


def quantile_type7(ordered: Float | None, prob: float, full: Float) -> Float:
    """The quantile of each row of ``full`` as ``scipy.stats.mstats.mquantiles`` computes it.

    ``alphap = betap = 1`` (R's type 7), ArviZ's quantile for the tail ESS, with the same
    operations so that the same draws fall below it. ``ordered``, if given, holds the sorted
    rows (of the same values); otherwise ``full`` is partitioned in place. Returned with two
    trailing axes of length 1.
    """
    n = full.shape[1]
    p = np.float64(prob)
    aleph = n * p + (1 + p * (1.0 - 1 - 1))
    k = int(np.floor(np.clip(aleph, 1, n - 1)))
    gamma = np.clip(aleph - k, 0, 1)
    if ordered is None:
        full.partition((k - 1, k), axis=1)
        ordered = full
    with np.errstate(invalid="ignore"):  # 0 * inf with infinite draws, as mquantiles
        q = (1.0 - gamma) * ordered[:, k - 1] + gamma * ordered[:, k]
    return q[:, None, None]


def ess(mean: Float, dev: Float, sumsq: Float, constant: NDArray[np.bool_]) -> Float:
    """Effective sample size from chain moments of (par, chain, draw) values, as ArviZ.

    ``constant`` marks the parameters whose values are all equal: their ESS is the number of
    values (ArviZ's shortcut).
    """
    n_par, n_chain, n = dev.shape
    size = n_chain * n
    scale = float(size)  # lag-t sum over chains / scale = mean over chains of autocovariance t
    mean_var = sumsq.sum(axis=1) / scale * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n + mean.var(axis=1, ddof=1)
    var_plus[constant] = 1.0  # the result is replaced below
    # Geyer's pairs rho_2k + rho_2k+1 are examined for k <= k_max (ArviZ: t < n - 3)
    k_max = max((n - 3) // 2, 0)
    max_lag = 2 * k_max + 1
    tau = np.full(n_par, np.nan)
    todo = np.arange(n_par)
    for top in (*(lag for lag in LAG_BLOCKS if lag < max_lag), max_lag):
        part = dev if todo.size == n_par else dev[todo]
        if top > LAG_BLOCKS[-1]:
            sums = lag_sums_fft(part)[:, : top + 1]
        else:
            sums = np.stack([dot(part[:, :, t:], part[:, :, : n - t]) for t in range(top + 1)])
            sums = sums.sum(axis=2).T
        rho = 1.0 - (mean_var[todo, None] - sums / scale) / var_plus[todo, None]
        rho[:, 0] = 1.0
        done, tau_part = geyer_tau(rho, k_max)
        tau[todo[done]] = tau_part[done]
        todo = todo[~done]
        if not todo.size:
            break
    ess = size / np.maximum(tau, 1 / np.log10(size))
    ess[constant] = size
    return ess


def lag_sums_fft(dev: Float) -> Float:
    """Sums over chains of ``sum_i dev[i] dev[i + t]`` for every lag t, by zero-padded FFT."""
    n = dev.shape[2]
    m = next_fast_len(2 * n)
    spectrum = np.fft.rfft(dev, n=m, axis=2)
    power = (spectrum.real**2 + spectrum.imag**2).sum(axis=1)
    return np.fft.irfft(power, n=m, axis=1)[:, :n]


def geyer_tau(rho: Float, k_max: int) -> tuple[NDArray[np.bool_], Float]:
    """Integrated autocorrelation time from autocorrelations at lags 0..L (L odd), as ArviZ.

    ArviZ scans the pairs ``P_k = rho_2k + rho_2k+1``: pair k >= 1 is examined while
    ``k <= k_max`` and every earlier pair is positive; the last pair examined, ``K``, ends the
    sum. With the monotone sequence ``min(P_0..P_k)`` for ``k < K``,
    ``tau = -1 + 2 sum_{k<K} min(P_0..P_k) + R``, where ``R = rho_2K`` if ``P_K >= 0`` and
    ``max(rho_2K, 0)`` otherwise (``R = 1`` when ``K = 0``).

    Returns whether the lags given decide K, and tau (NaN where they do not).
    """
    n_pair = rho.shape[1] // 2
    pairs = rho[:, 0 : 2 * n_pair : 2] + rho[:, 1 : 2 * n_pair : 2]
    stop = ~(pairs > 0)
    if k_max < n_pair:
        stop[:, k_max] = True
    done = stop.any(axis=1)
    last = np.argmax(stop, axis=1)
    monotone = np.minimum.accumulate(np.where(pairs > 0, pairs, 0.0), axis=1)
    head = np.where(np.arange(n_pair) < last[:, None], monotone, 0.0).sum(axis=1)
    rows = np.arange(last.size)
    even = rho[rows, 2 * last]
    end = np.where(pairs[rows, last] >= 0, even, np.maximum(even, 0.0))
    end[last == 0] = 1.0
    return done, np.where(done, -1.0 + 2.0 * head + end, np.nan)
