"""Empirical Bayes: the frequentist side of a multilevel analysis.

REML estimates of a Gaussian model with at most one grouping factor (statsmodels'
``MixedLM``), and from them Raudenbush & Bryk's (2002, ch. 3-4) empirical-Bayes quantities
for every group ``j``:

* ``ols``: beta_hat_j, the group's own least-squares fit of ``y_j - X_common gamma_hat`` on
  ``Z_j`` (``X_common`` holds the level-1 population columns, which keep one common
  coefficient), with ``V_j = sigma^2 (Z_j'Z_j)^-1`` (``ols_se`` is sqrt diag V_j);
* ``reliability``: the diagonal of ``Lambda_j = T (T + V_j)^-1``;
* ``eb``: ``beta*_j = Lambda_j beta_hat_j + (I - Lambda_j) W_j gamma_hat``, the shrinkage of the
  group's own fit towards its level-2 prediction ``W_j gamma_hat`` (equal to lme4's ``coef()``);
* ``lower``, ``upper``: ``beta*_j -/+ z sqrt(diag V*_j)``, z = 1.959964 the normal 0.975
  quantile (R&B's 1.96), with
  ``V*_j = Lambda_j V_j + (I - Lambda_j) W_j Var(gamma_hat) W_j' (I - Lambda_j)'``, the
  conditional variance ``(V_j^-1 + T^-1)^-1`` plus the uncertainty of gamma_hat.

A group too small or too collinear for its own fit (``n_j < q`` or a singular ``Z_j'Z_j``) has
no beta_hat_j; it gets the equivalent BLUP form, which needs neither ``(Z_j'Z_j)^-1`` nor
``T^-1``: with ``G_j = T (Z_j'Z_j T + sigma^2 I)^-1``, ``beta*_j = W_j gamma_hat +
G_j Z_j'(y_j - X_j gamma_hat)``, ``Lambda_j = G_j Z_j'Z_j`` and the conditional variance
``sigma^2 G_j``. Everything is computed from per-group sums in O(N q p).

Without a grouping factor the model is ordinary least squares.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from hierbayes.core.pooling import group_crossprod, wls, wls_from_sums
from hierbayes.core.sums import reml_sums
from hierbayes.errors import DataError, SpecError
from hierbayes.spec.design import Design, FactorDesign

__all__ = ["EmpiricalBayes", "empirical_bayes", "TABLE_COLUMNS"]

#: Columns of :attr:`EmpiricalBayes.table`, in order.
TABLE_COLUMNS = ("group", "term", "n", "ols", "ols_se", "eb", "lower", "upper", "reliability")

#: Normal 0.975 quantile (1.959964) of the reported 95% intervals.
_Z95 = float(norm.ppf(0.975))

#: REML optimizers tried, each with the tolerance that reaches the REML optimum to about
#: 1e-10 in the log-likelihood on the London Exam models; the best REML log-likelihood wins.
#: Powell's derivative-free search ignores statsmodels' ``free`` mask, so models with
#: uncorrelated blocks use gradient methods only. L-BFGS is not used unconstrained: from
#: statsmodels' default start it can step onto the boundary T = 0 of a one-term model.
_OPTIMIZERS: tuple[tuple[str, dict[str, float]], ...] = (
    ("powell", {"ftol": 1e-10}),
    ("bfgs", {"gtol": 1e-7}),
    ("cg", {"gtol": 1e-7}),
)
_OPTIMIZERS_CONSTRAINED: tuple[tuple[str, dict[str, float]], ...] = (
    ("bfgs", {"gtol": 1e-7}),
    ("cg", {"gtol": 1e-7}),
    ("lbfgs", {}),
)


@dataclass(frozen=True, eq=False)
class EmpiricalBayes:
    """REML estimates and empirical-Bayes group coefficients of a Gaussian model.

    Attributes
    ----------
    factor : str or None
        The grouping factor, or None for a model without one (then OLS).
    fixed : pandas.Series
        gamma_hat, indexed by the population-level term names.
    fixed_se : pandas.Series
        Standard errors of gamma_hat: sqrt diag of ``sigma^2 (X' M^-1 X)^-1`` (GLS, as lme4's
        ``vcov``), or of ``sigma^2 (X'X)^-1`` for OLS.
    fixed_cov : pandas.DataFrame
        That whole covariance matrix, Var(gamma_hat), rows and columns named by term.
    cov_re : pandas.DataFrame
        T, the covariance of the varying coefficients (index and columns: the factor's
        terms); empty without a factor.
    sigma2 : float
        Residual variance (REML; OLS: RSS / (N - p)).
    table : pandas.DataFrame
        One row per (group, term) with columns :data:`TABLE_COLUMNS`: ``n`` observations,
        the group's own fit ``ols`` and ``ols_se`` (NaN when it has none), the
        empirical-Bayes estimate ``eb`` with its 95% interval ``lower``, ``upper`` and
        ``reliability``, the diagonal of Lambda_j. Empty (same columns) without a factor.
        With one varying coefficient the reliability is ``tau^2 / (tau^2 + V_j)``, in (0, 1)
        and increasing with n_j; with a correlated T, Lambda_j is a matrix weight and a
        coefficient the group's data barely inform can get a diagonal entry slightly
        outside (0, 1) (borrowing strength through the correlation).
    notes : tuple of str
        Groups without their own OLS fit, and any warning of the REML fit.
    method : str
        ``"OLS"`` or ``"REML (statsmodels MixedLM, <optimizer>)"``.
    loglik : float
        The maximised REML log-likelihood (lme4's REML criterion is ``-2 * loglik``); for OLS
        the REML log-likelihood of the linear model, so the two are comparable for models
        with the same population-level terms.
    n_obs : int
        Number of observations.
    """

    factor: str | None
    fixed: pd.Series
    fixed_se: pd.Series
    cov_re: pd.DataFrame
    sigma2: float
    table: pd.DataFrame
    notes: tuple[str, ...]
    method: str
    loglik: float
    n_obs: int
    fixed_cov: pd.DataFrame | None = None

    @property
    def residual_sd(self) -> float:
        """sqrt(sigma2)."""
        return float(np.sqrt(self.sigma2))

    def __repr__(self) -> str:
        groups = (
            f", {self.table['group'].nunique()} groups of {self.factor!r}" if self.factor else ""
        )
        lines = [f"EmpiricalBayes: {self.method}, {self.n_obs} observations{groups}"]
        lines.append("  fixed effects (estimate, se):")
        width = max((len(str(k)) for k in self.fixed.index), default=0)
        for name, est, se in zip(self.fixed.index, self.fixed, self.fixed_se, strict=True):
            lines.append(f"    {name:<{width}}  {est: .6g}  ({se:.4g})")
        if self.fixed.empty:
            lines.append("    (none)")
        if self.factor is not None:
            lines.append(f"  cov_re (T) of {self.factor!r}:")
            for row in self.cov_re.to_string(float_format=lambda v: f"{v:.6g}").splitlines():
                lines.append(f"    {row}")
        lines.append(f"  sigma^2 {self.sigma2:.6g} (residual SD {self.residual_sd:.4g})")
        if self.factor is not None:
            lines.append("  table: one row per (group, term); columns " + ", ".join(TABLE_COLUMNS))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def unavailable(design: Design) -> str | None:
    """Why empirical Bayes cannot be computed for ``design``, or None when it can."""
    family = design.family
    if family.name != "gaussian" or family.link != "identity":
        return (
            "empirical Bayes needs the gaussian family (identity link); this model has "
            f"family {family.name!r} with the {family.link} link"
        )
    if design.se is not None:
        return (
            "empirical Bayes here estimates the residual variance sigma^2, but this model has "
            "known standard errors (se=...): refit without se= or use the Bayesian fit"
        )
    if design.weights is not None:
        return (
            "empirical Bayes here uses statsmodels' MixedLM, which takes no observation "
            "weights: use the Bayesian fit, or refit without weights="
        )
    if design.dpars:
        return (
            "empirical Bayes here uses statsmodels' MixedLM, whose residual variance is one "
            f"number: use the Bayesian fit for {design.dpars[0].name}={design.dpars[0].rhs!r}"
        )
    if len(design.factors) > 1:
        names = ", ".join(repr(f.name) for f in design.factors)
        return (
            f"empirical Bayes supports at most one grouping factor; this model has "
            f"{len(design.factors)} ({names}): drop all but one of them"
        )
    return None


def empirical_bayes(model: Any) -> EmpiricalBayes:
    """REML estimates and Raudenbush & Bryk's empirical-Bayes quantities of a model.

    Parameters
    ----------
    model : hierbayes.Model or Design
        A Gaussian model (or its design) with an estimated residual SD (no ``se=``) and
        zero or one grouping factor. Correlated ``(x | g)``, uncorrelated ``(x || g)`` and
        intercept-only ``(1 | g)`` terms are all supported; uncorrelated blocks get a
        block-diagonal T.

    Returns
    -------
    EmpiricalBayes

    Raises
    ------
    SpecError
        Not a :class:`~hierbayes.Model`; a non-Gaussian family, known standard errors, or
        more than one grouping factor.
    DataError
        No residual degrees of freedom (OLS), or no REML optimizer found a finite optimum.

    Notes
    -----
    REML is statsmodels' ``MixedLM(y, X, groups, exog_re=Z).fit(reml=True)``, run with
    Powell, BFGS and CG (BFGS, CG and L-BFGS when uncorrelated blocks constrain T, since
    Powell ignores the constraint); the fit with the highest REML log-likelihood is kept,
    and the warnings it raised are recorded in ``notes`` instead of being issued.
    ``Var(gamma_hat)`` is the GLS covariance ``sigma^2 (X' M^-1 X)^-1`` at the REML estimates.

    Examples
    --------
    >>> import hierbayes as hb
    >>> exam = hb.datasets.load("exam")
    >>> eb = empirical_bayes(hb.Model("normexam ~ standLRT + (1 | school)", exam))
    >>> eb.fixed.round(4).to_dict()
    {'Intercept': 0.0023, 'standLRT': 0.5633}
    >>> round(float(eb.cov_re.loc["Intercept", "Intercept"]), 4), round(eb.sigma2, 4)
    (0.0938, 0.5659)
    >>> eb.table.columns.tolist()
    ['group', 'term', 'n', 'ols', 'ols_se', 'eb', 'lower', 'upper', 'reliability']
    >>> row = eb.table.set_index("group").loc[48]  # a school with 2 students
    >>> int(row["n"]), round(float(row["reliability"]), 2)
    (2, 0.25)
    """
    design = model if isinstance(model, Design) else getattr(model, "design", None)
    if not isinstance(design, Design):
        fix = ": pass fit.model" if hasattr(model, "model") and hasattr(model, "idata") else ""
        raise SpecError(
            f"empirical_bayes needs a hierbayes.Model, got {type(model).__name__}{fix}, "
            "as in hb.empirical_bayes(hb.Model(formula, data))"
        )
    problem = unavailable(design)
    if problem:
        raise SpecError(problem)
    if not design.factors:
        return _ols(design)
    return _reml(design, design.factors[0])


def _ols(design: Design) -> EmpiricalBayes:
    """Ordinary least squares: coefficients, SEs, sigma^2 = RSS / (N - p)."""
    y, X = design.y_adjusted, design.X  # y - offset
    n, p = X.shape
    if n <= p:
        raise DataError(
            f"{n} observations and {p} population-level coefficients leave no residual "
            "degrees of freedom to estimate sigma^2: remove terms or add data"
        )
    coef, unscaled = wls(X, y, np.ones(n))
    resid = y - X @ coef
    sigma2 = float(resid @ resid / (n - p))
    logdet = np.linalg.slogdet(X.T @ X)[1]
    loglik = -0.5 * ((n - p) * (1.0 + np.log(2 * np.pi * sigma2)) + logdet)
    names = list(design.fixed_names)
    return EmpiricalBayes(
        factor=None,
        fixed=pd.Series(coef, index=names, name="estimate"),
        fixed_se=pd.Series(np.sqrt(sigma2 * np.diag(unscaled)), index=names, name="se"),
        cov_re=pd.DataFrame(np.empty((0, 0))),
        sigma2=sigma2,
        table=pd.DataFrame({c: [] for c in TABLE_COLUMNS}),
        notes=(),
        method="OLS",
        loglik=float(loglik),
        n_obs=n,
        fixed_cov=pd.DataFrame(sigma2 * unscaled, index=names, columns=names),
    )


def _free_mask(f: FactorDesign, p: int):
    """statsmodels' ``free`` pattern for a block-diagonal T, or None when T is unstructured."""
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    q = f.Z.shape[1]
    same = np.zeros((q, q))
    for block in f.blocks:
        same[np.ix_(block, block)] = 1.0
    if same.all():
        return None
    return MixedLMParams.from_components(np.ones(p), same)


def _fit_reml(design: Design, f: FactorDesign):
    """Fit by REML with each candidate optimizer; keep the best finite optimum.

    Returns the statsmodels result, the optimizer's name and the warnings it raised.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    free = _free_mask(f, design.X.shape[1])
    candidates = _OPTIMIZERS if free is None else _OPTIMIZERS_CONSTRAINED
    best, failures = None, []
    for method, tolerances in candidates:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                mixed = MixedLM(design.y_adjusted, design.X, groups=f.codes, exog_re=f.Z)
                result = mixed.fit(reml=True, method=[method], free=free, **tolerances)
                llf = float(result.llf)
            except (np.linalg.LinAlgError, ValueError) as exc:
                failures.append(f"{method}: {exc}")
                continue
        if not np.isfinite(llf) or not np.isfinite(result.scale) or result.scale <= 0:
            failures.append(f"{method}: no finite optimum (log-likelihood {llf})")
            continue
        if best is None or llf > best[0]:
            best = (llf, result, method, caught)
    if best is None:
        raise DataError(
            f"the REML fit of {design.response!r} with varying effects by {f.name!r} failed "
            f"with every optimizer ({'; '.join(failures)}): the data may not identify T"
        )
    _, result, method, caught = best
    messages = []
    for w in caught:
        text = f"REML ({method}): {w.category.__name__}: {w.message}"
        if text not in messages:
            messages.append(text)
    return result, method, messages


def _gls_cov(
    XtX: np.ndarray, ZtX: np.ndarray, ZtZ: np.ndarray, T: np.ndarray, sigma2: float
) -> np.ndarray:
    """Var(gamma_hat) = sigma^2 (X' M^-1 X)^-1 with M_j = I + Z_j Psi Z_j', Psi = T / sigma^2.

    By Woodbury, X_j' M_j^-1 X_j = X_j'X_j - (Z_j'X_j)' Psi (I + Z_j'Z_j Psi)^-1 (Z_j'X_j).
    """
    if not XtX.shape[1]:
        return np.empty((0, 0))
    psi = T / sigma2
    inner = psi @ np.linalg.inv(np.eye(T.shape[0]) + ZtZ @ psi)  # (J, q, q)
    XtMX = XtX - np.einsum("jka,jkl,jlb->ab", ZtX, inner, ZtX)
    return sigma2 * np.linalg.inv(XtMX)


def _group_table(
    f: FactorDesign,
    ols: np.ndarray,
    ols_se: np.ndarray,
    eb: np.ndarray,
    half: np.ndarray,
    reliability: np.ndarray,
) -> pd.DataFrame:
    """One row per group and term: own OLS fit, EB estimate and interval, reliability."""
    q, J = len(f.terms), f.n_groups
    return pd.DataFrame(
        {
            "group": np.repeat(np.asarray(f.levels), q),
            "term": np.tile(np.asarray(f.terms, dtype=object), J),
            "n": np.repeat(f.counts, q),
            "ols": ols.ravel(),
            "ols_se": ols_se.ravel(),
            "eb": eb.ravel(),
            "lower": (eb - half).ravel(),
            "upper": (eb + half).ravel(),
            "reliability": reliability.ravel(),
        },
        columns=list(TABLE_COLUMNS),
    )


def _small_groups_note(f: FactorDesign, small: np.ndarray) -> str:
    labels = ", ".join(map(str, f.levels[small][:10])) + (", ..." if small.sum() > 10 else "")
    return (
        f"{int(small.sum())} group(s) of {f.name!r} have too few observations or a singular "
        f"Z'Z for their own OLS fit of ({', '.join(f.terms)}): {labels}; their ols and "
        "ols_se are NaN and eb uses the BLUP form"
    )


def _group_sums(design: Design, f: FactorDesign) -> tuple[np.ndarray, ...]:
    """X'X (p, p) and per group Z_j'Z_j (J, q, q), Z_j'X_j (J, q, p), Z_j'y_j (J, q): from
    the rows, or read from a design of per-group sums."""
    sums = design.sums
    if sums is not None:
        x, (z,) = list(sums.x_cols), sums.z_cols
        XtX = sums.total[np.ix_(x, x)]
        return XtX, sums.block(z, z), sums.block(z, x), sums.block(z, (sums.y_col,))[:, :, 0]
    y, X, Z, codes, J = design.y_adjusted, design.X, f.Z, f.codes, f.n_groups
    ZtZ, ZtX = group_crossprod(Z, Z, codes, J), group_crossprod(Z, X, codes, J)
    return X.T @ X, ZtZ, ZtX, group_crossprod(Z, y[:, None], codes, J)[:, :, 0]


def _reml_estimates(design: Design, f: FactorDesign) -> tuple:
    """(gamma, T, sigma^2, REML log-likelihood, method, notes): statsmodels' MixedLM on the
    rows, or :func:`hierbayes.core.sums.reml_sums` on a design of per-group sums."""
    sums = design.sums
    if sums is not None:
        fit = reml_sums(sums.gram, sums.n, sums.x_cols, sums.z_cols[0], sums.y_col, f.blocks)
        notes = [] if fit.converged else ["REML (L-BFGS-B): the search did not converge"]
        method = "REML from per-group sums, L-BFGS-B"
        return fit.beta, fit.T, fit.sigma**2, fit.reml_loglik, method, notes
    result, method, notes = _fit_reml(design, f)
    q = len(f.terms)
    T = np.asarray(result.cov_re, dtype=float).reshape(q, q)
    gamma = np.asarray(result.fe_params, dtype=float)
    method = f"REML (statsmodels MixedLM, {method})"
    return gamma, T, float(result.scale), float(result.llf), method, notes


def _reml(design: Design, f: FactorDesign) -> EmpiricalBayes:
    q = len(f.terms)
    gamma, T, sigma2, loglik, method, notes = _reml_estimates(design, f)
    same_block = np.zeros((q, q), dtype=bool)
    for block in f.blocks:
        same_block[np.ix_(block, block)] = True
    T = np.where(same_block, (T + T.T) / 2, 0.0)

    eye = np.eye(q)
    XtX, ZtZ, ZtX, Zty = _group_sums(design, f)
    fixed_cov = _gls_cov(XtX, ZtX, ZtZ, T, sigma2)

    # The level-2 model: b_j is centred on m_j = W_j gamma (level-2 columns only).
    level2 = f.level2
    W2 = f.W[:, :, level2]  # (J, q, p2)
    m = W2 @ gamma[level2]  # (J, q)
    var_g2 = fixed_cov[np.ix_(level2, level2)]
    common = ~level2

    # Groups with their own fit (of y - X_common gamma_common): Raudenbush & Bryk's form.
    fits = wls_from_sums(ZtZ, Zty - ZtX[:, :, common] @ gamma[common], f.counts)
    valid = fits.valid
    V = sigma2 * np.where(valid[:, None, None], fits.cov, eye)
    Lam = np.where(valid[:, None, None], T @ np.linalg.inv(T + V), 0.0)
    beta_hat = np.nan_to_num(fits.coef)
    eb = np.einsum("jkl,jl->jk", Lam, beta_hat) + np.einsum("jkl,jl->jk", eye - Lam, m)
    cond = Lam @ V  # (V_j^-1 + T^-1)^-1 = Lambda_j V_j, finite also when T is singular

    # The rest: the BLUP form, from sums only (no (Z_j'Z_j)^-1, no T^-1).
    small = ~valid
    if small.any():
        Zte = Zty - ZtX @ gamma  # Z_j'(y_j - X_j gamma)
        G = T @ np.linalg.inv(ZtZ[small] @ T + sigma2 * eye)
        eb[small] = m[small] + np.einsum("jkl,jl->jk", G, Zte[small])
        Lam[small] = G @ ZtZ[small]
        cond[small] = sigma2 * G
    shrink = eye - Lam
    Vstar = cond + shrink @ W2 @ var_g2 @ np.swapaxes(W2, 1, 2) @ np.swapaxes(shrink, 1, 2)
    Vstar = (Vstar + np.swapaxes(Vstar, 1, 2)) / 2
    half = _Z95 * np.sqrt(np.clip(np.einsum("jkk->jk", Vstar), 0.0, None))

    ols_se = np.sqrt(np.einsum("jkk->jk", V))
    ols_se[small] = np.nan
    table = _group_table(f, fits.coef, ols_se, eb, half, np.einsum("jkk->jk", Lam))
    if small.any():
        notes.insert(0, _small_groups_note(f, small))
    names = list(design.fixed_names)
    terms = list(f.terms)
    return EmpiricalBayes(
        factor=f.name,
        fixed=pd.Series(gamma, index=names, name="estimate"),
        fixed_se=pd.Series(np.sqrt(np.diag(fixed_cov)), index=names, name="se"),
        cov_re=pd.DataFrame(T, index=terms, columns=terms),
        sigma2=sigma2,
        table=table,
        notes=tuple(notes),
        method=method,
        loglik=loglik,
        n_obs=design.n_obs,
        fixed_cov=pd.DataFrame(fixed_cov, index=names, columns=names),
    )
