"""Gaussian models with the group effects integrated out: the ``"marginal"`` parameterisation.

For a Gaussian model with one grouping factor, the rows of group j satisfy

    y_j = X_j beta + Z_j u_j + e_j,   u_j ~ Normal(0, T),   e_j ~ Normal(0, R_j),

with ``R_j = sigma^2 I`` (or ``diag(se^2)`` for known standard errors), so that, with the group
effects integrated out, ``y_j ~ Normal(X_j beta, Z_j T Z_j' + R_j)``. Write ``T = L L'`` (``L``
the Cholesky factor of T, or ``diag(sd)`` for uncorrelated effects) and, for group j,

    A_j = Z_j' R_j^-1 Z_j,   c_j = Z_j' R_j^-1 r_j,   r_j = y_j - X_j beta,
    M_j = I + L' A_j L,      w_j = L' c_j.

The matrix inversion and determinant lemmas give

    log p(y_j | beta, T, sigma) = -1/2 [n_j log 2pi + log|R_j| + log|M_j|
                                        + r_j' R_j^-1 r_j - w_j' M_j^-1 w_j],

which needs only q x q matrices: never an n_j x n_j one, and never T^-1 (M_j's eigenvalues are
at least 1, so its Cholesky factor stays stable as T shrinks to 0). Every term is a function
of per-group sufficient statistics (n_j, Z_j'Z_j, Z_j'X_j, Z_j'y_j and the global X'X, X'y,
y'y), computed once from the data: one evaluation costs O(J q^2 (p + q)), whatever N is.

More than one grouping factor: :mod:`hierbayes.backend.marginal_multi`.

NUTS then explores only beta, T and sigma. Afterwards :func:`draw_group_effects` draws u_j
exactly from its conditional posterior for every posterior draw: with v_j = L^-1 u_j,
``v_j | y, beta, T, sigma ~ Normal(M_j^-1 w_j, M_j^-1)``. So the posterior holds the same
``u_<factor>`` and ``b_<factor>`` as the other parameterisations (Lai, Domke & Sheldon 2024,
"Hamiltonian Monte Carlo inference of marginalized linear mixed-effects models").

The small q x q Cholesky factorisations and triangular solves are unrolled over q and
vectorised over the groups (and draws), so the same code serves PyTensor graphs and NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from hierbayes.backend.collapse import (
    conditional_draws_kernel,
    group_collapse,
    one_factor_marginal,
)
from hierbayes.core.parallel import run_chunks
from hierbayes.core.pooling import group_crossprod
from hierbayes.errors import SpecError
from hierbayes.spec.design import Design, FactorDesign
from hierbayes.spec.dpars import DparDesign
from hierbayes.spec.grouped import GroupSums

__all__ = [
    "GroupStats",
    "marginal_unavailable",
    "sufficient_stats",
    "marginal_loglik",
    "draw_group_effects",
]


@dataclass(frozen=True, eq=False)
class GroupStats:
    """Sufficient statistics of a Gaussian model with one grouping factor.

    Rows are weighted by ``1 / se^2`` when the standard errors are known; otherwise
    unweighted (the graph divides by ``sigma^2``). Shapes: ``ZtZ`` (J, q, q), ``ZtX``
    (J, q, p), ``Zty`` (J, q), ``XtX`` (p, p), ``Xty`` (p,). ``log_det_r`` is
    ``sum(log se^2)`` (known SEs) or 0. ``by_group`` holds, when sigma varies by group,
    the per-group ``(n_j, y_j'y_j, X_j'y_j, X_j'X_j)``, shapes (J,), (J,), (J, p), (J, p, p).
    """

    ZtZ: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n_obs: int
    known_se: bool
    log_det_r: float
    by_group: tuple[np.ndarray, ...] | None = None


def marginal_unavailable(design: Design) -> str | None:
    """Why the group effects of ``design`` cannot be integrated out, or None when they can.

    With one grouping factor its effects integrate out (below); with more, two nested
    factors integrate out together and otherwise the factor with the most groups does
    (:mod:`hierbayes.backend.marginal_multi`), for a residual SD that is one parameter or
    known standard errors (a formula for sigma needs the one factor).

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("eight_schools")
    >>> d = hb.Model("y ~ 1 + (1 | school)", df, se="sigma").design
    >>> marginal_unavailable(d) is None
    True
    """
    if design.family.name != "gaussian":
        return f"the {design.family.name} family has no closed-form marginal likelihood"
    if design.family.link != "identity":
        return f"the gaussian family with a {design.family.link} link is not linear in the effects"
    if design.weights is not None:
        return "observation weights are not in its sufficient statistics yet"
    if not design.factors:
        return "the model has no grouping factor"
    if len(design.factors) > 1 and design.dpars:
        names = ", ".join(f.name for f in design.factors)
        return (
            f"sigma's formula {design.dpars[0].rhs!r} is integrated over only with one grouping "
            f"factor, and the model has {len(design.factors)} ({names})"
        )
    if design.dpars and sigma_by_group(design) is None:
        f = design.factors[0]
        return (
            f"sigma's formula {design.dpars[0].rhs!r} makes sigma vary within the groups of "
            f"{f.name!r}; it integrates out only when sigma varies by {f.name!r} alone"
        )
    return None


def sigma_by_group(design: Design) -> DparDesign | None:
    """sigma's design reduced to one row per group of the one factor, when sigma is
    constant within those groups (its terms and group effects are level-2 for the factor:
    ``sigma="~ (1 | g)"``, ``"~ w + (1 | g)"`` with ``w`` a group-level column); else None.

    Then ``R_j = sigma_j^2 I`` and the group effects still integrate out.
    """
    if len(design.dpars) != 1 or design.dpars[0].name != "sigma" or len(design.factors) != 1:
        return None
    (d,), f = design.dpars, design.factors[0]
    first = np.unique(f.codes, return_index=True)[1]  # one row of each group, group order

    def constant(A: np.ndarray) -> bool:
        return bool(np.all(A == A[first][f.codes]))

    if not constant(d.X) or any(g.columns != f.columns or not constant(g.Z) for g in d.factors):
        return None
    return replace(
        d,
        X=d.X[first],
        factors=tuple(replace(g, codes=g.codes[first], Z=g.Z[first]) for g in d.factors),
    )


def sufficient_stats(design: Design, factor: FactorDesign | None = None) -> GroupStats:
    """Per-group sufficient statistics of ``design`` (Gaussian); O(N q (p + q)).

    The groups are those of ``factor``, by default the model's one grouping factor (with
    more than one, :mod:`hierbayes.backend.marginal_multi` names the factor it integrates
    out and adds the statistics that couple it to the others).

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("eight_schools")
    >>> s = sufficient_stats(hb.Model("y ~ 1 + (1 | school)", df, se="sigma").design)
    >>> s.ZtZ.shape, s.ZtX.shape, round(float(s.ZtZ[0, 0, 0]), 6)  # 1 / 15^2
    ((8, 1, 1), (8, 1, 1), 0.004444)
    """
    reason = marginal_unavailable(design)
    if reason:
        raise SpecError(f"parameterization='marginal' is not available: {reason}")
    if factor is None and len(design.factors) != 1:
        raise SpecError("sufficient_stats needs the factor when the model has more than one")
    f = design.factors[0] if factor is None else factor
    if design.sums is not None:
        return _from_sums(design.factor_sums(f))
    w = _row_weights(design)
    y, X, Z, J = design.y_adjusted, design.X, f.Z, f.n_groups  # y - offset
    Zw = Z * w[:, None]
    return GroupStats(
        ZtZ=group_crossprod(Zw, Z, f.codes, J),
        ZtX=group_crossprod(Zw, X, f.codes, J),
        Zty=group_crossprod(Zw, y[:, None], f.codes, J)[:, :, 0],
        XtX=(X * w[:, None]).T @ X,
        Xty=(X * w[:, None]).T @ y,
        yty=float(np.sum(w * y**2)),
        n_obs=design.n_obs,
        known_se=design.se is not None,
        log_det_r=float(np.sum(np.log(design.se**2))) if design.se is not None else 0.0,
        by_group=_by_group(y, X, f.codes, J) if design.dpars else None,
    )


def _from_sums(sums: GroupSums) -> GroupStats:
    """The statistics of one factor's per-group sums (:mod:`hierbayes.spec.grouped`)."""
    x, (z,), y = sums.x_cols, sums.z_cols, (sums.y_col,)
    total = sums.total
    return GroupStats(
        ZtZ=sums.block(z, z),
        ZtX=sums.block(z, x),
        Zty=sums.block(z, y)[:, :, 0],
        XtX=total[np.ix_(x, x)],
        Xty=total[list(x), sums.y_col],
        yty=float(total[sums.y_col, sums.y_col]),
        n_obs=sums.n_obs,
        known_se=False,
        log_det_r=0.0,
    )


def _row_weights(design: Design) -> np.ndarray:
    """Each row's weight in the statistics: 1 / se^2 with known SEs, else 1."""
    return np.ones(design.n_obs) if design.se is None else design.se**-2.0


def _by_group(y: np.ndarray, X: np.ndarray, codes: np.ndarray, J: int) -> tuple[np.ndarray, ...]:
    """Per-group (n_j, y_j'y_j, X_j'y_j, X_j'X_j)."""
    return (
        np.bincount(codes, minlength=J).astype(float),
        np.bincount(codes, weights=y**2, minlength=J),
        group_crossprod(X, y[:, None], codes, J)[:, :, 0],
        group_crossprod(X, X, codes, J),
    )


def _minus(x: Any, terms: list[Any]) -> Any:
    """x - sum(terms), with no node for an empty sum (graphs stay small)."""
    for t in terms:
        x = x - t
    return x


def _cholesky(M: list[list[Any]], sqrt) -> list[list[Any]]:
    """Lower Cholesky factor of a stack of q x q matrices, unrolled over q.

    ``M[i][k]`` (i >= k) and the result ``C[i][k]`` are arrays or tensors over the stack.
    """
    q = len(M)
    C: list[list[Any]] = [[None] * q for _ in range(q)]
    for k in range(q):
        C[k][k] = sqrt(_minus(M[k][k], [C[k][m] ** 2 for m in range(k)]))
        for i in range(k + 1, q):
            C[i][k] = _minus(M[i][k], [C[i][m] * C[k][m] for m in range(k)]) / C[k][k]
    return C


def _forward(C: list[list[Any]], w: list[Any]) -> list[Any]:
    """Solve C v = w for lower-triangular C (unrolled)."""
    v: list[Any] = []
    for i in range(len(w)):
        v.append(_minus(w[i], [C[i][m] * v[m] for m in range(i)]) / C[i][i])
    return v


def _backward(C: list[list[Any]], v: list[Any]) -> list[Any]:
    """Solve C' x = v for lower-triangular C (unrolled)."""
    q = len(v)
    x: list[Any] = [None] * q
    for i in reversed(range(q)):
        x[i] = _minus(v[i], [C[m][i] * x[m] for m in range(i + 1, q)]) / C[i][i]
    return x


def _residual_sq(yty: Any, Xty: Any, XtX: Any, beta: Any, p: int) -> Any:
    """e'e = y'y - 2 beta'X'y + beta'X'X beta (tensors); per group with stacked (J, p) X'y
    and (J, p, p) X'X."""
    if not p:
        return yty
    return yty - 2.0 * pt.dot(Xty, beta) + pt.dot(pt.dot(XtX, beta), beta)


def _total(n_obs: Any, log_det_r: Any, log_det_m: Any, s: Any, quad: Any) -> pt.TensorVariable:
    """-1/2 [N log 2pi + log|R| + sum log|M| + s - sum w'M^-1 w] (module docstring)."""
    return -0.5 * (n_obs * math.log(2.0 * math.pi) + log_det_r + log_det_m + s - quad)


def _residual_zy(stats: GroupStats, beta: Any) -> Any:
    """Z_j'(y_j - X_j beta) for every group, (J, q)."""
    J, q = stats.Zty.shape
    p = stats.XtX.shape[0]
    if not p:
        return pt.as_tensor(stats.Zty)
    return stats.Zty - pt.dot(stats.ZtX.reshape(J * q, p), beta).reshape((J, q))


def _collapsed_loglik(
    n_obs: Any, log_det_r: Any, s: Any, factors: Sequence[list[list[Any]]], a: Sequence[Any]
) -> pt.TensorVariable:
    """-1/2 [N log 2pi + log|R| + sum log|M| + s - sum |a|^2] (module docstring), with
    ``factors`` the Cholesky factors C of the M's (log|M| = 2 sum log C_ii) and ``a`` the
    entries of the vectors C^-1 w."""
    log_det_m = 2.0 * sum(pt.log(C[i][i]).sum() for C in factors for i in range(len(C)))
    return _total(n_obs, log_det_r, log_det_m, s, sum((x**2).sum() for x in a))


def _fused_loglik(
    n_obs: Any, log_det_r: Any, s: Any, B: Any, w: Any, J: int, q: int
) -> pt.TensorVariable:
    """:func:`_collapsed_loglik` with every M_j = I + B_j (B (J, q^2), row-major) and w (J, q)
    given whole to one fused kernel (:mod:`hierbayes.backend.collapse`)."""
    log_det_m, quad = group_collapse(B.reshape((J, q, q)) + pt.eye(q), w)
    return _total(n_obs, log_det_r, log_det_m, s, quad)


def _one_factor_loglik(
    stats: GroupStats, beta: Any, chol: Any, sigma: Any, yty: Any, n_obs: Any, log_det_r: Any
) -> pt.TensorVariable:
    """:func:`marginal_loglik` for q <= 2, every group term in one fused kernel
    (:class:`hierbayes.backend.collapse.OneFactorMarginal`); q = 1 enters padded to q = 2
    with a second coefficient that no row has (M_j's second diagonal entry is 1, w_j's 0)."""
    J, q = stats.Zty.shape
    p = stats.XtX.shape[0]
    ZtZ, Zty, ZtX = stats.ZtZ, stats.Zty, stats.ZtX
    if q == 1:
        ZtZ = np.pad(ZtZ, ((0, 0), (0, 1), (0, 1)))
        Zty, ZtX = np.pad(Zty, ((0, 0), (0, 1))), np.pad(ZtX, ((0, 0), (0, 1), (0, 0)))
        chol = pt.stack([chol[0, 0], 0.0, 0.0, 1.0]).reshape((2, 2))
    beta = beta if p else pt.zeros(0)
    scale = pt.ones(()) if sigma is None else sigma
    log_det_m, quad = one_factor_marginal(ZtZ, Zty, ZtX, beta, chol, scale)
    s = _residual_sq(yty, stats.Xty, stats.XtX, beta, p)
    if sigma is not None:
        s, log_det_r = s / sigma**2, 2.0 * n_obs * pt.log(sigma)
    return _total(n_obs, log_det_r, log_det_m, s, quad)


def marginal_loglik(
    stats: GroupStats,
    beta: pt.TensorVariable,
    chol: pt.TensorVariable,
    sigma: pt.TensorVariable | None,
) -> pt.TensorVariable:
    """The log-likelihood with the group effects integrated out (module docstring).

    ``beta`` (p,), ``chol`` the q x q factor L of T, ``sigma`` the residual SD (None when
    the standard errors are known), or one per group, (J,), with ``stats.by_group``.
    """
    if stats.by_group is not None:
        return _marginal_loglik_by_group(stats, beta, chol, sigma)
    J, q = stats.Zty.shape
    p = stats.XtX.shape[0]
    # The data's scalar statistics enter as a shared vector, not as constants: PyTensor writes
    # scalar constants into its generated C code, so new data would mean a new compilation.
    scalars = pytensor.shared(
        np.array([stats.yty, stats.n_obs, stats.log_det_r]), name="marginal_scalars"
    )
    yty, n_obs, log_det_r = scalars[0], scalars[1], scalars[2]
    if q <= 2:
        return _one_factor_loglik(stats, beta, chol, sigma, yty, n_obs, log_det_r)
    r = _residual_zy(stats, beta)
    s = _residual_sq(yty, stats.Xty, stats.XtX, beta, p)
    if sigma is None:
        L = chol
    else:  # A = Z'Z / sigma^2 and c = r / sigma^2: fold one 1/sigma into L, one into r
        L, r, s = chol / sigma, r / sigma, s / sigma**2
        log_det_r = 2.0 * n_obs * pt.log(sigma)
    # L'AL for every group as one (J, q^2) x (q^2, q^2) product: column a q + b of the result
    # is sum_km L_ka L_mb (Z'Z)_km
    K = (L[:, None, :, None] * L[None, :, None, :]).reshape((q * q, q * q))
    B = pt.dot(stats.ZtZ.reshape(J, q * q), K)
    w = pt.dot(r, L)  # (J, q): L'c per group
    return _fused_loglik(n_obs, log_det_r, s, B, w, J, q)


def _marginal_loglik_by_group(
    stats: GroupStats, beta: pt.TensorVariable, chol: pt.TensorVariable, sigma: pt.TensorVariable
) -> pt.TensorVariable:
    """:func:`marginal_loglik` with R_j = sigma_j^2 I: each group's A_j, c_j and r_j'r_j
    divided by its own sigma_j^2."""
    J, q = stats.Zty.shape
    p = stats.XtX.shape[0]
    n, yty, Xty, XtX = (pytensor.shared(a) for a in stats.by_group)
    prec = sigma**-2.0  # (J,)
    r = _residual_zy(stats, beta)
    s = _residual_sq(yty, Xty, XtX, beta, p)
    K = (chol[:, None, :, None] * chol[None, :, None, :]).reshape((q * q, q * q))
    B = pt.dot(stats.ZtZ.reshape(J, q * q), K) * prec[:, None]
    w = pt.dot(r, chol) * prec[:, None]
    log_det_r = 2.0 * pt.sum(n * pt.log(sigma))
    return _fused_loglik(stats.n_obs, log_det_r, pt.sum(prec * s), B, w, J, q)


def draw_group_effects(
    stats: GroupStats,
    beta: np.ndarray,
    chol: np.ndarray,
    sigma: np.ndarray | None,
    rng: np.random.Generator,
    *,
    chunk: int = 100,
) -> np.ndarray:
    """Draw u_j from its exact conditional posterior for every posterior draw.

    Parameters
    ----------
    stats : GroupStats
    beta : ndarray, shape (S, p)
    chol : ndarray, shape (S, q, q)
        The Cholesky factor L of T for each draw.
    sigma : ndarray, shape (S,) or (S, J), or None
        Residual SD draws, one per group with a sigma that varies by group (None with known
        standard errors).
    rng : numpy.random.Generator
    chunk : int
        Draws processed at once (memory is O(chunk J q^2)).

    Returns
    -------
    ndarray, shape (S, J, q)

    Examples
    --------
    One group, one observation y = 2 with known se 1, beta = 0 and tau = 1: the conditional
    posterior of u is Normal(1, 1/2).

    >>> import numpy as np
    >>> s = GroupStats(np.ones((1, 1, 1)), np.zeros((1, 1, 0)), np.array([[2.0]]),
    ...                np.zeros((0, 0)), np.zeros(0), 4.0, 1, True, 0.0)
    >>> u = draw_group_effects(s, np.zeros((20000, 0)), np.ones((20000, 1, 1)), None,
    ...                        np.random.default_rng(0))
    >>> round(float(u.mean()), 1), round(float(u.var()), 1)
    (1.0, 0.5)
    """
    S, (J, q) = beta.shape[0], stats.Zty.shape
    out = np.empty((S, J, q))
    starts = range(0, S, chunk)
    # one random stream per chunk, so the draws do not depend on how many threads run
    streams = np.random.SeedSequence(int(rng.integers(2**63))).spawn(len(starts))
    ZtZ, Zty, ZtX = (
        np.ascontiguousarray(a, dtype=float) for a in (stats.ZtZ, stats.Zty, stats.ZtX)
    )

    def fill(start: int, stream: np.random.SeedSequence) -> None:
        sl = slice(start, min(start + chunk, S))
        n = sl.stop - sl.start
        # precision of each group's rows, (n, 1) or (n, J): 1 (known SEs, already in the
        # statistics), 1 / sigma^2, or 1 / sigma_j^2
        precision = np.ones((n, 1)) if sigma is None else sigma[sl].reshape(n, -1) ** -2.0
        noise = np.random.default_rng(stream).standard_normal((q, n, J))
        beta_, chol_ = (np.ascontiguousarray(a[sl], dtype=float) for a in (beta, chol))
        conditional_draws_kernel(ZtZ, Zty, ZtX, beta_, chol_, precision, noise, out[sl])

    run_chunks(fill, starts, streams)
    return out
