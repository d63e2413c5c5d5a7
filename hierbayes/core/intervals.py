"""Posterior summaries of draws: mean, SD and the highest-density interval (NumPy only)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SUMMARY_COLUMNS", "hdi", "summarize"]

#: The columns :func:`summarize` returns, in order.
SUMMARY_COLUMNS = ("mean", "sd", "hdi_lower", "hdi_upper")


def hdi(draws: ArrayLike, prob: float) -> NDArray[np.float64]:
    """The narrowest interval holding ``prob`` of the draws, for each column: (..., 2).

    ``draws`` is (S, ...), draws first. The interval runs from a draw to the draw
    ``floor(prob S)`` places above it in sorted order, as ArviZ's ``hdi`` does.

    Examples
    --------
    >>> hdi([1.0, 2.0, 3.0, 4.0, 100.0], 0.6).tolist()
    [1.0, 4.0]
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob!r}")
    x = np.sort(np.asarray(draws, dtype=float), axis=0)
    n = x.shape[0]
    k = int(np.floor(prob * n))
    start = np.argmin(x[k:] - x[: n - k], axis=0)[None]
    lower = np.take_along_axis(x, start, axis=0)[0]
    upper = np.take_along_axis(x, start + k, axis=0)[0]
    return np.stack([lower, upper], axis=-1)


def summarize(draws: ArrayLike, prob: float) -> NDArray[np.float64]:
    """Mean, SD (ddof 1) and HDI bounds of each column of ``draws`` (S, ...): (..., 4), in the
    order of :data:`SUMMARY_COLUMNS`.

    Examples
    --------
    >>> summarize([[1.0], [2.0], [3.0]], 0.5).round(3).tolist()
    [[2.0, 1.0, 1.0, 2.0]]
    """
    x = np.asarray(draws, dtype=float)
    bounds = hdi(x, prob)
    return np.concatenate([x.mean(0)[..., None], x.std(0, ddof=1)[..., None], bounds], axis=-1)
