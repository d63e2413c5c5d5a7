"""Numerical core of the pooling report: baselines and pooling measures on plain arrays.

* No pooling: each group's coefficients from its own data alone, by weighted least
  squares of y on the factor's varying columns ``Z``; population-level columns that do not
  vary by the factor keep one common coefficient (Gelman & Hill's no-pooling regression,
  ``lm(y ~ x + factor(g))``), found by the within-group (Frisch-Waugh-Lovell) projection.
  With known standard errors the weights are 1/se^2 and the no-pooling SE is exact; with an
  estimated residual SD it is the pooled within-group SD times the group's
  sqrt((Z_j'Z_j)^-1), so a one-observation group still gets one. A group whose ``Z_j'Z_j`` is
  singular gets NaN.
* Complete pooling: one weighted least-squares fit of y on ``X`` for all data.
* Reliability (Raudenbush & Bryk's lambda_j), per posterior draw s:
  ``diag(T_s (T_s + sigma_s^2 C_j)^-1)`` with ``C_j = (Z_j' W Z_j)^-1`` and ``T_s`` the
  group-level covariance; its posterior mean is reported. With one coefficient this is
  ``tau^2 / (tau^2 + se_j^2)``.
* Pooling factor (Gelman & Pardoe 2006): ``1 - Var_j(E[u_j]) / E[Var_j(u_j)]``.

Nothing here knows about PyMC or ArviZ; :mod:`hierbayes.analysis.report` puts it on labelled axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "level2_map",
    "GroupFits",
    "group_crossprod",
    "grouped_irls",
    "grouped_wls",
    "group_inverse",
    "wls_from_sums",
    "wls",
    "no_pooling",
    "reliability",
    "pooling_factor",
    "shrinkage",
]

_COND_MAX = 1e10


def level2_map(
    X: np.ndarray, Z: np.ndarray, codes: np.ndarray, J: int, rtol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray]:
    """How population columns enter the group coefficients: the level-2 model b_j = W_j gamma.

    Column ``c`` of ``X`` is a level-2 column of varying coefficient ``k`` when, in every
    group, ``X[:, c] = Z[:, k] * v_j`` for a value ``v_j`` constant within the group: the
    intercept and a varying slope (``v_j = 1``), a group-level predictor with a varying
    intercept (``v_j = w_j``), a cross-level interaction ``x:w`` with a varying slope of ``x``.
    Other columns are level-1 terms with one common coefficient.

    Returns ``W`` (J, q, p) with ``W[j, k, c] = v_j`` and the mask (p,) of level-2 columns.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([0, 0, 1, 1])
    >>> x, w = np.array([1.0, 2.0, 3.0, 5.0]), np.array([0.5, 0.5, 2.0, 2.0])
    >>> X = np.column_stack([np.ones(4), x, w, x * w, x**2])  # 1, x, w, x:w, x^2
    >>> Z = np.column_stack([np.ones(4), x])                   # (x | g)
    >>> W, level2 = level2_map(X, Z, codes, 2)
    >>> level2.tolist()
    [True, True, True, True, False]
    >>> W[1].tolist()  # group 1: b_0 = g_1 + 2 g_w, b_1 = g_x + 2 g_xw
    [[1.0, 0.0, 2.0, 0.0, 0.0], [0.0, 1.0, 0.0, 2.0, 0.0]]
    """
    n, p = X.shape
    q = Z.shape[1]
    W = np.zeros((J, q, p))
    level2 = np.zeros(p, dtype=bool)
    for c in range(p):
        scale = max(float(np.max(np.abs(X[:, c]))), 1.0)
        for k in range(q):
            nz = Z[:, k] != 0
            if np.any(np.abs(X[~nz, c]) > rtol * scale):
                continue
            ratio = np.zeros(n)
            with np.errstate(over="ignore"):  # a subnormal Z entry: the ratio is not finite
                ratio[nz] = X[nz, c] / Z[nz, k]
            if not np.all(np.isfinite(ratio)):
                continue
            per_group = np.bincount(codes[nz], ratio[nz], minlength=J) / np.maximum(
                np.bincount(codes[nz], minlength=J), 1
            )
            if np.all(np.abs(ratio[nz] - per_group[codes[nz]]) <= rtol * scale):
                W[:, k, c] = per_group
                level2[c] = True
                break
    return W, level2


def wls(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares: coefficients and the unscaled covariance (X'WX)^-1.

    Examples
    --------
    >>> import numpy as np
    >>> coef, cov = wls(np.ones((2, 1)), np.array([1.0, 3.0]), np.array([1.0, 3.0]))
    >>> float(coef[0]), float(cov[0, 0])
    (2.5, 0.25)
    """
    xtwx = X.T @ (X * w[:, None])
    cov = np.linalg.inv(xtwx)
    return cov @ (X.T @ (w * y)), cov


def group_crossprod(A: np.ndarray, B: np.ndarray, codes: np.ndarray, J: int) -> np.ndarray:
    """Per-group cross-products A_j' B_j, shape (J, a, b), by bincount in O(N a b).

    Examples
    --------
    >>> import numpy as np
    >>> group_crossprod(np.ones((3, 1)), np.array([[1.0], [2.0], [4.0]]),
    ...                 np.array([0, 0, 1]), 2).ravel().tolist()
    [3.0, 4.0]
    """
    out = np.empty((J, A.shape[1], B.shape[1]))
    for k in range(A.shape[1]):
        for m in range(B.shape[1]):
            out[:, k, m] = np.bincount(codes, A[:, k] * B[:, m], minlength=J)
    return out


@dataclass(frozen=True)
class GroupFits:
    """Per-group weighted least squares: ``coef`` (J, q), ``cov`` (J, q, q) unscaled."""

    coef: np.ndarray
    cov: np.ndarray
    valid: np.ndarray


def grouped_wls(
    Z: np.ndarray, y: np.ndarray, w: np.ndarray, codes: np.ndarray, J: int
) -> GroupFits:
    """Regress ``y`` on ``Z`` separately in each group, from per-group sums (O(N q^2)).

    Examples
    --------
    >>> import numpy as np
    >>> fits = grouped_wls(np.ones((4, 1)), np.array([1.0, 3.0, 5.0, 5.0]), np.ones(4),
    ...                    np.array([0, 0, 1, 1]), 2)
    >>> fits.coef.ravel().tolist()
    [2.0, 5.0]
    """
    Zw = Z * w[:, None]
    ztwz = group_crossprod(Zw, Z, codes, J)
    ztwy = group_crossprod(Zw, y[:, None], codes, J)[:, :, 0]
    return wls_from_sums(ztwz, ztwy, np.bincount(codes, minlength=J))


def group_inverse(ztwz: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Z_j'W_jZ_j)^-1 (J, q, q) of the groups that can have their own fit, and which those
    are (J,): at least q rows and a condition number below 1e10 (the others: the identity's
    inverse, for the caller to mask).

    Examples
    --------
    >>> import numpy as np
    >>> cov, valid = group_inverse(np.array([[[4.0]], [[0.0]]]), np.array([4, 0]))
    >>> cov.ravel().tolist(), valid.tolist()
    ([0.25, 1.0], [True, False])
    """
    q = ztwz.shape[1]
    valid = np.asarray(counts) >= q
    valid[valid] = np.linalg.cond(ztwz[valid]) < _COND_MAX
    return np.linalg.inv(np.where(valid[:, None, None], ztwz, np.eye(q))), valid


def wls_from_sums(ztwz: np.ndarray, ztwy: np.ndarray, counts: np.ndarray) -> GroupFits:
    """Each group's weighted least squares from its sums Z_j'W_jZ_j (J, q, q) and Z_j'W_jy_j
    (J, q); groups without their own fit (:func:`group_inverse`) get NaN.

    Examples
    --------
    >>> import numpy as np
    >>> wls_from_sums(np.array([[[2.0]]]), np.array([[6.0]]), np.array([2])).coef.tolist()
    [[3.0]]
    """
    cov, valid = group_inverse(ztwz, counts)
    coef = np.einsum("jkl,jl->jk", cov, ztwy)
    coef[~valid] = np.nan
    cov[~valid] = np.nan
    return GroupFits(coef=coef, cov=cov, valid=valid)


def grouped_irls(
    Z: np.ndarray,
    y: np.ndarray,
    family,
    codes: np.ndarray,
    J: int,
    *,
    trials: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    aux: dict | None = None,
    weights: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-9,
) -> GroupFits:
    """Maximum-likelihood GLM fits per group by iteratively reweighted least squares.

    ``family.irls(eta, y, trials, aux)`` gives each step's working response and weights,
    with the auxiliary parameters ``aux`` held fixed; ``weights`` multiply each row's
    log-likelihood. ``cov`` is the inverse Fisher information (Z_j' W Z_j)^-1. A group
    whose fit does not converge, as under complete separation in a logistic fit, gets NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import POISSON
    >>> fits = grouped_irls(np.ones((4, 1)), np.array([1.0, 3.0, 4.0, 4.0]), POISSON,
    ...                     np.array([0, 0, 1, 1]), 2)
    >>> np.exp(fits.coef[:, 0]).round(6).tolist()  # the group means
    [2.0, 4.0]
    """
    offset = np.zeros_like(y) if offset is None else offset

    # the likelihood the steps climb; a Gaussian's sigma does not move its maximum
    lik_aux = {"sigma": 1.0, **(aux or {})}
    identity = family.link == "identity"  # one weighted least-squares step is exact

    def loglik(c: np.ndarray) -> np.ndarray:
        """Each group's log-likelihood at coefficients ``c`` (-inf where not finite)."""
        if identity:
            return np.zeros(J)
        eta = offset + np.einsum("nk,nk->n", Z, c[codes])
        with np.errstate(all="ignore"):
            ll = family.log_density(y, eta, lik_aux, trials=trials)
        ll = ll if weights is None else ll * weights
        total = np.bincount(codes, weights=np.where(np.isnan(ll), -np.inf, ll), minlength=J)
        return np.where(np.isnan(total), -np.inf, total)

    coef = np.zeros((J, Z.shape[1]))
    current = loglik(coef)
    converged = stalled = np.zeros(J, dtype=bool)
    for _ in range(max_iter):
        eta = offset + np.einsum("nk,nk->n", Z, coef[codes])
        with np.errstate(all="ignore"):
            z, w = family.irls(eta, y, trials, aux)
        if weights is not None:
            w = w * weights
        fits = grouped_wls(Z, z - offset, w, codes, J)
        step = np.nan_to_num(fits.coef) - coef
        # step-halving: a full Fisher step can overshoot (counts far from 1 seen from
        # eta = 0 overflow exp(eta)), so a group whose likelihood would fall halves its step
        for _ in range(40):
            trial = loglik(coef + step)
            worse = ~(trial >= current - 1e-10 * np.abs(current))
            if not worse.any():
                break
            step[worse] *= 0.5
        stalled = worse & np.any(np.abs(step) > tol, axis=1)
        step[worse] = 0.0
        new = coef + step
        converged = np.all(np.abs(new - coef) <= tol * (1 + np.abs(new)), axis=1) & ~stalled
        coef, current = new, np.where(worse, current, trial)
        if (converged | stalled).all():
            break
    valid = fits.valid & converged & np.all(np.abs(coef) < 30, axis=1)
    coef = np.where(valid[:, None], coef, np.nan)
    cov = np.where(valid[:, None, None], fits.cov, np.nan)
    return GroupFits(coef=coef, cov=cov, valid=valid)


def _within(Z, v, w, codes, J):
    """Residual of ``v`` after each group's own regression on ``Z``."""
    fits = grouped_wls(Z, v, w, codes, J)
    return v - np.einsum("nk,nk->n", Z, np.nan_to_num(fits.coef)[codes])


def no_pooling(
    y: np.ndarray,
    Z: np.ndarray,
    codes: np.ndarray,
    J: int,
    *,
    X_common: np.ndarray | None = None,
    se: np.ndarray | None = None,
) -> tuple[GroupFits, np.ndarray, float]:
    """Each group on its own data; common coefficients for the columns of ``X_common``.

    Returns the group fits, the no-pooling standard errors (J, q) and the residual SD
    (1.0 when ``se`` is known, NaN when the data leave no degrees of freedom).

    Examples
    --------
    >>> import numpy as np
    >>> fits, se, sigma = no_pooling(np.array([28.0, 8.0]), np.ones((2, 1)), np.array([0, 1]),
    ...                              2, se=np.array([15.0, 10.0]))
    >>> fits.coef.ravel().tolist(), se.ravel().tolist(), sigma
    ([28.0, 8.0], [15.0, 10.0], 1.0)
    """
    w = np.ones_like(y) if se is None else 1.0 / se**2
    n_common = 0 if X_common is None else X_common.shape[1]
    first = grouped_wls(Z, y, w, codes, J)
    keep = first.valid[codes]  # rows of groups that can be fitted at all
    y_adj = y
    if n_common:
        y_r = _within(Z, y, w, codes, J)
        X_r = np.column_stack([_within(Z, X_common[:, c], w, codes, J) for c in range(n_common)])
        gamma, _ = wls(X_r[keep], y_r[keep], w[keep])
        y_adj = y - X_common @ gamma
    fits = grouped_wls(Z, y_adj, w, codes, J) if n_common else first
    if se is not None:
        sigma = 1.0
    else:
        resid = (y_adj - np.einsum("nk,nk->n", Z, np.nan_to_num(fits.coef)[codes]))[keep]
        dof = keep.sum() - Z.shape[1] * fits.valid.sum() - n_common
        sigma = float(np.sqrt(resid @ resid / dof)) if dof > 0 else float("nan")
    group_se = sigma * np.sqrt(np.einsum("jkk->jk", fits.cov))
    return fits, group_se, sigma


def reliability(
    sd: np.ndarray, cov_unscaled: np.ndarray, sigma: np.ndarray | None = None, chunk: int = 256
) -> np.ndarray:
    """Posterior mean of diag(T (T + sigma^2 C_j)^-1) for each group j and coefficient k.

    Parameters
    ----------
    sd : (S, q) draws of the group-level SDs (T = diag(sd^2)).
    cov_unscaled : (J, q, q) the groups' C_j; NaN for groups without their own fit.
    sigma : (S,) draws of the residual SD, (S, J) of each group's when it varies by group
        (its root mean square over the group's rows), or None when standard errors are known.

    Examples
    --------
    >>> import numpy as np
    >>> r = reliability(np.full((10, 1), 3.0), np.full((1, 1, 1), 16.0))
    >>> round(float(r[0, 0]), 4)  # 9 / (9 + 16)
    0.36
    """
    S, q = sd.shape
    sigma2 = np.ones((S, 1)) if sigma is None else np.asarray(sigma).reshape(S, -1) ** 2
    total = np.zeros(cov_unscaled.shape[:2])
    for start in range(0, S, chunk):
        T = np.einsum("sk,kl->skl", sd[start : start + chunk] ** 2, np.eye(q))  # (s, q, q)
        V = sigma2[start : start + chunk, :, None, None] * cov_unscaled[None]  # (s, J, q, q)
        A = T[:, None] + V
        ok = np.isfinite(A).all(axis=(-1, -2))
        A = np.where(ok[..., None, None], A, np.eye(q))
        lam = np.einsum("sjkk->sjk", T[:, None] @ np.linalg.inv(A))
        lam[~ok] = np.nan
        total += lam.sum(axis=0)
    return total / S


def pooling_factor(u: np.ndarray) -> np.ndarray:
    """Gelman & Pardoe's pooling factor from draws ``u`` (S, J, q) of group deviations.

    0 means no pooling (the group deviations are estimated sharply), 1 complete pooling.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sharp = np.array([-1.0, 0.0, 1.0])[None, :, None] + 0.01 * rng.normal(size=(500, 3, 1))
    >>> round(float(pooling_factor(sharp)[0]), 2)
    0.0
    """
    between = np.var(u.mean(axis=0), axis=0, ddof=1)
    within = np.mean(np.var(u, axis=1, ddof=1), axis=0)
    return 1.0 - between / within


def shrinkage(no: np.ndarray, partial: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """(no - partial) / (no - complete): 0 keeps the group's own estimate, 1 pools fully.

    NaN where the no-pooling and complete-pooling estimates coincide. Values above 1 (or
    below 0) arise when the posterior pulls a group towards a population mean other than the
    complete-pooling estimate, e.g. a mean moved by its prior; and for a group whose own
    estimate is near the pooled one the ratio is unstable. Read it with the reliability.

    Examples
    --------
    >>> import numpy as np
    >>> shrinkage(np.array([28.0]), np.array([10.0]), np.array([7.7])).round(3).tolist()
    [0.887]
    """
    gap = no - complete
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (no - partial) / gap, np.nan)
