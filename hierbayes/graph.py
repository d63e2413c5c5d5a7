"""Spec + design -> PyMC graph.

The model, for observation i in group j = g[i] of each grouping factor:

    y_i ~ Normal(eta_i, sigma)          (sigma = se_i when standard errors are known)
    eta_i = X_i . beta + sum over factors of Z_i . u_j
    b_j = m_j + u_j,   m_j = W_j beta,   u_j ~ Normal(0, diag(sd)^2)

``m_j`` is the level-2 model: for a varying coefficient with a population-level twin
(``Intercept``, ``x``) it is that coefficient, plus any group-level predictor terms
(``schavg``, ``x:schavg``); see :func:`hierbayes.pooling.level2_map`. So ``b_j`` is group j's
own coefficient and ``u_j`` its deviation from the population line. The two
parameterisations differ only in what NUTS samples:

* centered:      b_j ~ Normal(m_j, sd)               (u_j = b_j - m_j)
* non-centered:  z_j ~ Normal(0, 1), u_j = sd * z_j   (b_j = m_j + u_j)

Both put ``b_<factor>``, ``u_<factor>`` and ``sd_<factor>`` in the posterior, with dims
``(<factor>, <factor>_term)``, so reports never care which was sampled. A population
column sits in ``m_j`` of the first factor it is level-2 for (``FactorDesign.owns``); in a
crossed factor that comes later, ``b_j = u_j`` is a deviation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.design import Design, FactorDesign
from hierbayes.errors import SpecError
from hierbayes.priors import Prior

__all__ = ["build_model"]


def _coords(design: Design) -> dict[str, list]:
    index = design.index if design.index.is_unique else np.arange(design.n_obs)
    coords: dict[str, list] = {"obs": list(index)}
    for f in design.factors:
        coords[f.name] = list(f.levels)
        coords[f.term_dim] = list(f.terms)
        if f.correlated:
            coords[f"{f.term_dim}2"] = list(f.terms)
    return coords


def level2_mean(f: FactorDesign, beta: pt.TensorVariable) -> pt.TensorVariable:
    """m_j = W_j beta over the owned columns: (q,) when equal for all groups, else (J, q)."""
    if not f.owns.any():
        return pt.zeros(len(f.terms))
    W = f.W[:, :, f.owns]
    b = beta[np.flatnonzero(f.owns)]
    if np.all(W == W[0]):
        return pt.dot(W[0], b)
    return pt.tensordot(W, b, axes=[[2], [0]])


def group_effects(
    f: FactorDesign,
    beta: pt.TensorVariable,
    sd_prior: Prior,
    corr_prior: Prior | None,
    parameterization: str,
) -> pt.TensorVariable:
    """Add one factor's varying effects to the model in context; return Z_i . u_{g[i]}.

    Uncorrelated: u_j ~ Normal(0, sd). Correlated: u_j ~ MvNormal(0, L L') with
    L = diag(sd) chol(corr) from ``LKJCholeskyCov``; non-centered, u = z @ L'.
    """
    if len(f.blocks) > 1 and any(len(block) > 1 for block in f.blocks):
        raise SpecError(
            f"the varying effects by {f.name!r} mix correlated and uncorrelated blocks: write "
            f"them as one block ({' + '.join(f.terms)} | {f.name}) or all uncorrelated (... || "
            f"{f.name})"
        )
    dims = (f.name, f.term_dim)
    m = level2_mean(f, beta)
    if f.correlated:
        chol, corr, sd = pm.LKJCholeskyCov(
            f"chol_{f.name}",
            eta=corr_prior.eta,
            n=len(f.terms),
            sd_dist=sd_prior.dist(shape=len(f.terms)),
            compute_corr=True,
            store_in_trace=False,
        )
        pm.Deterministic(f"sd_{f.name}", sd, dims=f.term_dim)
        pm.Deterministic(f"corr_{f.name}", corr, dims=(f.term_dim, f"{f.term_dim}2"))

        def centred():
            return pm.MvNormal(f"b_{f.name}", mu=m, chol=chol, dims=dims)

        def scaled(z):
            return pt.dot(z, chol.T)
    else:
        sd = sd_prior.rv(f"sd_{f.name}", dims=f.term_dim)

        def centred():
            return pm.Normal(f"b_{f.name}", mu=m, sigma=sd, dims=dims)

        def scaled(z):
            return z * sd

    if parameterization == "centered":
        b = centred()
        u = pm.Deterministic(f"u_{f.name}", b - m, dims=dims)
    else:
        z = pm.Normal(f"z_{f.name}", 0.0, 1.0, dims=dims)
        u = pm.Deterministic(f"u_{f.name}", scaled(z), dims=dims)
        pm.Deterministic(f"b_{f.name}", m + u, dims=dims)
    gathered = u[f.codes]  # (N, q): a gather by integer group code
    if np.all(f.Z == 1.0):
        return gathered.sum(axis=1)
    return (gathered * f.Z).sum(axis=1)


def build_model(design: Design, priors: Mapping[str, Prior], *, parameterization: str) -> pm.Model:
    """Emit the PyMC model for ``design`` (see the module docstring for the maths)."""
    names = [design.response, *design.fixed_names, *(["sigma"] if design.estimates_sigma else [])]
    kinds = ("sd", "b", "u", "z", "chol", "corr")
    names += [f"{kind}_{f.name}" for f in design.factors for kind in kinds]
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise SpecError(
            f"model variable name(s) {repeated} would repeat: rename the response or the column"
        )
    with pm.Model(coords=_coords(design)) as model:
        coefs = [priors[name].rv(name) for name in design.fixed_names]
        beta = pt.stack(coefs) if coefs else pt.zeros(0)
        eta = pt.dot(design.X, beta) if coefs else pt.zeros(design.n_obs)
        for f in design.factors:
            eta = eta + group_effects(
                f, beta, priors[f"sd_{f.name}"], priors.get(f"corr_{f.name}"), parameterization
            )
        sigma = priors["sigma"].rv("sigma") if design.estimates_sigma else design.se
        design.family.likelihood(
            design.response, eta, sigma=sigma, trials=design.trials, observed=design.y, dims="obs"
        )
    return model
