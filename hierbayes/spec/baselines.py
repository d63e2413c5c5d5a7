"""The complete-pooling baseline of a design: one fit to all the data.

Weighted least squares for the identity link (weights 1/se^2 with known standard errors,
times the observation weights), a GLM by IRLS otherwise; the offset enters with coefficient
1. Families with auxiliary parameters that change the coefficients' weights (gamma, beta,
the negative binomials, zero inflation, cutpoints) are then fitted by maximum likelihood,
coefficients and auxiliary parameters together. The pooling report prints the baseline, and
the planner measures residuals and information against it.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize

from hierbayes.core import pooling
from hierbayes.spec.design import Design
from hierbayes.spec.grouped import GroupSums

__all__ = ["complete_pooling", "complete_pooling_fit", "no_pooling_glm"]

#: Auxiliary parameters fitted jointly with the coefficients, and how each is unconstrained.
_JOINT = {"alpha": "log", "phi": "log", "zi": "logit", "cutpoints": "ordered"}


def _fitted(design: Design) -> tuple[str, ...]:
    """The auxiliary parameters fitted with the coefficients: the design's own, and each
    distributional parameter as one number (the baseline pools it too)."""
    return tuple(a for a in design.family.aux if a in _JOINT)


def _start(design: Design) -> dict[str, np.ndarray]:
    y = design.y
    m, v = float(np.mean(y)), float(np.var(y)) or 1.0
    start: dict[str, np.ndarray] = {}
    for key in _fitted(design):
        if key == "cutpoints":
            K = len(design.response_levels)
            share = np.cumsum(np.bincount(y.astype(np.int64), minlength=K))[:-1] / len(y)
            start[key] = np.array([design.family.link_value(float(p)) for p in share])
            start[key] = np.maximum.accumulate(start[key] + 1e-3 * np.arange(K - 1))
        elif key == "zi":
            start[key] = np.array(0.2)
        elif key == "phi":
            start[key] = np.array(max(m * (1 - m) / v - 1.0, 1.0))
        elif key == "alpha":
            start[key] = np.array(max(m**2 / max(v - m, 1e-3), 0.5) if v > m else 50.0)
    return start


def _pack(aux: dict[str, np.ndarray]) -> np.ndarray:
    parts = []
    for key, value in aux.items():
        kind = _JOINT[key]
        if kind == "log":
            parts.append(np.log(np.atleast_1d(value)))
        elif kind == "logit":
            parts.append(np.log(np.atleast_1d(value) / (1 - np.atleast_1d(value))))
        else:
            parts.append(np.concatenate([value[:1], np.log(np.maximum(np.diff(value), 1e-8))]))
    return np.concatenate(parts) if parts else np.zeros(0)


def _unpack(theta: np.ndarray, template: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out, i = {}, 0
    for key, value in template.items():
        n = np.size(value)
        part = theta[i : i + n]
        kind = _JOINT[key]
        if kind == "log":
            out[key] = np.exp(part[0])
        elif kind == "logit":
            out[key] = 1.0 / (1.0 + np.exp(-part[0]))
        else:
            out[key] = np.concatenate([part[:1], part[0] + np.cumsum(np.exp(part[1:]))])
        i += n
    return out


def _least_squares_from_sums(sums: GroupSums) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """OLS of a design of per-group sums: beta = (X'X)^-1 X'y, RSS = y'y - beta'X'y."""
    total, x, y = sums.total, list(sums.x_cols), sums.y_col
    coef = np.linalg.solve(total[np.ix_(x, x)], total[x, y]) if x else np.zeros(0)
    rss = max(float(total[y, y] - coef @ total[x, y]), 0.0)
    dof = max(sums.n_obs - len(x), 1)
    return coef, {"sigma": np.array(np.sqrt(rss / dof))}


def complete_pooling_fit(design: Design) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One fit to all the data: (coefficients of X, auxiliary parameters at their MLE).

    Identity-link families report ``sigma``, the residual SD (for student_t, of a least
    squares fit); the others the auxiliary parameters the IRLS weights need.

    Examples
    --------
    >>> import hierbayes as hb, numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=4000)
    >>> y = rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(0.5 + 0.3 * x)))
    >>> d = hb.Model("y ~ x", pd.DataFrame({"y": y, "x": x}), family="negativebinomial").design
    >>> coef, aux = complete_pooling_fit(d)
    >>> coef.round(1).tolist(), round(float(aux["alpha"]), 1)  # truth 0.5, 0.3 and 2
    ([0.5, 0.3], 2.1)
    """
    p, n = len(design.fixed_names), design.n_obs
    if design.sums is not None:  # least squares from X'X, X'y and y'y
        return _least_squares_from_sums(design.sums)
    w_obs = np.ones(n) if design.weights is None else design.weights
    fam = design.family
    if fam.link == "identity":
        w = w_obs if design.se is None else w_obs / design.se**2
        coef = pooling.wls(design.X, design.y_adjusted, w)[0] if p else np.zeros(0)
        resid = design.y_adjusted - (design.X @ coef if p else 0.0)
        dof = max(float(w_obs.sum()) - p, 1.0)
        return coef, {"sigma": np.array(np.sqrt(np.sum(w_obs * resid**2) / dof))}
    aux = _start(design)
    coef = np.zeros(p)
    if p and not fam.ordinal:
        coef = pooling.grouped_irls(
            design.X,
            design.y,
            fam,
            np.zeros(n, dtype=np.int64),
            1,
            trials=design.trials,
            offset=design.offset,
            aux=aux,
            weights=design.weights,
        ).coef[0]
        coef = np.nan_to_num(coef)
    if not aux:
        return coef, aux

    def nll(theta: np.ndarray) -> float:
        eta = design.eta_offset + (design.X @ theta[:p] if p else 0.0)
        with np.errstate(all="ignore"):
            ll = fam.log_density(design.y, eta, _unpack(theta[p:], aux), trials=design.trials)
        total = -float(np.sum(w_obs * ll))
        return total if np.isfinite(total) else 1e300

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = minimize(nll, np.concatenate([coef, _pack(aux)]), method="BFGS")
    return result.x[:p], _unpack(result.x[p:], aux)


def _aux_given_eta(
    design: Design, eta: np.ndarray, aux: dict[str, np.ndarray], rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The MLE of ``aux`` (not the cutpoints, whose location the groups' shifts share) given
    the linear predictor ``eta`` of the rows ``rows``."""
    template = {k: v for k, v in aux.items() if k in _JOINT and k != "cutpoints"}
    if not template:
        return aux
    w = (np.ones(design.n_obs) if design.weights is None else design.weights)[rows]
    trials = None if design.trials is None else design.trials[rows]

    def nll(theta: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            ll = design.family.log_density(
                design.y[rows], eta[rows], {**aux, **_unpack(theta, template)}, trials=trials
            )
        total = -float(np.sum(w * ll))
        return total if np.isfinite(total) else 1e300

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = minimize(nll, _pack(template), method="BFGS")
    return {**aux, **_unpack(result.x, template)}


def no_pooling_glm(
    design: Design,
    Z: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    offset: np.ndarray | float,
    aux: dict[str, np.ndarray],
    rounds: int = 20,
) -> tuple[pooling.GroupFits, dict[str, np.ndarray]]:
    """Each group's own maximum-likelihood fit of the columns ``Z``, with the auxiliary
    parameters common to all groups and estimated with them (not held at the complete-pooling
    estimate, which also absorbs the spread between groups): group IRLS and an auxiliary-only
    ML step in turn, from ``aux``. An ordinal model's cutpoints stay at ``aux``'s: they fix
    the location the groups' shifts are measured from.

    Examples
    --------
    >>> import hierbayes as hb, numpy as np, pandas as pd
    >>> rng = np.random.default_rng(2)
    >>> g = np.repeat(np.arange(40), 50)
    >>> y = rng.gamma(4.0, np.exp(rng.normal(0, 1, 40))[g] / 4.0)  # shape 4, group means vary
    >>> d = hb.Model("y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": g}), family="gamma").design
    >>> pooled = complete_pooling_fit(d)[1]["alpha"]
    >>> fits, aux = no_pooling_glm(d, d.factors[0].Z, g, 40, 0.0, complete_pooling_fit(d)[1])
    >>> round(float(pooled), 1), round(float(aux["alpha"]), 1)  # pooled, within groups
    (1.1, 4.0)
    """

    def fit(a: dict[str, np.ndarray]) -> pooling.GroupFits:
        return pooling.grouped_irls(
            Z,
            design.y,
            design.family,
            codes,
            n_groups,
            trials=design.trials,
            offset=offset,
            aux=a,
            weights=design.weights,
        )

    fits = fit(aux)
    if not any(k in _JOINT and k != "cutpoints" for k in aux):
        return fits, aux
    for _ in range(rounds):
        ok = np.isfinite(fits.coef).all(axis=1)[codes]
        eta = offset + np.einsum("nk,nk->n", Z, np.nan_to_num(fits.coef)[codes])
        new = _aux_given_eta(design, eta, aux, ok)
        change = np.max(np.abs(_pack(new) - _pack(aux)))
        aux, fits = new, fit(new)
        if change < 1e-6:
            break
    return fits, aux


def complete_pooling(design: Design) -> np.ndarray:
    """The complete-pooling coefficients of X (:func:`complete_pooling_fit`).

    Examples
    --------
    >>> import hierbayes as hb
    >>> d = hb.Model("y ~ 1", hb.datasets.load("eight_schools"), se="sigma").design
    >>> complete_pooling(d).round(2).tolist()
    [7.69]
    """
    if not design.fixed_names and design.family.link == "identity":
        return np.zeros(0)
    return complete_pooling_fit(design)[0]
