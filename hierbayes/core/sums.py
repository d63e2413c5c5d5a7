"""Classical linear mixed model estimates from per-group sufficient statistics, with no rows.

The data enter only as the per-group Gram matrices ``G[j] = A_j' A_j`` of the columns
``A = [a_0 .. a_{k-1}]`` (shape (J, k, k)) and the group sizes ``n`` (J,); index lists pick
the population design ``X`` (``x_cols``), the varying columns ``Z`` (``z_cols``) and the
response (``y_col``). For y_j = X_j beta + Z_j u_j + e_j, u_j ~ N(0, T), e_j ~ N(0, sigma^2 I)
and T = L L', the matrix determinant and inversion lemmas need only q x q matrices per group:
with M_j = I + L' Z_j'Z_j L / sigma^2,

    log|V_j| = n_j log sigma^2 + log|M_j|,
    a_j' V_j^-1 b_j = (a_j'b_j - a_j'Z_j L M_j^-1 L' Z_j'b_j / sigma^2) / sigma^2,

so X'V^-1X, X'V^-1y, y'V^-1y and log|V| are sums over groups of Gram blocks. Quadratic forms
are differences of sums of squares, so data with a mean far larger than its spread lose
relative precision (centre the columns first if that matters).

Nothing here knows about PyMC or pandas; :func:`no_pooling_sums` mirrors
:func:`hierbayes.core.pooling.no_pooling` (with ``se=None``) exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from hierbayes.core.pooling import group_inverse

__all__ = ["RemlSums", "no_pooling_sums", "reml_sums", "group_loglik_sums"]

_LOG_2PI = float(np.log(2 * np.pi))


def _idx(cols: Sequence[int] | int) -> NDArray[np.intp]:
    return np.atleast_1d(np.asarray(cols, dtype=np.intp))


def _check(G: NDArray, n: NDArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    G, n = np.asarray(G, dtype=float), np.asarray(n, dtype=float)
    if G.ndim != 3 or G.shape[1] != G.shape[2] or n.shape != G.shape[:1]:
        raise ValueError(f"G must be (J, k, k) and n (J,), got {G.shape} and {n.shape}")
    return G, n


def _marginal(G: NDArray, z: NDArray, cols: NDArray, Lam: NDArray):
    """Per group, for the relative factor ``Lam`` (..., q, q) with V0_j = I + Z_j Lam Lam' Z_j':
    log|M_j|, the quadratic forms a'V0_j^-1 b of ``cols`` (..., J, m, m), M_j and P_j."""
    q = z.size
    Lt = np.swapaxes(Lam, -1, -2)[..., None, :, :]  # (..., 1, q, q)
    P = Lt @ G[:, z[:, None], cols]  # Lam' Z_j' a_j: (..., J, q, m)
    M = np.eye(q) + Lt @ G[:, z[:, None], z] @ Lam[..., None, :, :]
    chol = np.linalg.cholesky(M)  # M_j >= I: always positive definite
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    half = np.linalg.solve(chol, P)  # chol^-1 P
    W = G[:, cols[:, None], cols] - np.swapaxes(half, -1, -2) @ half
    return logdet, W, M, P


def no_pooling_sums(
    G: NDArray,
    n: NDArray,
    z_cols: Sequence[int],
    y_col: int,
    common_cols: Sequence[int] = (),
) -> tuple[NDArray, NDArray, NDArray, NDArray, float]:
    """Each group's least-squares fit of y on Z from its Gram matrix; common coefficients for
    ``common_cols``.

    The equivalent of ``hierbayes.core.pooling.no_pooling(y, Z, codes, J, X_common=...)``:
    a group is valid when ``n_j >= q`` and cond(Z_j'Z_j) < 1e10, invalid groups get NaN and
    take no part; the common coefficients come from the within-group residuals of the valid
    groups (Frisch-Waugh-Lovell), then the groups are refitted; the residual SD has
    ``sum_valid n_j - q * n_valid - n_common`` degrees of freedom (NaN when none are left).

    Parameters
    ----------
    G : (J, k, k) per-group Gram matrices A_j'A_j.
    n : (J,) group sizes.
    z_cols, y_col, common_cols : columns of A holding Z, y and the common covariates.

    Returns
    -------
    coef : (J, q) group coefficients.
    cov_unscaled : (J, q, q) (Z_j'Z_j)^-1.
    valid : (J,) bool.
    group_se : (J, q) sigma * sqrt(diag((Z_j'Z_j)^-1)).
    sigma : the pooled within-group residual SD.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 1.0], [1.0, 3.0], [1.0, 5.0], [1.0, 5.0]])  # columns 1, y
    >>> G = np.stack([A[:2].T @ A[:2], A[2:].T @ A[2:]])
    >>> coef, cov, valid, se, sigma = no_pooling_sums(G, np.array([2, 2]), [0], 1)
    >>> coef.ravel().tolist(), round(sigma, 6)
    ([2.0, 5.0], 1.0)
    """
    G, n = _check(G, n)
    z, c, y = _idx(z_cols), _idx(common_cols), _idx(y_col)
    q = z.size
    cov, valid = group_inverse(G[:, z[:, None], z], n)
    cols = np.concatenate([c, y])
    gz = G[:, z[:, None], cols]  # (J, q, m)
    # Gram of the within-group residuals of [common, y], summed over the valid groups
    within = (G[:, cols[:, None], cols] - np.swapaxes(gz, 1, 2) @ cov @ gz)[valid].sum(0)
    gamma = np.linalg.solve(within[:-1, :-1], within[:-1, -1]) if c.size else np.zeros(0)
    v = np.append(-gamma, 1.0)
    coef = np.einsum("jkl,jlm,m->jk", cov, gz, v)
    coef[~valid] = np.nan
    cov[~valid] = np.nan
    rss = max(float(v @ within @ v), 0.0)
    dof = n[valid].sum() - q * valid.sum() - c.size
    sigma = float(np.sqrt(rss / dof)) if dof > 0 else float("nan")
    group_se = sigma * np.sqrt(np.einsum("jkk->jk", cov))
    return coef, cov, valid, group_se, sigma


@dataclass(frozen=True)
class RemlSums:
    """REML fit of a one-factor linear mixed model (see :func:`reml_sums`).

    ``u`` (J, q) are the conditional modes (BLUPs) of the group effects and ``u_cov``
    (J, q, q) their covariance given y with beta, T and sigma at the estimates,
    (Z_j'Z_j / sigma^2 + T^-1)^-1. ``reml_loglik`` is in statsmodels' convention.
    """

    beta: NDArray[np.float64]
    cov_beta: NDArray[np.float64]
    T: NDArray[np.float64]
    sigma: float
    u: NDArray[np.float64]
    u_cov: NDArray[np.float64]
    reml_loglik: float
    converged: bool


def _tril(blocks: tuple[tuple[int, ...], ...], q: int):
    """Rows, columns and the diagonal mask of the free entries of a block-diagonal factor."""
    terms = sorted(t for b in blocks for t in b)
    if terms != list(range(q)):
        raise ValueError(f"blocks {blocks!r} must partition the {q} varying terms")
    rows, cols = [], []
    for block in blocks:
        b = np.asarray(block, dtype=np.intp)
        r, s = np.tril_indices(b.size)
        rows.extend(b[r])
        cols.extend(b[s])
    rows, cols = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
    return rows, cols, rows == cols


def reml_sums(
    G: NDArray,
    n: NDArray,
    x_cols: Sequence[int],
    z_cols: Sequence[int],
    y_col: int,
    blocks: tuple[tuple[int, ...], ...] | None = None,
) -> RemlSums:
    """REML estimates of y = X beta + Z u_j + e from per-group Gram matrices.

    T is block-diagonal by ``blocks``, tuples of term indices into ``z_cols`` (None: one block,
    unstructured T; ``((0,), (1,))``: diagonal T). As in lme4, T = sigma^2 Lam Lam' with a
    block-diagonal lower-triangular relative factor ``Lam`` whose diagonal is bounded at 0
    (so a singular T is reachable); beta and sigma^2 are profiled out and the profiled REML
    criterion is minimised over ``Lam`` by L-BFGS-B from two starts (per-group moments and
    ``Lam = I``), keeping the better.

    ``reml_loglik`` follows statsmodels' ``MixedLMResults.llf`` for ``reml=True``:
    -(log|V| + log|X'V^-1X| + (N - p) log(2 pi) + r'V^-1r) / 2 at the optimum (r = y - X beta;
    also lme4's -REML criterion / 2), without the +log|X'X| / 2 that some programs add.
    ``cov_beta`` is sigma^2 (X'V0^-1X)^-1.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> codes = np.repeat(np.arange(30), 6)
    >>> y = 2.0 + rng.normal(size=30)[codes] + 0.5 * rng.normal(size=codes.size)
    >>> A = np.column_stack([np.ones_like(y), y])
    >>> G = np.einsum("ni,nk,nj->jik", A, A, np.eye(30)[codes])
    >>> fit = reml_sums(G, np.full(30, 6), [0], [0], 1)
    >>> fit.converged, fit.u.shape, bool(0.3 < fit.sigma < 0.7)
    (True, (30, 1), True)
    """
    G, n = _check(G, n)
    x, z, y = _idx(x_cols), _idx(z_cols), _idx(y_col)
    p, q, N = x.size, z.size, float(n.sum())
    rows, cols, diag = _tril(((*range(q),),) if blocks is None else tuple(blocks), q)
    sub = np.concatenate([x, y])
    dof = N - p
    # REML does not move when y shifts by X b0 (beta shifts back): with b0 the pooled least
    # squares fit, the quadratic forms stay small and the criterion smooth for y far from 0
    total = G.sum(0)
    b0 = np.linalg.lstsq(total[x[:, None], x], total[x, y[0]], rcond=None)[0]
    shift = np.eye(G.shape[1])
    shift[x, y[0]] = -b0
    G = shift.T @ G @ shift

    def factor(theta: NDArray) -> NDArray:
        Lam = np.zeros((q, q))
        Lam[rows, cols] = theta
        return Lam

    def profile(theta: NDArray):
        logdet, W, M, P = _marginal(G, z, sub, factor(theta))
        S = W.sum(0)
        chol = np.linalg.cholesky(S[:p, :p])
        beta = np.linalg.solve(S[:p, :p], S[:p, p])
        qf = S[p, p] - S[:p, p] @ beta
        ld_x = 2.0 * np.log(np.diag(chol)).sum()
        nll = 0.5 * (logdet.sum() + ld_x + dof * (np.log(2 * np.pi * qf / dof) + 1.0))
        return nll, beta, qf / dof, S, M, P

    def objective(theta: NDArray) -> float:
        try:
            value = profile(theta)[0]
        except np.linalg.LinAlgError:
            return np.inf
        return float(value) if np.isfinite(value) else np.inf

    def gradient(theta: NDArray) -> NDArray:  # central differences: cheap, accurate enough
        h = 1e-6 * np.maximum(np.abs(theta), 1.0)
        grad = np.empty_like(theta)
        for i in range(theta.size):
            e = np.zeros_like(theta)
            e[i] = h[i]
            grad[i] = (objective(theta + e) - objective(theta - e)) / (2 * h[i])
        return grad

    starts = [np.where(diag, 1.0, 0.0)]
    coef, _, valid, _, sigma0 = no_pooling_sums(G, n, z, int(y[0]))
    if valid.sum() > q and np.isfinite(sigma0) and sigma0 > 0:
        T0 = np.cov(coef[valid], rowvar=False).reshape(q, q) / sigma0**2
        mask = np.zeros((q, q), dtype=bool)
        mask[rows, cols] = mask[cols, rows] = True
        T0 = np.where(mask, T0, 0.0) + 1e-6 * np.eye(q)
        try:
            starts.insert(0, np.linalg.cholesky(T0)[rows, cols])
        except np.linalg.LinAlgError:
            pass
    bounds = [(0.0, None) if d else (None, None) for d in diag]
    best = None
    for theta0 in starts:
        res = optimize.minimize(
            objective,
            theta0,
            jac=gradient,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000},
        )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise np.linalg.LinAlgError("the REML criterion is not finite at any start")
    # a line search stopped by rounding at the optimum is not a failure: check the gradient
    grad = gradient(best.x)
    grad[diag & (best.x <= 0) & (grad > 0)] = 0.0  # pushing against the bound at 0
    converged = best.success or np.abs(grad).max() <= 1e-6 * max(1.0, abs(best.fun))
    nll, beta, sigma2, S, M, P = profile(best.x)
    Lam = factor(best.x)
    Minv = np.linalg.inv(M)
    zr = P @ np.append(-beta, 1.0)  # Lam' Z_j' (y_j - X_j beta)
    u = np.einsum("kl,jlm,jm->jk", Lam, Minv, zr)
    u_cov = sigma2 * (Lam @ Minv @ Lam.T)
    return RemlSums(
        beta=beta + b0,
        cov_beta=sigma2 * np.linalg.inv(S[:p, :p]),
        T=sigma2 * (Lam @ Lam.T),
        sigma=float(np.sqrt(sigma2)),
        u=u,
        u_cov=u_cov,
        reml_loglik=float(-nll),
        converged=bool(converged),
    )


def group_loglik_sums(
    G: NDArray,
    n: NDArray,
    x_cols: Sequence[int],
    z_cols: Sequence[int],
    y_col: int,
    beta: NDArray,
    L: NDArray,
    sigma: NDArray | float,
    *,
    chunk: int = 32,
    dtype: type = np.float64,
) -> NDArray:
    """Each group's marginal log-likelihood log N(y_j | X_j beta, Z_j L L' Z_j' + sigma^2 I).

    Parameters
    ----------
    G, n : (J, k, k) per-group Gram matrices and (J,) group sizes.
    x_cols, z_cols, y_col : columns of A holding X (p), Z (q) and y.
    beta, L, sigma : (p,), (q, q) Cholesky factor of T and scalar, or batched over S draws as
        (S, p), (S, q, q) and (S,).
    chunk : draws evaluated at a time (memory about 4 chunk J q^2 numbers).
    dtype : of the result (computed in float64 either way).

    Returns
    -------
    (J,) or, for batched parameters, (S, J).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 0.5], [1.0, -0.5]])  # columns 1, y; one group of two rows
    >>> G, n = (A.T @ A)[None], np.array([2.0])
    >>> ll = group_loglik_sums(G, n, [0], [0], 1, np.zeros(1), np.ones((1, 1)), 1.0)
    >>> from scipy.stats import multivariate_normal
    >>> bool(np.isclose(ll[0], multivariate_normal([0, 0], [[2, 1], [1, 2]]).logpdf(A[:, 1])))
    True
    """
    G, n = _check(G, n)
    x, z, y = _idx(x_cols), _idx(z_cols), _idx(y_col)
    beta, L = np.asarray(beta, dtype=float), np.asarray(L, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    single = sigma.ndim == 0
    beta, L, sigma = np.atleast_2d(beta), L.reshape((-1, *L.shape[-2:])), np.atleast_1d(sigma)
    J, q = G.shape[0], z.size
    sub = np.concatenate([x, y])
    m = sub.size
    G_rr = G[:, sub[:, None], sub].reshape(J, m * m)  # for r_j'r_j, r = y - X beta
    G_zr = G[:, z[:, None], sub].reshape(J * q, m)  # for Z_j'r_j
    G_zz = G[:, z[:, None], z].reshape(J, q * q)
    out = np.empty((sigma.size, J), dtype=dtype)
    for start in range(0, sigma.size, chunk):
        s = slice(start, start + chunk)
        v = np.concatenate([-beta[s], np.ones((len(sigma[s]), 1))], axis=1)  # (S, m)
        S = v.shape[0]
        # every product below is one matrix product over the groups (BLAS), not S x J small ones
        rr = (v[:, :, None] * v[:, None, :]).reshape(S, m * m) @ G_rr.T  # (S, J)
        Lam = L[s] / sigma[s, None, None]  # T / sigma^2 = Lam Lam'
        zr = (G_zr @ v.T).reshape(J, q, S).transpose(2, 1, 0)  # Z_j'r_j, (S, q, J)
        w = np.swapaxes(Lam, 1, 2) @ zr  # Lam' Z_j'r_j, (S, q, J)
        K = (Lam[:, :, None, :, None] * Lam[:, None, :, None, :]).reshape(S, q * q, q * q)
        # B[s, a q + b, j] = (Lam' Z_j'Z_j Lam)_ab
        B = (K.transpose(0, 2, 1).reshape(S * q * q, q * q) @ G_zz.T).reshape(S, q * q, J)
        logdet, quad = _logdet_quad(B, w, q)
        var = sigma[s, None] ** 2
        out[s] = -0.5 * (n * (_LOG_2PI + np.log(var)) + logdet + (rr - quad) / var)
    return out[0] if single else out


def _logdet_quad(B: NDArray, w: NDArray, q: int) -> tuple[NDArray, NDArray]:
    """log|M| and w'M^-1 w with M = I + B, for B (S, q * q, J) (entry a q + b of each
    group's q x q matrix) and w (S, q, J); written out for q <= 2, by Cholesky otherwise."""
    if q == 1:
        M = 1.0 + B[:, 0]
        return np.log(M), w[:, 0] ** 2 / M
    if q == 2:
        a, b, c = 1.0 + B[:, 0], B[:, 1], 1.0 + B[:, 3]
        det = a * c - b * b
        w0, w1 = w[:, 0], w[:, 1]
        return np.log(det), (c * w0 * w0 - 2.0 * b * w0 * w1 + a * w1 * w1) / det
    M = np.eye(q) + np.moveaxis(B, 1, -1).reshape(*B.shape[::2], q, q)  # (S, J, q, q)
    chol = np.linalg.cholesky(M)
    half = np.linalg.solve(chol, np.moveaxis(w, 1, -1)[..., None])[..., 0]
    return 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1), (half**2).sum(-1)
