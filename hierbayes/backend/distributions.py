"""PyMC variables from the spec's priors and families: the one place the spec meets PyMC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from hierbayes.spec.families import Family
from hierbayes.spec.priors import LKJ, InverseGamma, OrderedNormal, Prior, StudentT

__all__ = [
    "INVERSE_LINKS",
    "aux_rv",
    "canonical_dist",
    "likelihood",
    "prior_logp",
    "prior_rv",
    "response_dist",
]


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
        variance = pm.InverseGamma(f"{name}_variance", **_args(prior), **kwargs)
        return pm.Deterministic(name, pt.sqrt(variance), dims=kwargs.get("dims"))
    return getattr(pm, type(prior).__name__)(name, **_args(prior), **kwargs)


def _args(prior: Prior) -> dict[str, Any]:
    """``prior``'s arguments, its location and scale as shared variables: default priors
    take them from the data, and nutpie's compiled model (:mod:`hierbayes.backend.nutpie`)
    then serves every data set alike. A shape argument (a Student-t's nu) stays a constant,
    whose log-gamma terms PyTensor computes once."""
    return {
        k: pytensor.shared(np.float64(v)) if k in prior.location_scale else v
        for k, v in prior.args().items()
    }


def prior_logp(prior: Prior, value: pt.TensorVariable) -> pt.TensorVariable:
    """The log density of ``prior`` at ``value``, for a prior placed through a Potential.

    Examples
    --------
    >>> from hierbayes.spec.priors import Normal
    >>> round(float(prior_logp(Normal(0.0, 1.0), pt.as_tensor(0.0)).eval()), 6)
    -0.918939
    """
    if prior.support != "real":
        raise TypeError(f"a Potential prior needs a prior on the real line, not {prior!r}")
    return pm.logp(getattr(pm, type(prior).__name__).dist(**_args(prior)), value)


#: Each link's inverse in PyTensor (the NumPy forms: :mod:`hierbayes.spec.links`).
INVERSE_LINKS = {
    "identity": lambda eta: eta,
    "log": pt.exp,
    "logit": pm.math.invlogit,
    "probit": lambda eta: 0.5 * pt.erfc(-eta / np.sqrt(2.0)),
    "cloglog": lambda eta: -pt.expm1(-pt.exp(eta)),
}


def aux_rv(prior: Prior, name: str, n_levels: int | None = None) -> pt.TensorVariable:
    """A family's auxiliary parameter; ``cutpoints*`` are ordered, over the dim ``cutpoint``."""
    if not name.startswith("cutpoints"):
        return prior_rv(prior, name)
    from pymc.distributions.transforms import ordered

    k = n_levels - 1
    if isinstance(prior, OrderedNormal):
        mu, sigma = np.asarray(prior.mu), prior.sigma
    else:
        mu, sigma = np.full(k, prior.mu), prior.sigma
    start = np.sort(mu) + np.arange(k) * 1e-3  # strictly increasing
    if isinstance(prior, StudentT):
        return pm.StudentT(
            name,
            nu=prior.nu,
            mu=mu,
            sigma=sigma,
            dims="cutpoint",
            transform=ordered,
            initval=start,
        )
    return pm.Normal(name, mu=mu, sigma=sigma, dims="cutpoint", transform=ordered, initval=start)


def canonical_dist(family: Family, eta: Any, trials: Any):
    """Bernoulli and binomial under the logit link, Poisson under the log link: PyMC's
    distribution for draws, with the log density written in the exponential family's form,
    ``y eta - b(eta) + c(y)``; else None.

    PyMC's own logp evaluates both branches of a switch on y and checks its bounds row by
    row; this one costs one softplus (or exp) a row and its gradient one sigmoid: on the
    Bernoulli GLMM of ``benchmarks/`` (2,000 rows) it took the log density and gradient from
    123 to 96 microseconds. The value is PyMC's (a test compares them, to 1e-12).
    """
    key = (family.name, family.link)
    if key == ("bernoulli", "logit"):
        return pm.CustomDist.dist(
            eta,
            dist=lambda e, size: pm.Bernoulli.dist(logit_p=e, size=size),
            logp=lambda y, e: y * e - pt.softplus(e),
        )
    if key == ("binomial", "logit"):

        def binomial_logp(y, e, n):
            log_choose = pt.gammaln(n + 1.0) - pt.gammaln(y + 1.0) - pt.gammaln(n - y + 1.0)
            return log_choose + y * e - n * pt.softplus(e)

        return pm.CustomDist.dist(
            eta,
            trials,
            dist=lambda e, n, size: pm.Binomial.dist(n=pt.cast(n, "int64"), logit_p=e, size=size),
            logp=binomial_logp,
        )
    if key == ("poisson", "log"):
        return pm.CustomDist.dist(
            eta,
            dist=lambda e, size: pm.Poisson.dist(mu=pt.exp(e), size=size),
            logp=lambda y, e: y * e - pt.exp(e) - pt.gammaln(y + 1.0),
        )
    return None


def response_dist(family: Family, eta: Any, aux: Mapping[str, Any], trials: Any):
    """The family's PyMC distribution (unnamed, ``.dist``) given the linear predictor."""
    canonical = canonical_dist(family, eta, trials)
    if canonical is not None:
        return canonical
    mu = INVERSE_LINKS[family.link](eta)
    name = family.name
    if name == "gaussian":
        return pm.Normal.dist(mu=mu, sigma=aux["sigma"])
    if name == "student_t":
        return pm.StudentT.dist(nu=aux["nu"], mu=mu, sigma=aux["sigma"])
    if name == "lognormal":
        return pm.LogNormal.dist(mu=mu, sigma=aux["sigma"])
    if name == "gamma":
        return pm.Gamma.dist(alpha=aux["alpha"], beta=aux["alpha"] / mu)
    if name == "beta":
        return pm.Beta.dist(alpha=mu * aux["phi"], beta=(1.0 - mu) * aux["phi"])
    if name == "bernoulli":
        return pm.Bernoulli.dist(p=mu)
    if name == "binomial":
        return pm.Binomial.dist(n=trials, p=mu)
    if name == "poisson":
        return pm.Poisson.dist(mu=mu)
    if name == "negativebinomial":
        return pm.NegativeBinomial.dist(mu=mu, alpha=aux["alpha"])
    if name == "zero_inflated_poisson":
        return pm.ZeroInflatedPoisson.dist(psi=1.0 - aux["zi"], mu=mu)
    if name == "zero_inflated_negativebinomial":
        return pm.ZeroInflatedNegativeBinomial.dist(psi=1.0 - aux["zi"], mu=mu, alpha=aux["alpha"])
    # P(y = k) = F(c_k - eta) - F(c_{k-1} - eta), PyMC's OrderedLogistic for the logit link;
    # for probit, F from erfc (PyMC's OrderedProbit is accurate to about 1e-8 only)
    F = INVERSE_LINKS[family.link](aux["cutpoints"] - pt.shape_padright(eta))
    ends = pt.shape_padright(pt.zeros_like(F[..., 0]))
    cdf = pt.concatenate([ends, F, ends + 1.0], axis=-1)
    return pm.Categorical.dist(p=cdf[..., 1:] - cdf[..., :-1])


def likelihood(
    family: Family,
    name: str,
    eta: Any,
    *,
    aux: Mapping[str, Any],
    trials: Any,
    observed: np.ndarray,
    dims: str | None,
    weights: np.ndarray | None = None,
) -> pt.TensorVariable:
    """Add the observed variable, with linear predictor ``eta``, to the model in context.

    With ``weights``, each row's log-likelihood is multiplied by its weight: the observed
    variable keeps weight 1 (so predictive draws work as without weights) and a Potential
    ``<name>_weights`` adds (w - 1) times each row's log-likelihood.
    """
    dist = response_dist(family, eta, aux, trials)
    dims = (dims,) if isinstance(dims, str) else dims  # register_rv takes a tuple only
    rv = pm.modelcontext(None).register_rv(dist, name, observed=observed, dims=dims)
    if weights is not None:
        logp = pm.logp(response_dist(family, eta, aux, trials), observed)
        pm.Potential(f"{name}_weights", pt.sum((weights - 1.0) * logp))
    return rv
