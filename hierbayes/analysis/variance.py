"""How the variance splits: the intraclass correlation and Bayesian R², per posterior draw.

**ICC** (:func:`icc`). For grouping factor f with covariance T_f of its effects, the variance
its effects add to a row, averaged over the rows (Nakagawa, Johnson & Schielzeth 2017), is

    V_f = mean_i z_fi' T_f z_fi = trace(T_f Z_f'Z_f / N),

which is tau_f^2 for a varying intercept alone. Then

    ICC_f = V_f / (sum_g V_g + sigma_e^2),

with sigma_e^2 the residual variance: sigma^2 for a Gaussian model; for a binary or binomial
model its latent-scale value, pi^2 / 3 (logit), 1 (probit) or pi^2 / 6 (cloglog); for a
Poisson model (log link) the lognormal approximation log(1 + 1 / lambda), lambda the mean over
the rows of exp(eta_fixed + sum_g V_g / 2) (Nakagawa et al. 2017). Each is computed per
posterior draw. Other families, known standard errors and distributional models have no
ICC here: they are refused with the reason.

**R²** (:func:`r2`). Bayesian R² (Gelman, Goodrich, Gabry & Vehtari 2019), as brms'
``bayes_R2``: per draw, var(mu) / (var(mu) + var(y - mu)) over the rows, with mu the expected
response. ``conditional`` uses mu with the group effects; ``marginal`` with the population-level
terms only (brms' ``re_formula = NA``), so the groups' spread counts as unexplained: the two
sides of Nakagawa & Schielzeth's pair.
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pandas as pd

from hierbayes.analysis.tidy import summary_frame
from hierbayes.errors import SpecError
from hierbayes.posterior.draws import (
    RowDraws,
    aux_draws,
    fixed_draws,
    group_covariance,
    linear_predictor,
    posterior_draws,
)
from hierbayes.spec.design import Design

__all__ = ["LATENT_VARIANCE", "icc", "icc_draws", "r2", "r2_draws"]

#: The latent-scale residual variance of a binary or binomial model, by link.
LATENT_VARIANCE = {"logit": math.pi**2 / 3.0, "probit": 1.0, "cloglog": math.pi**2 / 6.0}


def _icc_unavailable(design: Design) -> str | None:
    family, link = design.family.name, design.family.link
    if design.dpars:
        return "a distributional model's residual variance differs by row"
    if design.se is not None:
        return "with known standard errors the residual variance differs by row"
    if family == "gaussian" and link == "identity":
        return None
    if family in ("bernoulli", "binomial") and link in LATENT_VARIANCE:
        return None
    if family == "poisson" and link == "log":
        return None
    return (
        f"the {family} family with the {link} link has no residual variance defined here "
        "(gaussian with the identity link, bernoulli and binomial, and poisson have one)"
    )


def _variance_components(design: Design, idata: az.InferenceData) -> dict[str, np.ndarray]:
    """V_f per draw for each grouping factor, (S,) each."""
    out = {}
    for i, f in enumerate(design.factors):
        if design.sums is not None:  # per-group sums: Z'Z over all rows
            z = design.sums.z_cols[i]
            Zbar = design.sums.total[np.ix_(z, z)] / design.n_obs
        else:  # over the rows (distinct rows counted as often as they occur)
            m = np.ones(len(f.Z)) if design.multiplicity is None else design.multiplicity
            Zbar = (f.Z * m[:, None]).T @ f.Z / m.sum()  # (q, q)
        out[f.name] = np.einsum("sab,ba->s", group_covariance(idata, f), Zbar)
    return out


def icc_draws(design: Design, idata: az.InferenceData) -> dict[str, np.ndarray]:
    """ICC per grouping factor, one value per posterior draw (module docstring).

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("normexam ~ 1 + (1 | school)", hb.datasets.load("exam")).design
    >>> idata = az.from_dict(posterior={"sd_school": np.full((1, 2, 1), 0.4),
    ...                                 "sigma": np.full((1, 2), 0.9)})
    >>> icc_draws(d, idata)["school"].round(4).tolist()  # 0.16 / (0.16 + 0.81)
    [0.1649, 0.1649]
    """
    reason = _icc_unavailable(design)
    if reason is not None:
        raise SpecError(f"no intraclass correlation for this model: {reason}")
    if not design.factors:
        raise SpecError("no intraclass correlation for a model without a grouping factor")
    parts = _variance_components(design, idata)
    total = sum(parts.values())
    family = design.family
    if family.name == "gaussian":
        residual = posterior_draws(idata, "sigma") ** 2
    elif family.name == "poisson":
        eta = fixed_draws(idata, design) @ design.X.T + design.eta_offset
        lam = design.mean_per_row(np.exp(eta + total[:, None] / 2.0))
        residual = np.log1p(1.0 / lam)
    else:
        residual = np.full_like(total, LATENT_VARIANCE[family.link])
    return {name: v / (total + residual) for name, v in parts.items()}


def icc(design: Design, idata: az.InferenceData, hdi_prob: float = 0.94) -> pd.DataFrame:
    """The intraclass correlation of each grouping factor: posterior mean, SD and HDI.

    Raises
    ------
    SpecError
        For a model whose residual variance is not defined here (module docstring).

    Examples
    --------
    >>> fit.icc()  # doctest: +SKIP
            mean      sd  hdi_lower  hdi_upper
    factor
    school  0.1471  0.0264     0.0971      0.194
    """
    return summary_frame(icc_draws(design, idata), "factor", hdi_prob)


def _r2_unavailable(design: Design) -> str | None:
    if design.family.ordinal:
        return "an ordinal response has no variance of its levels' positions to explain"
    if design.weights is not None:
        return "with weights= a row stands for several; R² of the unweighted rows would mislead"
    return None


def r2_draws(design: Design, idata: az.InferenceData) -> dict[str, np.ndarray]:
    """Bayesian R², ``conditional`` and ``marginal``, one value per posterior draw.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> df = hb.datasets.load("exam")
    >>> d = hb.Model("normexam ~ standLRT + (1 | school)", df).design
    >>> idata = az.from_dict(
    ...     posterior={"Intercept": np.zeros((1, 1)), "standLRT": np.full((1, 1), 0.563),
    ...                "sigma": np.full((1, 1), 0.75), "u_school": np.zeros((1, 1, 65, 1))})
    >>> {k: round(float(v[0]), 3) for k, v in r2_draws(d, idata).items()}
    {'conditional': 0.325, 'marginal': 0.325}
    """
    design.require_rows("Bayesian R²")  # first: distinct rows' counts are not weights= given
    reason = _r2_unavailable(design)
    if reason is not None:
        raise SpecError(f"no R² for this model: {reason}")
    y = design.y / design.trials if design.trials is not None else design.y
    beta = fixed_draws(idata, design)
    aux = {k: v[:] if isinstance(v, RowDraws) else v for k, v in aux_draws(idata, design).items()}
    effects = [(posterior_draws(idata, f"u_{f.name}"), f.codes, f.Z) for f in design.factors]
    S = len(beta)
    out = {"conditional": np.empty(S), "marginal": np.empty(S)}
    step = max(1, 2**22 // len(y))  # draws at a time: mu is (step, N)
    for start in range(0, S, step):
        sl = slice(start, start + step)
        # every auxiliary value has draws first, but known standard errors (N,)
        known = "sigma" if design.se is not None else None
        part = {k: v if k == known else v[sl] for k, v in aux.items()}
        for kind, used in (("conditional", effects), ("marginal", [])):
            chunk = [(u[sl], codes, Z) for u, codes, Z in used]
            eta = linear_predictor(design.X, design.eta_offset, beta[sl], chunk)
            mu = design.family.mean(eta, part)
            fit_var = mu.var(axis=1, ddof=1)
            out[kind][sl] = fit_var / (fit_var + (y - mu).var(axis=1, ddof=1))
    return out


def r2(design: Design, idata: az.InferenceData, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Bayesian R², conditional and marginal: posterior mean, SD and HDI (module docstring).

    Examples
    --------
    >>> fit.r2()  # doctest: +SKIP
                   mean      sd  hdi_lower  hdi_upper
    r2
    conditional  0.4330  0.0089     0.4154     0.4483
    marginal     0.3249  0.0101     0.3053     0.3428
    """
    return summary_frame(r2_draws(design, idata), "r2", hdi_prob)
