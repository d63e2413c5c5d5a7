"""Rank-normalised split R-hat and bulk and tail effective sample sizes on NumPy arrays.

The numerical core of :mod:`hierbayes.diagnostics`. Every function takes draws of shape
``(chain, draw, *shape)`` and returns one value per parameter, of shape ``shape``. All
parameters are computed at once, vectorised, in chunks of parameters so that the memory stays
bounded however many parameters there are; the chunks run on a few threads.

The estimators are those of Vehtari et al. (2021, "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC") with the conventions of
ArviZ 0.23 (``arviz.rhat``, and ``arviz.ess`` with ``method="bulk"`` and ``method="tail"``),
which they reproduce up to rounding:

* Each chain is split into two halves of ``draw // 2`` draws (the middle draw of an odd count
  is dropped), and the halves are treated as chains: the first halves of all chains, then the
  second halves.
* Rank normalisation replaces each draw by ``Phi^-1((r - 3/8) / (S + 1/4))``, where ``r`` is
  its rank among all ``S`` split draws; tied draws share their average rank.
* R-hat is the larger of the split R-hats of the rank-normalised draws (bulk) and of the
  rank-normalised draws folded about their median (tails).
* The effective sample size sums the autocorrelations, averaged over chains, up to Geyer's
  initial positive sequence, made monotone (Geyer's initial monotone sequence). The tail ESS
  is the smaller of the ESS of the indicators ``draw <= q`` of the 5% and the 95% quantile of
  all draws (R's type 7 quantile, in the arithmetic of ``scipy.stats.mstats.mquantiles``).

Draws may be float64, float32 or float16, integers or booleans. They are computed on as
float64, except that float32 and float16 draws are folded about their median in their own
precision, as ArviZ folds them.

As in ArviZ, a parameter with a NaN draw, or fewer than 4 draws, gets NaN for all three;
R-hat is NaN with a single chain and for a constant parameter (0/0), whose ESS is the number of
split draws. One difference: when every split chain is constant but the chains differ, the
within-chain variance is rounding error, and R-hat a huge number (about 1e16 here, 1e7 in
ArviZ with Numba's variance); either flags the parameter.

Autocovariances: the truncation of the ESS sum comes after a few lags when the chains mix
well, so the first lags are summed directly, and only the parameters that need more lags get
them all at once from a zero-padded FFT along the draw axis, as ArviZ computes them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.fftpack import next_fast_len

__all__ = ["Convergence", "convergence", "rhat", "ess_bulk", "ess_tail", "bfmi", "TAIL_PROB"]

TAIL_PROB = (0.05, 0.95)
"""The quantiles whose indicators define the tail ESS."""

_MIN_DRAWS = 4  # fewer draws per chain: every statistic is NaN
_BLOM = 3 / 8  # fractional offset of the rank normal scores (Blom, 1958)
_CHUNK_DRAWS = 1 << 18  # draws per chunk of parameters: 2 MB per float64 work array
_LAG_BLOCKS = (5, 13)  # lags summed directly, in blocks, before the FFT takes over (odd)
_MAX_WORKERS = 4
_SORT_RUN = 256  # the longest run sorted before the runs are merged
_GATHER_DRAWS = 256  # draws transposed at a time when copying a chunk
_SIGN = np.uint64(1 << 63)

Float = NDArray[np.float64]


class Convergence(NamedTuple):
    """R-hat, bulk ESS and tail ESS of every parameter, as returned by :func:`convergence`.

    Attributes
    ----------
    rhat, ess_bulk, ess_tail : numpy.ndarray
        Float64 arrays of the parameter shape (the draws' shape without chain and draw).
    """

    rhat: Float
    ess_bulk: Float
    ess_tail: Float


def convergence(
    draws: ArrayLike, *, chunk_size: int | None = None, workers: int | None = None
) -> Convergence:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of every parameter.

    Parameters
    ----------
    draws : array_like
        Posterior draws of shape ``(chain, draw, *shape)``, real-valued.
    chunk_size : int, optional
        Parameters processed together. By default as many as make about 250,000 draws, so
        that each thread works in about 25 MB of arrays, reused from chunk to chunk.
    workers : int, optional
        Threads that process chunks; by default the number of CPUs, at most 4.

    Returns
    -------
    Convergence
        ``rhat``, ``ess_bulk`` and ``ess_tail``, each a float64 array of shape ``shape``
        (0-d for a scalar parameter).

    See Also
    --------
    rhat, ess_bulk, ess_tail : One statistic alone, for less work.

    Notes
    -----
    Each worker thread copies one chunk of parameters at a time into about ten arrays of
    ``chunk_size * chain * draw`` numbers, reused from chunk to chunk. A C-contiguous
    ``draws`` is not copied as a whole (another layout is copied once, by ``reshape``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> draws = rng.normal(size=(4, 1000, 3))  # 4 chains, 1000 draws, 3 parameters
    >>> c = convergence(draws)
    >>> c.rhat.shape, bool(np.all(c.rhat < 1.01)), bool(np.all(c.ess_bulk > 3000))
    ((3,), True, True)
    """
    return _compute(draws, (True, True, True), chunk_size, workers)


def rhat(draws: ArrayLike, *, chunk_size: int | None = None, workers: int | None = None) -> Float:
    """Rank-normalised split R-hat of every parameter (``arviz.rhat``, method ``"rank"``).

    The larger of the split R-hats of the rank-normalised draws and of the rank-normalised
    draws folded about their median.

    Parameters
    ----------
    draws : array_like
        Posterior draws of shape ``(chain, draw, *shape)``; a finite value needs at least 2
        chains and 4 draws.
    chunk_size, workers : int, optional
        As for :func:`convergence`.

    Returns
    -------
    numpy.ndarray
        R-hat, of shape ``shape``; NaN for a constant parameter.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> draws = rng.normal(size=(4, 500, 2))
    >>> draws[0, :, 1] += 3.0  # one chain elsewhere
    >>> r = rhat(draws)
    >>> bool(r[0] < 1.01), bool(r[1] > 1.3)
    (True, True)
    """
    return _compute(draws, (True, False, False), chunk_size, workers).rhat


def ess_bulk(
    draws: ArrayLike, *, chunk_size: int | None = None, workers: int | None = None
) -> Float:
    """Bulk effective sample size of every parameter (``arviz.ess``, method ``"bulk"``).

    The ESS of the rank-normalised split chains.

    Parameters
    ----------
    draws : array_like
        Posterior draws of shape ``(chain, draw, *shape)``; a finite value needs at least 4
        draws.
    chunk_size, workers : int, optional
        As for :func:`convergence`.

    Returns
    -------
    numpy.ndarray
        Bulk ESS, of shape ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> ar = np.zeros((2, 1000))  # two AR(1) chains with autocorrelation 0.9
    >>> for t in range(1, 1000):
    ...     ar[:, t] = 0.9 * ar[:, t - 1] + rng.normal(size=2)
    >>> bool(ess_bulk(ar) < 300)
    True
    """
    return _compute(draws, (False, True, False), chunk_size, workers).ess_bulk


def ess_tail(
    draws: ArrayLike, *, chunk_size: int | None = None, workers: int | None = None
) -> Float:
    """Tail effective sample size of every parameter (``arviz.ess``, method ``"tail"``).

    The smaller of the ESS of the indicators ``draw <= q`` for the 5% and the 95% quantile
    ``q`` of all draws.

    Parameters
    ----------
    draws : array_like
        Posterior draws of shape ``(chain, draw, *shape)``; a finite value needs at least 4
        draws.
    chunk_size, workers : int, optional
        As for :func:`convergence`.

    Returns
    -------
    numpy.ndarray
        Tail ESS, of shape ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> e = ess_tail(rng.normal(size=(4, 1000, 5)))
    >>> e.shape, bool(np.all(e > 2000))
    ((5,), True)
    """
    return _compute(draws, (False, False, True), chunk_size, workers).ess_tail


def bfmi(energy: ArrayLike) -> Float:
    """Energy Bayesian fraction of missing information (E-BFMI) of each chain (``arviz.bfmi``).

    The mean squared change of the energy from one draw to the next over the variance of the
    energy (Betancourt 2016): below 0.3, the momentum resampling explores the energy
    distribution poorly (heavy tails, funnels).

    Parameters
    ----------
    energy : array_like
        The sampler's energy, of shape ``(chain, draw)``.

    Returns
    -------
    numpy.ndarray
        One value per chain.

    Examples
    --------
    >>> import numpy as np
    >>> independent = np.random.default_rng(0).normal(size=(2, 4000))
    >>> np.round(bfmi(independent), 1)  # independent draws: E(diff^2) = 2 var
    array([2., 2.])
    """
    energy = np.atleast_2d(np.asarray(energy, dtype=np.float64))
    return np.square(np.diff(energy, axis=1)).mean(axis=1) / np.var(energy, axis=1, ddof=1)


def _compute(
    draws: ArrayLike,
    want: tuple[bool, bool, bool],
    chunk_size: int | None,
    workers: int | None,
) -> Convergence:
    """Validate, view the parameters as one axis, and run the chunks on the workers."""
    ary = np.asarray(draws)
    if ary.ndim < 2:
        raise ValueError(f"draws must have shape (chain, draw, *shape), got shape {ary.shape}")
    if ary.dtype != np.bool_ and (
        not np.issubdtype(ary.dtype, np.number) or np.issubdtype(ary.dtype, np.complexfloating)
    ):
        raise TypeError(f"draws must be real numbers, got dtype {ary.dtype}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    n_chain, n_draw, *shape = ary.shape
    n_par = int(np.prod(shape, dtype=np.int64))
    out = np.full((3, n_par), np.nan)
    if n_chain and n_draw >= _MIN_DRAWS and n_par:
        flat = ary.reshape(n_chain, n_draw, n_par)  # a view if the array is contiguous
        if chunk_size is None:
            chunk_size = max(1, _CHUNK_DRAWS // (n_chain * n_draw))
        chunk_size = min(chunk_size, n_par)
        starts = range(0, n_par, chunk_size)
        if workers is None:
            workers = min(_MAX_WORKERS, os.cpu_count() or 1)
        workers = min(workers, len(starts))
        # draws are computed on as float64, but folded about the median with the arithmetic
        # of their own precision (np.median's), as ArviZ folds them
        low_precision = ary.dtype.kind == "f" and ary.dtype.itemsize < 8
        fold_dtype = ary.dtype if low_precision else None

        def run(first: int) -> None:
            """Every ``workers``-th chunk from the ``first``, in one workspace."""
            work = _Workspace(chunk_size, n_chain, n_draw)
            for start in starts[first::workers]:
                stop = min(start + chunk_size, n_par)
                block = _gather(flat, start, stop, work.block)
                stats = _chunk(block, want, work, fold_dtype)
                for row, values in zip(out, stats, strict=True):
                    if values is not None:
                        row[start:stop] = values

        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(run, range(workers)):
                    pass
        else:
            run(0)
    return Convergence(*(row.reshape(shape) for row in out))


class _Workspace:
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


def _gather(flat: NDArray, start: int, stop: int, block: Float) -> Float:
    """Parameters start..stop of (chain, draw, par) draws as float64 (par, chain, draw).

    Copied into ``block`` in blocks of draws, so that the transposition stays in the cache.
    """
    n_chain, n_draw, _ = flat.shape
    block = block[: stop - start]
    for chain in range(n_chain):
        for lo in range(0, n_draw, _GATHER_DRAWS):
            hi = min(lo + _GATHER_DRAWS, n_draw)
            block[:, chain, lo:hi] = flat[chain, lo:hi, start:stop].T
    return block


def _chunk(
    block: Float,
    want: tuple[bool, bool, bool],
    work: _Workspace,
    fold_dtype: np.dtype | None = None,
) -> tuple[Float | None, ...]:
    """The wanted statistics of a chunk of parameters, ``block`` of shape (par, chain, draw).

    ``fold_dtype``: the precision of the draws if lower than float64 (see
    :func:`_folded_rhat`).
    """
    want_rhat, want_bulk, want_tail = want
    n_par, n_chain, n_draw = block.shape
    with_nan = np.isnan(block).any(axis=(1, 2))
    if with_nan.any():
        block[with_nan] = 0.0  # computed on harmless values, reported as NaN below
    half = n_draw // 2
    n_split = 2 * n_chain
    size = n_split * half
    # split chains: the first halves of all chains, then the second halves
    split = work.split[:n_par]
    split[:, :n_chain] = block[:, :, :half]
    split[:, n_chain:] = block[:, :, n_draw - half :]
    flat = split.reshape(n_par, size)
    ordered = work.ordered[:n_par]
    scores, z, dev = work.scores[:n_par], work.z[:n_par], work.dev[:n_par]
    mask = work.mask[:n_par]

    rhat = bulk = tail = None
    if want_rhat and n_chain < 2:
        rhat = np.full(n_par, np.nan)  # R-hat needs two chains
        want_rhat = False
    if want_rhat or want_bulk:
        pos = _sort_rows(flat, _runs(size), False, work.keys[:n_par], ordered, mask)
        table = _normal_scores(size)
        _scores_of_sorted(ordered, table, scores, mask)
        _scatter(scores, pos, z)
        mean, sumsq = _chain_moments(z.reshape(split.shape), dev.reshape(split.shape))
        if want_bulk:
            constant = ordered[:, 0] == ordered[:, -1]
            bulk = _ess(mean, dev.reshape(split.shape), sumsq, constant)
        if want_rhat:
            rhat_bulk = _split_rhat(mean, sumsq, half)
            rhat = _folded_rhat(ordered, pos, table, split.shape, work, fold_dtype)
            rhat = np.where(rhat > rhat_bulk, rhat, rhat_bulk)  # max() as ArviZ, NaN-aware
    if want_tail:
        full = flat  # the quantiles are of all draws: those of the split chains if even
        if n_draw % 2 or not (want_rhat or want_bulk):
            ordered = None  # not sorted: partition a copy of all draws
            full = work.full[:n_par] if n_draw % 2 else work.ordered[:n_par]
            full.reshape(block.shape)[...] = block
        below = mask.reshape(split.shape)
        for prob in TAIL_PROB:
            np.less_equal(split, _quantile_type7(ordered, prob, full), out=below)
            count = below.sum(axis=(1, 2))
            mean, sumsq = _chain_moments(below, dev.reshape(split.shape))
            constant = (count == 0) | (count == size)
            ess_q = _ess(mean, dev.reshape(split.shape), sumsq, constant)
            tail = ess_q if tail is None else np.where(ess_q < tail, ess_q, tail)  # min()
    result = []
    for values in (rhat, bulk, tail):
        if values is not None:
            values[with_nan] = np.nan
        result.append(values)
    return tuple(result)


def _sort_rows(
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
    row (see :func:`_runs`), then the whole row, merging the sorted parts. ``runs=0`` says
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
        keys |= _SIGN
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
def _runs(size: int) -> int:
    """Into how many equal runs to cut rows of ``size`` values before sorting them.

    NumPy sorts up to 256 64-bit values at a time with vectorised sorting networks, much
    faster than longer runs; merging more runs costs more, so runs of fewer than 64 values are
    not worth it.
    """
    runs = next(r for r in range(1, size + 1) if size % r == 0 and size // r <= _SORT_RUN)
    return runs if size // runs >= _SORT_RUN // 4 else 1  # 1: one sort of the whole row


def _scatter(values: Float, pos: NDArray[np.int64], out: Float) -> Float:
    """``out.flat[pos] = values``."""
    out.reshape(-1)[pos.reshape(-1)] = values.reshape(-1)
    return out


@lru_cache(maxsize=16)
def _normal_scores(size: int) -> Float:
    """Rank normal scores of ``size`` draws indexed by twice the rank: ``table[2 r]``.

    Average ranks of ties are multiples of 1/2, so every score is in this table, computed with
    ArviZ's arithmetic (``scipy.stats.rankdata`` ranks, then ``scipy.stats.norm.ppf``).
    """
    rank = np.arange(2 * size + 1) * 0.5
    with np.errstate(divide="ignore", invalid="ignore"):  # entries 0 and 1 are never used
        table = stats.norm.ppf((rank - _BLOM) / (size - 2 * _BLOM + 1))
    table.setflags(write=False)
    return table


def _scores_of_sorted(ordered: Float, table: Float, out: Float, mask: NDArray[np.bool_]) -> Float:
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


def _chain_moments(ary: NDArray, dev: Float) -> tuple[Float, Float]:
    """Chain means and sums of squared deviations of (par, chain, draw) values.

    The deviations from the chain means go to ``dev``.
    """
    mean = ary.mean(axis=2)
    np.subtract(ary, mean[:, :, None], out=dev)
    return mean, _dot(dev, dev)


def _dot(a: Float, b: Float) -> Float:
    """``sum(a * b)`` over the last axis of (par, chain, n) arrays: shape (par, chain)."""
    return np.matmul(a[:, :, None, :], b[:, :, :, None])[:, :, 0, 0]


def _split_rhat(mean: Float, sumsq: Float, n: int) -> Float:
    """Potential scale reduction ``sqrt((B / W + n - 1) / n)`` from chain moments."""
    within = (sumsq / (n - 1)).mean(axis=1)
    between = n * mean.var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant parameter: 0/0
        return np.sqrt((between / within + n - 1) / n)


def _folded_rhat(
    ordered: Float,
    pos: NDArray[np.int64],
    table: Float,
    shape: tuple[int, int, int],
    work: _Workspace,
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
    fold_pos = _sort_rows(folded, 0, True, work.fold_keys[:n_par], fold_ordered, mask)
    scores = _scores_of_sorted(fold_ordered, table, work.scores[:n_par], mask)
    origin = np.take(pos, fold_pos, out=work.index[:n_par], mode="clip")
    z = _scatter(scores, origin, folded).reshape(shape)
    rhat = _split_rhat(*_chain_moments(z, work.dev[:n_par].reshape(shape)), shape[2])
    rhat[undefined] = np.nan
    return rhat


def _quantile_type7(ordered: Float | None, prob: float, full: Float) -> Float:
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


def _ess(mean: Float, dev: Float, sumsq: Float, constant: NDArray[np.bool_]) -> Float:
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
    for top in (*(lag for lag in _LAG_BLOCKS if lag < max_lag), max_lag):
        part = dev if todo.size == n_par else dev[todo]
        if top > _LAG_BLOCKS[-1]:
            sums = _lag_sums_fft(part)[:, : top + 1]
        else:
            sums = np.stack([_dot(part[:, :, t:], part[:, :, : n - t]) for t in range(top + 1)])
            sums = sums.sum(axis=2).T
        rho = 1.0 - (mean_var[todo, None] - sums / scale) / var_plus[todo, None]
        rho[:, 0] = 1.0
        done, tau_part = _geyer_tau(rho, k_max)
        tau[todo[done]] = tau_part[done]
        todo = todo[~done]
        if not todo.size:
            break
    ess = size / np.maximum(tau, 1 / np.log10(size))
    ess[constant] = size
    return ess


def _lag_sums_fft(dev: Float) -> Float:
    """Sums over chains of ``sum_i dev[i] dev[i + t]`` for every lag t, by zero-padded FFT."""
    n = dev.shape[2]
    m = next_fast_len(2 * n)
    spectrum = np.fft.rfft(dev, n=m, axis=2)
    power = (spectrum.real**2 + spectrum.imag**2).sum(axis=1)
    return np.fft.irfft(power, n=m, axis=1)[:, :n]


def _geyer_tau(rho: Float, k_max: int) -> tuple[NDArray[np.bool_], Float]:
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
