"""PyMC variables from the spec's priors and families: the one place the spec meets PyMC."""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.spec.families import Family
from hierbayes.spec.priors import LKJ, InverseGamma, Prior

__all__ = ["likelihood", "prior_rv"]


def prior_rv(prior: Prior, name: str, **kwargs: Any) -> pt.TensorVariable:
    """Add ``prior`` to the PyMC model in context as a variable called ``name``.

    Each prior is the PyMC distribution of the same name, with the same arguments; an
    InverseGamma prior is on the variance, and ``name`` is its square root (the variance is
    ``<name>_variance``). ``kwargs`` (``dims`` or ``shape``) pass through.

    Examples
    --------
    >>> import pymc as pm
    >>> from hierbayes.spec.priors import HalfNormal
    >>> with pm.Model() as model:
    ...     tau = prior_rv(HalfNormal(5), "tau")
    >>> type(model["tau"].owner.op).__name__
    'HalfNormalRV'
    """
    if isinstance(prior, LKJ):
        raise TypeError("an LKJ prior is on a correlation matrix: see graph.covariance_factor")
    if isinstance(prior, InverseGamma):
        variance = pm.InverseGamma(f"{name}_variance", **prior.args(), **kwargs)
        return pm.Deterministic(name, pt.sqrt(variance), dims=kwargs.get("dims"))
    return getattr(pm, type(prior).__name__)(name, **prior.args(), **kwargs)


def likelihood(
    family: Family,
    name: str,
    eta: Any,
    *,
    sigma: Any,
    trials: Any,
    observed: np.ndarray,
    dims: str | None,
) -> pt.TensorVariable:
    """Add the observed variable, with linear predictor ``eta``, to the model in context."""
    if family.name == "gaussian":
        return pm.Normal(name, mu=eta, sigma=sigma, observed=observed, dims=dims)
    if family.name == "bernoulli":
        return pm.Bernoulli(name, logit_p=eta, observed=observed, dims=dims)
    if family.name == "binomial":
        return pm.Binomial(name, n=trials, logit_p=eta, observed=observed, dims=dims)
    return pm.Poisson(name, mu=pt.exp(eta), observed=observed, dims=dims)
