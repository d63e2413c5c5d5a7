"""Gaussian models with more than one grouping factor: which effects integrate out, and how.

:mod:`hierbayes.backend.marginal` integrates out the effects of one grouping factor. With
more factors (Lai, Domke & Sheldon 2024) there are two layouts.

**Nested** (two factors, every group k of the inner factor inside one group j = P(k) of the
outer one, as ``(1 | batch/cask)`` gives): for the rows of inner group k,

    y_k = X_k beta + Z1_k u_j + Z2_k v_k + e_k,   u_j ~ N(0, T1),  v_k ~ N(0, T2),
    e_k ~ N(0, R_k),  R_k = sigma^2 I (or diag(se^2), the statistics then weighted by se^-2).

Both levels integrate out. Write everything scaled by 1/sigma (L1, L2 the factors of T1,
T2 divided by sigma; with known SEs sigma = 1), e_k = y_k - X_k beta, and for inner group k

    M_k = I + L2' Z2'Z2 L2 = C_k C_k',   a_k = C_k^-1 L2' Z2'e_k,   H_k = C_k^-1 L2' Z2'Z1.

The matrix inversion lemma integrates v_k out and leaves a Gaussian quadratic form in u_j:
``log p(y_k | u_j) = const - 1/2 [log|M_k| - |a_k|^2 + u'A_k u - 2 u'c_k]`` with

    A_k = Z1'Z1 - H_k'H_k,   c_k = Z1'e_k - H_k' a_k      (over the rows of k).

Summing over the k in j gives A_j and c_j, and the one-factor lemma integrates u_j out:
``M_j = I + L1' A_j L1 = C_j C_j'``, ``a_j = C_j^-1 L1' c_j``, so

    log p(y) = -1/2 [N log 2pi + log|R| + sum_k log|M_k| + sum_j log|M_j|
                     + e'R^-1 e - sum_k |a_k|^2 - sum_j |a_j|^2].

Everything comes from per-inner-group statistics (Z1'Z1, Z2'Z1, Z2'Z2, Z1'X, Z2'X, Z1'y,
Z2'y) and the global X'X, X'y, y'y, computed once: one evaluation is O(K q^3), whatever N.
Afterwards u_j | y ~ L1 N(C_j'^-1 a_j, M_j^-1) and v_k | u_j, y ~ L2 N(C_k'^-1 a'_k, M_k^-1),
``a'_k = a_k - H_k u_j`` (u_j scaled by 1/sigma).

**Crossed** (any other set of factors): the factor with the most groups, f, integrates out
and the others are sampled (non-centered, or as auto plans them); they enter f's one-factor
marginal as an offset
``eta_o = sum_o Z_o u_o``. Its statistics then need ``Z_f'eta_o`` per group of f and
``eta_o'eta_o``, ``(y - X beta)'eta_o``. They come from a list of cells, one per distinct
combination of groups (at most N of them), holding ``Z_f'Z_o`` and ``Z_o'Z_o`` over the
cell's rows, and from the sampled factors' per-group ``Z_o'X``, ``Z_o'y``: one evaluation
costs O(cells + J), never O(N) nor J_f x J_o. Afterwards u_f | u_o, y is drawn exactly as
for one factor (the draws: :mod:`hierbayes.backend.marginal_draws`).

The q x q algebra is written entry by entry (lists of arrays over the groups), so the same
functions serve the PyTensor graph and the NumPy draws; structural zeros (above the
diagonal of a Cholesky factor) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt

from hierbayes.backend.marginal import (
    GroupStats,
    _cholesky,
    _collapsed_loglik,
    _forward,
    _from_sums,
    _residual_sq,
    _row_weights,
    marginal_unavailable,
    sufficient_stats,
)
from hierbayes.core.pooling import group_crossprod
from hierbayes.errors import SpecError
from hierbayes.spec.design import Design, FactorDesign, build_design
from hierbayes.spec.families import GAUSSIAN
from hierbayes.spec.formula import parse
from hierbayes.spec.terms import nesting_codes

__all__ = [
    "MarginalLayout",
    "NestedStats",
    "CrossedStats",
    "marginal_layout",
    "nested_stats",
    "crossed_stats",
    "nested_loglik",
    "crossed_loglik",
]

Entries = list[Any]  # a vector: one array (or tensor) over the groups per entry
Matrix = list[list[Any]]  # a matrix, entry by entry


@dataclass(frozen=True)
class MarginalLayout:
    """Which grouping factors a marginal model integrates out.

    ``kind`` is ``"one"`` (one factor), ``"nested"`` (``marginal`` is (outer, inner), both
    integrated out) or ``"crossed"`` (``marginal`` is the one factor integrated out,
    ``sampled`` the others, non-centered). ``forms`` describes each factor in formula order.
    """

    kind: str
    marginal: tuple[str, ...]
    sampled: tuple[str, ...]
    forms: dict[str, str]


def marginal_layout(design: Design) -> MarginalLayout:
    """The factors ``design``'s marginal parameterisation integrates out (module docstring).

    Examples
    --------
    >>> nested = _example_design("y ~ (1 | b/c)", "aaaabbbb", "xyzwxyzw")
    >>> crossed = _example_design("y ~ (1 | b) + (1 | c)", "aaaabbbb", "xyzwxyzw")
    >>> marginal_layout(nested).forms
    {'b': 'marginal', 'b:c': 'marginal'}
    >>> marginal_layout(crossed).forms
    {'b': 'non-centered', 'c': 'marginal'}
    """
    reason = marginal_unavailable(design)
    if reason:
        raise SpecError(f"parameterization='marginal' is not available: {reason}")
    factors = design.factors
    if len(factors) == 1:
        return MarginalLayout("one", (factors[0].name,), (), {factors[0].name: "marginal"})
    if len(factors) == 2:
        a, b = factors
        pairs = [(a, b), (b, a)] if b.n_groups >= a.n_groups else [(b, a), (a, b)]
        for outer, inner in pairs:
            if _nesting(design, outer, inner) is not None:
                names = (outer.name, inner.name)
                return MarginalLayout("nested", names, (), {f.name: "marginal" for f in factors})
    marg = max(factors, key=lambda f: f.n_groups)  # the first of the largest
    sampled = tuple(f.name for f in factors if f is not marg)
    forms = {f.name: "marginal" if f is marg else "non-centered" for f in factors}
    return MarginalLayout("crossed", (marg.name,), sampled, forms)


def _example_design(formula: str, b: str, c: str, y: Sequence[float] | None = None) -> Design:
    """The examples' data: the Gaussian design (no SEs) of ``formula`` with factors ``b`` and
    ``c`` (one letter a row) and the response ``y``, by default 0, 1, 2, ..."""
    data = pd.DataFrame({"y": np.arange(float(len(b))) if y is None else y, "b": [*b], "c": [*c]})
    return build_design(parse(formula), data, se=None, family=GAUSSIAN)


def _factor(design: Design, name: str) -> FactorDesign:
    return next(f for f in design.factors if f.name == name)


def _codes(design: Design, f: FactorDesign) -> np.ndarray:
    """Each row's group of ``f``; with per-cell sums, each cell's."""
    if design.sums is None:
        return f.codes
    return design.sums.cells[:, design.factors.index(f)]


def _nesting(design: Design, outer: FactorDesign, inner: FactorDesign) -> np.ndarray | None:
    return nesting_codes(_codes(design, outer), _codes(design, inner), inner.n_groups)


@dataclass(frozen=True, eq=False)
class NestedStats:
    """Per-inner-group statistics of a nested model (module docstring), weighted by se^-2
    with known SEs. ``inner`` holds the inner factor's one-factor statistics: Z2'Z2, Z2'X
    and Z2'y per inner group, and the global X'X, X'y, y'y. ``parent`` (K,) is each inner
    group's outer group; shapes ``Z1Z1`` (K, q1, q1), ``Z2Z1`` (K, q2, q1), ``Z1X``
    (K, q1, p), ``Z1y`` (K, q1)."""

    parent: np.ndarray
    n_outer: int
    Z1Z1: np.ndarray
    Z2Z1: np.ndarray
    Z1X: np.ndarray
    Z1y: np.ndarray
    inner: GroupStats


def nested_stats(design: Design) -> NestedStats:
    """The statistics of a nested model, O(N (q1 + q2) (q1 + q2 + p)).

    Examples
    --------
    >>> s = nested_stats(_example_design("y ~ (1 | b/c)", "aaaabbbb", "xxyyxxyy"))
    >>> s.parent.tolist(), s.Z2Z1[:, 0, 0].tolist(), s.inner.Zty[:, 0].tolist()
    ([0, 0, 1, 1], [2.0, 2.0, 2.0, 2.0], [1.0, 5.0, 9.0, 13.0])
    """
    layout = marginal_layout(design)
    if layout.kind != "nested":
        raise SpecError(f"the grouping factors of this model are not nested ({layout.kind})")
    outer, inner = (_factor(design, n) for n in layout.marginal)
    if design.sums is not None:  # the inner groups' sums hold every product needed
        s = design.factor_sums(inner)
        z1, z2 = design.sums.z_cols[design.factors.index(outer)], s.z_cols[0]
        x, y = s.x_cols, s.y_col
        return NestedStats(
            parent=_nesting(design, outer, inner),
            n_outer=outer.n_groups,
            Z1Z1=s.block(z1, z1),
            Z2Z1=s.block(z2, z1),
            Z1X=s.block(z1, x),
            Z1y=s.block(z1, (y,))[:, :, 0],
            inner=_from_sums(s),
        )
    w = _row_weights(design)
    y, X, codes, K = design.y_adjusted, design.X, inner.codes, inner.n_groups
    Z1w = outer.Z * w[:, None]
    return NestedStats(
        parent=_nesting(design, outer, inner),
        n_outer=outer.n_groups,
        Z1Z1=group_crossprod(Z1w, outer.Z, codes, K),
        Z2Z1=group_crossprod(inner.Z * w[:, None], outer.Z, codes, K),
        Z1X=group_crossprod(Z1w, X, codes, K),
        Z1y=group_crossprod(Z1w, y[:, None], codes, K)[:, :, 0],
        inner=sufficient_stats(design, inner),
    )


@dataclass(frozen=True, eq=False)
class CrossedStats:
    """Statistics of a crossed model (module docstring).

    ``marg`` holds the integrated factor's one-factor statistics. Per sampled factor o:
    ``ZoX[o]`` (J_o, q_o, p) and ``Zoy[o]`` (J_o, q_o). Per cell c (a distinct combination
    of groups): ``cell_group`` (C,) its group of the integrated factor, ``cell_codes``
    (C, n_sampled) its groups of the sampled ones, ``ZZo`` (C, q, Q) and ``ZoZo`` (C, Q, Q)
    with Z_o the sampled factors' columns side by side (Q = sum of q_o).
    """

    marg: GroupStats
    ZoX: tuple[np.ndarray, ...]
    Zoy: tuple[np.ndarray, ...]
    cell_group: np.ndarray
    cell_codes: np.ndarray
    ZZo: np.ndarray
    ZoZo: np.ndarray


def crossed_stats(design: Design) -> CrossedStats:
    """The statistics of a crossed model, O(N (q + Q) (Q + p)) and O(N log N) for the cells.

    Examples
    --------
    >>> s = crossed_stats(_example_design("y ~ (1 | b) + (1 | c)", "aaaabbbb", "xyzwxyzw"))
    >>> s.cell_group.tolist(), s.cell_codes[:, 0].tolist(), s.ZZo.shape
    ([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 0, 1, 0, 1], (8, 1, 1))
    """
    layout = marginal_layout(design)
    if layout.kind != "crossed":
        raise SpecError(f"the grouping factors of this model are not crossed ({layout.kind})")
    f = _factor(design, layout.marginal[0])
    others = [_factor(design, n) for n in layout.sampled]
    if design.sums is not None:  # the cells' sums hold every product needed
        return _crossed_from_sums(design, f, others)
    w = _row_weights(design)
    y, X = design.y_adjusted, design.X
    joint = np.column_stack([f.codes] + [o.codes for o in others])
    cells, cell = np.unique(joint, axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    Zo = np.hstack([o.Z for o in others])
    Zow = Zo * w[:, None]
    return CrossedStats(
        marg=sufficient_stats(design, f),
        ZoX=tuple(group_crossprod(o.Z * w[:, None], X, o.codes, o.n_groups) for o in others),
        Zoy=tuple(
            group_crossprod(o.Z * w[:, None], y[:, None], o.codes, o.n_groups)[:, :, 0]
            for o in others
        ),
        cell_group=cells[:, 0].copy(),
        cell_codes=cells[:, 1:].copy(),
        ZZo=group_crossprod(f.Z * w[:, None], Zo, cell, len(cells)),
        ZoZo=group_crossprod(Zow, Zo, cell, len(cells)),
    )


def _crossed_from_sums(design: Design, f: FactorDesign, others: list[FactorDesign]) -> CrossedStats:
    """:func:`crossed_stats` of a design of per-cell sums."""
    sums, where = design.sums, design.factors.index
    x, y = sums.x_cols, (sums.y_col,)
    zf = sums.z_cols[where(f)]
    zo = tuple(c for o in others for c in sums.z_cols[where(o)])
    by = [(design.factor_sums(o), sums.z_cols[where(o)]) for o in others]
    return CrossedStats(
        marg=sufficient_stats(design, f),
        ZoX=tuple(s.block(z, x) for s, z in by),
        Zoy=tuple(s.block(z, y)[:, :, 0] for s, z in by),
        cell_group=sums.cells[:, where(f)].copy(),
        cell_codes=sums.cells[:, [where(o) for o in others]].copy(),
        ZZo=sums.block(zf, zo),
        ZoZo=sums.block(zo, zo),
    )


# ---- entry-by-entry algebra (shared with the draws, :mod:`hierbayes.backend.marginal_draws`) ----


def _zero(x: Any) -> bool:
    return type(x) is float and x == 0.0


def _dot(pairs: Sequence[tuple[Any, Any]]) -> Any:
    """sum of a * b over ``pairs``, skipping structural zeros (the Python float 0.0)."""
    terms = [a * b for a, b in pairs if not (_zero(a) or _zero(b))]
    if not terms:
        return 0.0
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _absorb_tensor(
    G: Any, e: pt.TensorVariable, L: pt.TensorVariable, cross: np.ndarray | None, q: int
) -> tuple:
    """Integrate out effects with Gram matrix ``G`` = Z'Z (n, q, q), ``e`` = Z'r (n, q) and
    covariance factor ``L`` (q, q), all scaled by 1/sigma, in a graph: ``C`` with
    C C' = I + L'GL, ``a = C^-1 L'e`` and ``H = C^-1 L' cross`` (``cross`` = Z'Z1, (n, q, r),
    or None). The products with L are three dot products, so that the graph (and the time
    PyTensor takes to rewrite it) stays small; the draws do the same entry by entry."""
    n = G.shape[0]
    kron = (L[:, None, :, None] * L[None, :, None, :]).reshape((q * q, q * q))
    B = pt.dot(G.reshape((n, q * q)), kron)  # column i q + k: (L'GL)_ik
    Le = pt.dot(e, L)
    M = [[B[:, i * q + k] for k in range(i + 1)] for i in range(q)]
    LX: Matrix = [[] for _ in range(q)]
    if cross is not None:
        r = cross.shape[2]
        P = pt.dot(np.ascontiguousarray(cross.transpose(0, 2, 1)).reshape(n * r, q), L)
        P = P.reshape((n, r, q))  # [k, b, i]: (L' cross)_ib
        LX = [[P[:, b, i] for b in range(r)] for i in range(q)]
    return _solve(M, [Le[:, i] for i in range(q)], LX, pt.sqrt)


def _solve(M: Matrix, Le: Entries, LX: Matrix, sqrt: Callable) -> tuple:
    """C = chol(I + M), a = C^-1 Le and H = C^-1 LX, entry by entry."""
    q = len(Le)
    M = [[M[i][k] + 1.0 if i == k else M[i][k] for k in range(i + 1)] for i in range(q)]
    C = _cholesky(M, sqrt)
    a = _forward(C, Le)
    r = len(LX[0])
    cols = [_forward(C, [LX[i][b] for i in range(q)]) for b in range(r)]
    H = [[cols[b][i] for b in range(r)] for i in range(q)]
    return C, a, H


def _outer_terms(Z1Z1: Matrix, z1e: Entries, a: Entries, H: Matrix) -> tuple[Matrix, Entries]:
    """A_k = Z1'Z1 - H'H and c_k = Z1'e - H'a of each inner group."""
    q1, q2 = len(z1e), len(a)
    A = [
        [Z1Z1[i][k] - _dot([(H[m][i], H[m][k]) for m in range(q2)]) for k in range(q1)]
        for i in range(q1)
    ]
    c = [z1e[i] - _dot([(H[m][i], a[m]) for m in range(q2)]) for i in range(q1)]
    return A, c


def _matrix(A: np.ndarray, wrap: Callable = lambda x: x) -> Matrix:
    """Entries of a stack of matrices (G, a, b)."""
    return [[wrap(A[:, i, k]) for k in range(A.shape[2])] for i in range(A.shape[1])]


def _scalars(yty: float, n_obs: int, log_det_r: float) -> tuple:
    # shared, not constants: PyTensor writes scalar constants into its generated C code
    v = pytensor.shared(np.array([yty, n_obs, log_det_r]), name="marginal_scalars")
    return v[0], v[1], v[2]


def _per_sigma(sigma: pt.TensorVariable | None, s: Any, n_obs: Any, log_det_r: Any) -> tuple:
    """(tau, s tau^2, log|R|) with tau = 1/sigma and log|R| = 2 N log sigma; (1.0, s,
    log_det_r) with known SEs (sigma None), which the statistics already hold."""
    if sigma is None:
        return 1.0, s, log_det_r
    tau = 1.0 / sigma
    return tau, s * tau**2, 2.0 * n_obs * pt.log(sigma)


def _project(Zy: np.ndarray, ZX: np.ndarray, beta: pt.TensorVariable) -> pt.TensorVariable:
    """Z'(y - X beta) per group, (G, q)."""
    G, q, p = ZX.shape
    if not p:
        return pt.as_tensor(Zy)
    return Zy - pt.dot(ZX.reshape(G * q, p), beta).reshape((G, q))


def nested_loglik(
    stats: NestedStats,
    beta: pt.TensorVariable,
    L1: pt.TensorVariable,
    L2: pt.TensorVariable,
    sigma: pt.TensorVariable | None,
) -> pt.TensorVariable:
    """The log-likelihood of a nested model with both levels integrated out.

    ``beta`` (p,); ``L1``, ``L2`` the lower Cholesky factors of T1 (outer) and T2 (inner);
    ``sigma`` the residual SD, or None with known SEs. The maths: module docstring.

    Examples
    --------
    >>> from scipy.stats import multivariate_normal
    >>> d = _example_design("y ~ 0 + (1 | b/c)", "aabb", "xyxy", y=[0.5, -1.0, 2.0, 0.0])
    >>> ll = nested_loglik(nested_stats(d), pt.zeros(0), pt.eye(1), pt.eye(1), pt.as_tensor(1.0))
    >>> cov = np.kron(np.eye(2), np.ones((2, 2))) + 2 * np.eye(4)  # Z1 Z1' + Z2 Z2' + I
    >>> bool(np.isclose(ll.eval(), multivariate_normal(np.zeros(4), cov).logpdf(d.y)))
    True
    """
    g = stats.inner
    q1, q2 = stats.Z1Z1.shape[1], g.ZtZ.shape[1]
    yty, n_obs, log_det_r = _scalars(g.yty, g.n_obs, g.log_det_r)
    s = _residual_sq(yty, g.Xty, g.XtX, beta, g.XtX.shape[0])
    tau, s, log_det_r = _per_sigma(sigma, s, n_obs, log_det_r)
    z1e, z2e = _project(stats.Z1y, stats.Z1X, beta) * tau, _project(g.Zty, g.ZtX, beta) * tau
    C2, a2, H = _absorb_tensor(g.ZtZ, z2e, L2 * tau, stats.Z2Z1, q2)
    A, c = _outer_terms(_matrix(stats.Z1Z1, pt.as_tensor), [z1e[:, i] for i in range(q1)], a2, H)
    lower = [(i, k) for i in range(q1) for k in range(i + 1)]
    stacked = pt.stack([A[i][k] for i, k in lower] + c, axis=1)  # (K, m)
    summed = pt.inc_subtensor(pt.zeros((stats.n_outer, len(lower) + q1))[stats.parent], stacked)
    col = {(i, k): n for n, (i, k) in enumerate(lower)}
    A_j = summed[:, [col[max(i, k), min(i, k)] for i in range(q1) for k in range(q1)]]
    c_j = summed[:, len(lower) :]
    C1, a1, _ = _absorb_tensor(A_j.reshape((stats.n_outer, q1, q1)), c_j, L1 * tau, None, q1)
    return _collapsed_loglik(n_obs, log_det_r, s, [C1, C2], a1 + a2)


def _cell_effects(
    stats: CrossedStats, effects: Sequence[Any], concatenate: Callable, index: Callable
) -> Any:
    """The sampled factors' effects of each cell side by side, (..., C, Q)."""
    parts = [index(u, stats.cell_codes[:, o]) for o, u in enumerate(effects)]
    return parts[0] if len(parts) == 1 else concatenate(parts)


def crossed_loglik(
    stats: CrossedStats,
    beta: pt.TensorVariable,
    L: pt.TensorVariable,
    effects: Sequence[pt.TensorVariable],
    sigma: pt.TensorVariable | None,
) -> pt.TensorVariable:
    """The log-likelihood of a crossed model with one factor's effects integrated out, given
    the effects ``effects`` (each (J_o, q_o)) of the sampled factors.

    ``L`` is the lower Cholesky factor of the integrated factor's T. The maths: module
    docstring and :mod:`hierbayes.backend.marginal`.

    Examples
    --------
    >>> from scipy.stats import multivariate_normal
    >>> d = _example_design("y ~ 0 + (1 | b) + (1 | c)", "abab", "xxyz", y=[0.4, -1.0, 2.0, 0.2])
    >>> u_b = pt.as_tensor([[1.0], [-1.0]])  # b sampled, c (3 groups) integrated out
    >>> ll = crossed_loglik(crossed_stats(d), pt.zeros(0), pt.eye(1), [u_b], pt.as_tensor(1.0))
    >>> Z_c = np.eye(3)[[0, 0, 1, 2]]  # rows 0 and 1 share group x of c
    >>> cov, r = Z_c @ Z_c.T + np.eye(4), [-0.6, 0.0, 1.0, 1.2]  # r = y - Z_b u_b
    >>> bool(np.isclose(ll.eval(), multivariate_normal(np.zeros(4), cov).logpdf(r)))
    True
    """
    g = stats.marg
    J, q = g.Zty.shape
    p = g.XtX.shape[0]
    yty, n_obs, log_det_r = _scalars(g.yty, g.n_obs, g.log_det_r)
    v = _cell_effects(stats, effects, lambda xs: pt.concatenate(xs, axis=1), lambda u, i: u[i])
    t = (pt.as_tensor(stats.ZZo) * v[:, None, :]).sum(axis=2)  # (C, q): Z_f'eta_o per cell
    e = _project(g.Zty, g.ZtX, beta) - pt.inc_subtensor(pt.zeros((J, q))[stats.cell_group], t)
    s = _residual_sq(yty, g.Xty, g.XtX, beta, p)
    for u, Zoy, ZoX in zip(effects, stats.Zoy, stats.ZoX, strict=True):
        s = s - 2.0 * pt.sum(u * _project(Zoy, ZoX, beta))
    s = s + pt.sum(v[:, :, None] * pt.as_tensor(stats.ZoZo) * v[:, None, :])
    tau, s, log_det_r = _per_sigma(sigma, s, n_obs, log_det_r)
    C, a, _ = _absorb_tensor(g.ZtZ, e * tau, L * tau, None, q)
    return _collapsed_loglik(n_obs, log_det_r, s, [C], a)
