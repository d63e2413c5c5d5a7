"""Exact draws of the group effects a marginal model with more than one factor integrated out.

For every posterior draw of the sampled parameters (:mod:`hierbayes.backend.marginal_multi`
has the maths and the notation):

* nested factors: the outer effects ``u_j | y ~ L1 N(C_j'^-1 a_j, M_j^-1)``, then the inner
  ones ``v_k | u_j, y ~ L2 N(C_k'^-1 (a_k - H_k u_j), M_k^-1)``;
* crossed factors: the integrated factor's effects given the sampled factors' effects and y,
  as for one factor with ``y - Z_o u_o`` for y.

So the posterior holds ``u_<f>`` and ``b_<f>`` for every factor, as with the other
parameterisations. The q x q algebra is unrolled over q and vectorised over the groups and
a chunk of draws, the chunks on up to two threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from hierbayes.backend.marginal import _backward
from hierbayes.backend.marginal_multi import (
    CrossedStats,
    Entries,
    Matrix,
    NestedStats,
    _cell_effects,
    _dot,
    _matrix,
    _outer_terms,
    _solve,
)
from hierbayes.core.parallel import run_chunks

__all__ = ["draw_nested_effects", "draw_crossed_effects", "nested_group_loglik"]


def _absorb(G: Matrix, e: Entries, L: Matrix, cross: Matrix, sqrt: Callable) -> tuple:
    """Integrate out effects with Gram matrix ``G`` = Z'Z, ``e`` = Z'r and covariance factor
    ``L`` (all scaled by 1/sigma): ``C`` with C C' = I + L'GL, ``a = C^-1 L'e`` and
    ``H = C^-1 L' cross`` (``cross`` = Z'Z1, q x r, or empty)."""
    q = len(e)
    LtG = [[_dot([(L[m][i], G[m][n]) for m in range(q)]) for n in range(q)] for i in range(q)]
    M = [[_dot([(LtG[i][n], L[n][k]) for n in range(q)]) for k in range(i + 1)] for i in range(q)]
    Le = [_dot([(L[m][i], e[m]) for m in range(q)]) for i in range(q)]
    r = len(cross[0]) if cross else 0
    LX = [[_dot([(L[m][i], cross[m][b]) for m in range(q)]) for b in range(r)] for i in range(q)]
    return _solve(M, Le, LX, sqrt)


def _lower(L: np.ndarray, q: int, scale: Any = 1.0) -> Matrix:
    """Entries of lower-triangular factors (n, q, q), one per draw, times ``scale``: (n, 1)
    columns, structural zeros above the diagonal."""
    return [[L[:, i, k, None] * scale if k <= i else 0.0 for k in range(q)] for i in range(q)]


def _summer(index: np.ndarray, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """x (n, K) -> (n, size): the sums of x's columns by ``index``."""
    P = sp.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))), (size, len(index)))
    return lambda x: (P @ x.T).T


def _chunked(
    S: int, width: int, rng: np.random.Generator, fill: Callable[[slice, np.random.Generator], None]
) -> None:
    """Call ``fill(draws, generator)`` over chunks of about 2^16 / width draws, one random
    stream per chunk (so the draws do not depend on how many threads run)."""
    chunk = max(1, min(S, 2**16 // max(width, 1)))
    starts = range(0, S, chunk)
    streams = np.random.SeedSequence(int(rng.integers(2**63))).spawn(len(starts))

    def run(start: int, stream: np.random.SeedSequence) -> None:
        fill(slice(start, min(start + chunk, S)), np.random.default_rng(stream))

    run_chunks(run, starts, streams)


def _scale(sigma: np.ndarray | None, sl: slice) -> Any:
    return 1.0 if sigma is None else 1.0 / sigma[sl, None]


def _project(Zy: np.ndarray, ZX: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Z'(y - X beta) per draw and group, (n, G, q), from ``beta`` (n, p)."""
    return Zy - np.einsum("sp,gqp->sgq", beta, ZX)


def _draw(C: Matrix, mean: Entries, chol: np.ndarray, gen: np.random.Generator) -> Entries:
    """L x with x ~ N(C'^-1 mean, (C C')^-1): effects drawn from their conditional
    posterior, entry by entry, (n, G) each; ``chol`` (n, q, q) the draws' factors L."""
    q = len(mean)
    z = gen.standard_normal((q, chol.shape[0], mean[0].shape[-1]))
    x = _backward(C, [mean[i] + z[i] for i in range(q)])
    return [_dot([(chol[:, i, k, None], x[k]) for k in range(i + 1)]) for i in range(q)]


def _nested_terms(
    stats: NestedStats,
    by_outer: Callable[[np.ndarray], np.ndarray],
    beta: np.ndarray,
    chol1: np.ndarray,
    chol2: np.ndarray,
    tau: Any,
) -> tuple:
    """Both levels of a nested model integrated out for a chunk of draws (``beta``, ``chol1``,
    ``chol2`` of those draws, ``tau`` = 1/sigma (n, 1) or 1.0; ``by_outer`` adds up the inner
    groups of each outer one, :func:`_summer`): (C1, a1) of the outer groups, (C2, a2, H) of
    the inner ones, entry by entry (:mod:`hierbayes.backend.marginal_multi`)."""
    g, (n, K) = stats.inner, (beta.shape[0], len(stats.parent))
    q1, q2 = stats.Z1Z1.shape[1], g.ZtZ.shape[1]
    z1e = _project(stats.Z1y, stats.Z1X, beta) * np.reshape(tau, (-1, 1, 1))
    z2e = _project(g.Zty, g.ZtX, beta) * np.reshape(tau, (-1, 1, 1))
    C2, a2, H = _absorb(
        _matrix(g.ZtZ),
        [z2e[:, :, i] for i in range(q2)],
        _lower(chol2, q2, tau),
        _matrix(stats.Z2Z1),
        np.sqrt,
    )
    A, c = _outer_terms(_matrix(stats.Z1Z1), [z1e[:, :, i] for i in range(q1)], a2, H)
    A_j = [[by_outer(np.broadcast_to(A[i][k], (n, K))) for k in range(q1)] for i in range(q1)]
    C1, a1, _ = _absorb(A_j, [by_outer(x) for x in c], _lower(chol1, q1, tau), [], np.sqrt)
    return C1, a1, C2, a2, H


def draw_nested_effects(
    stats: NestedStats,
    beta: np.ndarray,
    chol1: np.ndarray,
    chol2: np.ndarray,
    sigma: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the outer effects u_j | y, then the inner v_k | u_j, y, for every posterior draw.

    Parameters
    ----------
    stats : NestedStats
    beta : ndarray, shape (S, p)
    chol1, chol2 : ndarray, shapes (S, q1, q1) and (S, q2, q2)
        Lower Cholesky factors of T1 (outer) and T2 (inner) per draw.
    sigma : ndarray, shape (S,), or None
        Residual SD per draw (None with known standard errors).
    rng : numpy.random.Generator

    Returns
    -------
    tuple of ndarray
        The outer effects (S, J, q1) and the inner ones (S, K, q2).

    Examples
    --------
    >>> from hierbayes.backend.marginal_multi import _example_design, nested_stats
    >>> d = _example_design("y ~ 0 + (1 | b/c)", "aabb", "xyxy", y=[0.5, -1.0, 2.0, 0.0])
    >>> s = nested_stats(d)
    >>> one = np.ones((4000, 1, 1))
    >>> u, v = draw_nested_effects(s, np.zeros((4000, 0)), one, one, np.ones(4000),
    ...                            np.random.default_rng(0))
    >>> u.shape, v.shape, bool(abs(u[:, 1, 0].mean() - 0.5) < 0.05)  # E u_b = 2 / 4
    ((4000, 2, 1), (4000, 4, 1), True)
    """
    S, K, J = beta.shape[0], len(stats.parent), stats.n_outer
    q1, q2 = stats.Z1Z1.shape[1], stats.inner.ZtZ.shape[1]
    out1, out2 = np.empty((S, J, q1)), np.empty((S, K, q2))
    by_outer = _summer(stats.parent, J)

    def fill(sl: slice, gen: np.random.Generator) -> None:
        tau = _scale(sigma, sl)
        C1, a1, C2, a2, H = _nested_terms(stats, by_outer, beta[sl], chol1[sl], chol2[sl], tau)
        u1 = _draw(C1, a1, chol1[sl], gen)
        shift = [u1[k][:, stats.parent] * tau for k in range(q1)]
        mean = [a2[i] - _dot([(H[i][k], shift[k]) for k in range(q1)]) for i in range(q2)]
        for i, u in enumerate(_draw(C2, mean, chol2[sl], gen)):
            out2[sl, :, i] = u
        for i in range(q1):
            out1[sl, :, i] = u1[i]

    _chunked(S, K * (q1 + q2) ** 2, rng, fill)
    return out1, out2


def draw_crossed_effects(
    stats: CrossedStats,
    beta: np.ndarray,
    chol: np.ndarray,
    effects: Sequence[np.ndarray],
    sigma: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw the integrated factor's effects u | u_o, y for every posterior draw.

    Parameters
    ----------
    stats : CrossedStats
    beta : ndarray, shape (S, p)
    chol : ndarray, shape (S, q, q)
        Lower Cholesky factor of the integrated factor's T per draw.
    effects : sequence of ndarray, shapes (S, J_o, q_o)
        The sampled factors' effects, in the order of ``stats.ZoX``.
    sigma : ndarray, shape (S,), or None
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (S, J, q)

    Examples
    --------
    >>> from hierbayes.backend.marginal_multi import _example_design, crossed_stats
    >>> s = crossed_stats(_example_design("y ~ 0 + (1 | b) + (1 | c)", "abab", "xxyz",
    ...                                   y=[0.4, -1.0, 2.0, 0.2]))
    >>> u_b = np.tile([[1.0], [-1.0]], (4000, 1, 1))
    >>> u = draw_crossed_effects(s, np.zeros((4000, 0)), np.ones((4000, 1, 1)), [u_b],
    ...                          np.ones(4000), np.random.default_rng(0))
    >>> np.round(u.mean(axis=0)[:, 0], 1).tolist()  # sum of (y - u_b) over c's rows / (n + 1)
    [-0.2, 0.5, 0.6]
    """
    g = stats.marg
    S, (J, q) = beta.shape[0], g.Zty.shape
    out = np.empty((S, J, q))
    by_group = _summer(stats.cell_group, J)
    G = _matrix(g.ZtZ)
    C = len(stats.cell_group)

    def fill(sl: slice, gen: np.random.Generator) -> None:
        v = _cell_effects(
            stats,
            [u[sl] for u in effects],
            lambda xs: np.concatenate(xs, axis=2),
            lambda u, i: u[:, i],
        )  # (n, C, Q)
        t = np.einsum("cab,ncb->nca", stats.ZZo, v)
        tau = _scale(sigma, sl)
        e = _project(g.Zty, g.ZtX, beta[sl])
        e = [(e[:, :, i] - by_group(t[:, :, i])) * tau for i in range(q)]
        Cm, a, _ = _absorb(G, e, _lower(chol[sl], q, tau), [], np.sqrt)
        for i, u in enumerate(_draw(Cm, a, chol[sl], gen)):
            out[sl, :, i] = u

    _chunked(S, C * sum(u.shape[2] for u in effects) + J * q * q, rng, fill)
    return out


def nested_group_loglik(
    stats: NestedStats,
    beta: np.ndarray,
    chol1: np.ndarray,
    chol2: np.ndarray,
    sigma: np.ndarray,
    outer_rr: np.ndarray,
    outer_n: np.ndarray,
) -> np.ndarray:
    """Each outer group's log-likelihood with both levels of effects integrated out, per draw.

    The nested log-likelihood (:mod:`hierbayes.backend.marginal_multi`) is a sum over the
    outer groups j of ``-1/2 [n_j log 2pi sigma^2 + sum_{k in j} log|M_k| + log|M_j|
    + r_j'r_j / sigma^2 - sum_{k in j} |a_k|^2 - |a_j|^2]``, r = y - X beta: log p(y_j), the
    density of group j's data alone (leave-one-group-out's term).

    Parameters
    ----------
    stats, beta, chol1, chol2 : as for :func:`draw_nested_effects`.
    sigma : ndarray, shape (S,)
    outer_rr : ndarray, shape (J, p + 1, p + 1)
        Each outer group's cross-products of ``[X, y]``.
    outer_n : ndarray, shape (J,)
        Each outer group's rows.

    Returns
    -------
    ndarray, shape (S, J)

    Examples
    --------
    >>> from scipy.stats import multivariate_normal
    >>> from hierbayes.backend.marginal_multi import _example_design, nested_stats
    >>> y = np.array([0.5, -1.0, 2.0, 0.0])
    >>> s = nested_stats(_example_design("y ~ 0 + (1 | b/c)", "aabb", "xyxy", y=y))
    >>> rr = np.array([[[0.5**2 + 1.0]], [[4.0]]])  # per group of b: y'y
    >>> one = np.ones((1, 1, 1))
    >>> ll = nested_group_loglik(s, np.zeros((1, 0)), one, one, np.ones(1), rr, np.array([2, 2]))
    >>> cov = np.ones((2, 2)) + 2 * np.eye(2)  # a group of b: 1 1' + Z2 Z2' + I
    >>> bool(np.allclose(ll[0], [multivariate_normal(np.zeros(2), cov).logpdf(y[:2]),
    ...                          multivariate_normal(np.zeros(2), cov).logpdf(y[2:])]))
    True
    """
    S, K, J = beta.shape[0], len(stats.parent), stats.n_outer
    q1, q2 = stats.Z1Z1.shape[1], stats.inner.ZtZ.shape[1]
    out = np.empty((S, J))
    by_outer = _summer(stats.parent, J)
    m = outer_rr.shape[1]
    rr = outer_rr.reshape(J, m * m)

    def fill(sl: slice, gen: np.random.Generator) -> None:
        n = sl.stop - sl.start
        tau = _scale(sigma, sl)
        C1, a1, C2, a2, _ = _nested_terms(stats, by_outer, beta[sl], chol1[sl], chol2[sl], tau)
        inner = sum(2.0 * np.log(C2[i][i]) - a2[i] ** 2 for i in range(q2))  # (n, K)
        outer = sum(2.0 * np.log(C1[i][i]) - a1[i] ** 2 for i in range(q1))  # (n, J)
        v = np.concatenate([-beta[sl], np.ones((n, 1))], axis=1)  # r = [X, y] v
        r_sq = (v[:, :, None] * v[:, None, :]).reshape(n, m * m) @ rr.T  # (n, J)
        log_2pi_s2 = np.log(2.0 * np.pi) + 2.0 * np.log(sigma[sl, None])
        out[sl] = -0.5 * (
            outer_n * log_2pi_s2 + by_outer(inner) + outer + r_sq * np.reshape(tau, (-1, 1)) ** 2
        )

    _chunked(S, K * (q1 + q2) ** 2, np.random.default_rng(0), fill)
    return out
