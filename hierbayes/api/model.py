"""The user-facing model: formula + data + options -> PyMC graph -> fit."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from threadpoolctl import threadpool_limits

from hierbayes.api.fit import Fit
from hierbayes.backend import samplers
from hierbayes.backend.graph import build_model
from hierbayes.backend.initial import jitter_scales
from hierbayes.backend.plan import Plan, plan
from hierbayes.core.interrupts import Interrupts
from hierbayes.errors import SamplingError, SpecError
from hierbayes.posterior.complete import (
    LOG_LIKELIHOOD_MAX_CELLS,
    add_group_effects,
    group_log_likelihood,
    group_observations,
    log_likelihood_groups,
    no_log_likelihood,
    pointwise_log_likelihood,
)
from hierbayes.spec import families
from hierbayes.spec.design import Design
from hierbayes.spec.formula import parse
from hierbayes.spec.intake import intake
from hierbayes.spec.modelspec import ModelSpec, check_design, describe, resolve_priors
from hierbayes.spec.namespace import Namespace, resolve
from hierbayes.spec.priors import Prior
from hierbayes.spec.specfile import MAX_CHAINS, MAX_ITERATIONS, MAX_SEED
from hierbayes.version import __version__

__all__ = ["Model", "DEFAULT_TARGET_ACCEPT"]

#: NUTS target acceptance for hierarchical models. PyMC's generic 0.8 leaves divergences in
#: eight schools; at 0.9 non-centered eight schools still diverged in 2 of 5 seeds
#: (4 x 2000 draws), at 0.95 in none of 5.
DEFAULT_TARGET_ACCEPT = 0.95


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_fit_arguments(
    draws: Any, tune: Any, chains: Any, cores: Any, target_accept: Any, random_seed: Any
) -> None:
    """Refuse a fit argument out of range, naming it (the limits live in ``specfile``)."""
    limits = {"draws": MAX_ITERATIONS, "tune": MAX_ITERATIONS, "chains": MAX_CHAINS}
    for name, value in {"draws": draws, "tune": tune, "chains": chains}.items():
        if not _is_int(value) or not 1 <= value <= limits[name]:
            raise SpecError(
                f"{name} must be a whole number from 1 to {limits[name]:,}, got {value!r}"
            )
    if cores is not None and (not _is_int(cores) or not 1 <= cores <= MAX_CHAINS):
        raise SpecError(
            f"cores must be a whole number from 1 to {MAX_CHAINS} (or None), got {cores!r}"
        )
    if not isinstance(target_accept, float | int) or isinstance(target_accept, bool):
        raise SpecError(f"target_accept must be a number in [0.5, 1), got {target_accept!r}")
    if not 0.5 <= target_accept < 1:
        raise SpecError(f"target_accept must be in [0.5, 1), got {target_accept!r}")
    if random_seed is not None and (not _is_int(random_seed) or not 0 <= random_seed <= MAX_SEED):
        raise SpecError(
            f"random_seed must be a whole number from 0 to 2**32 - 1 (or None), got {random_seed!r}"
        )


def _sample(model: pm.Model, **settings: Any) -> az.InferenceData:
    """Run the sampler (:func:`hierbayes.backend.samplers.sample`) with ``settings``.

    One BLAS thread per chain: the matrices are small, and with two chains on two cores
    OpenBLAS's own threads oversubscribe the CPU (Exam HLM, 2 chains x 200 iterations: 35 s
    with them, 5 s without). Early in tuning a trial step size can overflow the kinetic
    energy; NUTS rejects such a step (a divergence, which the diagnostics report), so
    NumPy's floating-point warnings are silenced inside the sampler only. Ctrl-C stops the
    run, also when the sampler would swallow it (:class:`~hierbayes.core.interrupts.Interrupts`).
    """
    with (
        Interrupts(),
        threadpool_limits(limits=1, user_api="blas"),
        np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"),
    ):
        return samplers.sample(model, **settings)


def default_progressbar() -> bool:
    """On in a terminal or notebook, off under CI or when output is redirected."""
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()


def _ordered_cutpoints(
    first: az.InferenceData, draws: int, random_seed: int | None
) -> az.InferenceData:
    """Keep the prior draws whose cutpoints increase, drawing more until there are ``draws``.

    The ordered transform restricts the cutpoints' prior density to increasing values, but
    PyMC's forward draws ignore it: independent draws that are out of order (and a response
    drawn from negative category probabilities). Rejecting those joint draws leaves exact
    draws of the restricted prior and its predictive. Call inside the model's context.
    """
    rng = np.random.default_rng(random_seed)
    groups = ("prior", "prior_predictive")
    parts: dict[str, list[xr.Dataset]] = {g: [] for g in groups}
    idata, kept, tried = first, 0, 0
    while True:
        cut = idata.prior["cutpoints_centered"].values[0]
        keep = np.flatnonzero((np.diff(cut, axis=-1) > 0).all(axis=-1))
        for g in groups:
            parts[g].append(idata[g].isel(draw=keep))
        kept, tried = kept + len(keep), tried + draws
        if kept >= draws:
            break
        if tried >= 1000 * draws:
            raise SpecError(
                f"the cutpoints' prior gives increasing cutpoints in {kept} of {tried} draws: "
                "give it increasing centres (hb.priors.OrderedNormal((-1, 0, 1), 2.5)) so "
                "that its prior predictive can be drawn"
            )
        idata = pm.sample_prior_predictive(draws=draws, random_seed=int(rng.integers(2**32)))
    out = {
        g: xr.concat(parts[g], "draw").isel(draw=slice(draws)).assign_coords(draw=range(draws))
        for g in groups
    }
    if "observed_data" in idata.groups():
        out["observed_data"] = idata.observed_data
    return az.InferenceData(**out)


class Model:
    """A Bayesian hierarchical model: an lme4-style formula, a DataFrame and options.

    Construction validates the data and resolves the priors; nothing is compiled or sampled
    until :meth:`build` or :meth:`fit`.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"y ~ 1 + x + (1 | g)"``. Supported so far: an intercept (``0 +``
        drops it), population-level predictors (anything formulae evaluates:
        ``x``, ``C(k)``, ``x:z``, ``log(x)``), and varying effects ``(1 | g)``,
        ``(x || g)`` (uncorrelated), ``(1 | a/b)`` (nested) and crossed ``(1 | a) + (1 | b)``.
    data : pandas.DataFrame, path, SQL text or another engine's frame
        One row per observation. Rows are never dropped: missing values are an error. Besides
        a pandas frame: a path or glob of Parquet or CSV files, SQL text for DuckDB, a polars,
        pyarrow, DuckDB or Dask frame (:mod:`hierbayes.spec.sources`): the model's columns
        are read in that engine and collected, with rows labelled 0..N-1 in its order.
    se : str, optional
        Column of known observation standard errors (brms' ``se()``, the meta-analysis form).
        Without it the residual SD ``sigma`` is estimated.
    family : str
        The response distribution: ``"gaussian"``, ``"student_t"``, ``"lognormal"``,
        ``"gamma"``, ``"beta"``, ``"bernoulli"``, ``"binomial"``, ``"poisson"``,
        ``"negativebinomial"``, ``"zero_inflated_poisson"``,
        ``"zero_inflated_negativebinomial"`` or ``"cumulative"`` (ordinal); see
        :mod:`hierbayes.spec.families` for each one's likelihood, links and auxiliary
        parameters.
    link : str, optional
        The link, where the family has alternatives (``"probit"``, ``"cloglog"`` for
        bernoulli, binomial and beta; ``"probit"`` for cumulative; ``"log"`` for gaussian).
        By default the family's canonical link.
    trials : str, optional
        Column of the number of trials per row, for the binomial family.
    weights : str, optional
        Column of observation weights, which multiply each row's log-likelihood (brms'
        ``weights()``, Bambi's ``weighted()``): a row of weight 2 counts as that row twice.
        These are frequency weights, not survey-design weights: they do not give design-based
        standard errors.
    sigma, phi, alpha : str, optional
        A one-sided formula for the family's auxiliary parameter, ``sigma="~ x + (1 | g)"``
        (brms' ``sigma ~ ...``): its log gets a linear predictor of its own, with its own
        group effects (:mod:`hierbayes.spec.dpars`). ``sigma`` for gaussian, student_t and
        lognormal; ``phi`` for beta; ``alpha`` for gamma and the negative binomials.
    offset : str, optional
        Column added to the linear predictor with coefficient 1 (lme4's ``offset=``), e.g.
        the log exposure of a Poisson rate model; ``offset(expr)`` terms in the formula do
        the same, and both together add up.
    parameterization : {"auto", "marginal", "centered", "non-centered"}
        The graph form of the group-level terms; all give the same posterior quantities.
        ``"marginal"`` (Gaussian) integrates the group effects out (one factor, two nested
        factors) or the largest factor's (crossed factors, the others sampled non-centered;
        under ``"auto"``, centered or non-centered by group, a ``(1 | f)`` factor's mean
        sampled with the intercept)
        and draws them exactly after sampling (:mod:`hierbayes.backend.marginal`,
        :mod:`hierbayes.backend.marginal_multi`). ``"auto"``, the
        default, takes marginal where it is available and otherwise chooses centered or
        non-centered group by group from the data (:mod:`hierbayes.backend.plan`); the repr and
        ``fit.idata.attrs["parameterization_used"]`` record the choice.
    priors : dict, optional
        Prior key -> :mod:`hierbayes.spec.priors` object (or a string such as ``"halfcauchy:5"``).
        Keys and defaults are listed in :mod:`hierbayes.spec.modelspec`; the repr prints them all.
    dropna : bool
        By default a missing or infinite value in a used column is an error naming the rows.
        With ``dropna=True`` those rows are dropped instead, with a
        :class:`~hierbayes.errors.DataWarning` that counts them per group; their index
        labels are kept in ``model.dropped``.
    reduce : bool, optional
        Fit from what the engine holding the data computes, not from its rows
        (:mod:`hierbayes.spec.intake`): per-group (per-cell) sums for a gaussian model whose
        terms are an intercept or numeric columns as they are (``y ~ x + (x | g)``, nested
        or crossed factors too); a Poisson model's counts and exposures summed per cell of
        its predictors and groups (``c ~ k + offset(log(t)) + (1 | g)``); or the distinct
        rows with their counts for a discrete response (bernoulli, binomial, the count
        families, cumulative) whose rows repeat. Only terms computed row by row collapse
        (not ``scale(x)`` or ``bs(x)``). By default (None) that is done when ``data`` is
        not a pandas frame; the rows are then never all in memory, so they may be more than
        memory holds. Such a fit has no per-row quantities (R², the posterior predictive of
        the fitted rows, effects): for sums, :func:`hierbayes.compare` is
        leave-one-group-out (one factor or nested ones); for distinct rows and cells it has
        no log-likelihood. ``False`` reads the rows; ``True`` reduces a pandas frame too, or
        says why the model does not.
    namespace : dict or "safe", optional
        Where the formula's function and variable names that are not data columns resolve.
        By default in the caller's namespace, as formulae's ``env`` does (so your own
        functions work), with NumPy's elementwise functions behind it (``log(x)``,
        ``np.log(x)``). ``"safe"`` allows only NumPy's elementwise functions and formulae's
        transforms, as for formulas read from files (:mod:`hierbayes.spec.namespace`).

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("eight_schools")
    >>> model = hb.Model("y ~ 1 + (1 | school)", df, se="sigma",
    ...                  priors={"Intercept": hb.priors.Normal(0, 5),
    ...                          "sd": hb.priors.HalfCauchy(5)})
    >>> print(model)
    hierbayes.Model: y ~ 1 + (1 | school)
      family gaussian, auto: school marginal, 8 observations, known se from 'sigma'
      groups: school (8 groups; Intercept)
      priors:
        Intercept: Normal(mu=0, sigma=5)
        sd_school: HalfCauchy(beta=5)
    >>> sorted(model.build().named_vars)
    ['Intercept', 'marginal_y', 'sd_school']
    """

    def __init__(
        self,
        formula: str,
        data: Any,
        *,
        se: str | None = None,
        family: str = "gaussian",
        trials: str | None = None,
        parameterization: str = "auto",
        priors: Mapping[str, Prior | str] | None = None,
        dropna: bool = False,
        offset: str | None = None,
        namespace: Mapping[str, Any] | str | None = None,
        link: str | None = None,
        weights: str | None = None,
        sigma: str | None = None,
        phi: str | None = None,
        alpha: str | None = None,
        reduce: bool | None = None,
    ) -> None:
        dpars = {k: v for k, v in (("sigma", sigma), ("phi", phi), ("alpha", alpha)) if v}
        self.spec = ModelSpec(
            formula=formula,
            se=se,
            family=family,
            trials=trials,
            parameterization=parameterization,
            offset=offset,
            priors=priors or {},
            link=link,
            weights=weights,
            dpars=dpars,
        )
        self.formula = parse(formula)
        self.namespace: Namespace = resolve(namespace, depth=1)
        self.family = families.get(family, link)
        taken = intake(
            self.formula,
            data,
            family=self.family,
            namespace=self.namespace,
            options={"se": se, "trials": trials, "offset": offset, "weights": weights},
            dpars=dpars,
            dropna=dropna,
            reduce=reduce,
            parameterization=parameterization,
        )
        self.data: pd.DataFrame | None = taken.data
        self.design: Design = taken.design
        self.dropped = taken.dropped
        self.priors: dict[str, Prior] = resolve_priors(self.spec.priors, self.design)
        check_design(self.design, self.priors, stacklevel=3)
        intercept = self.priors.get("Intercept")
        self.plan: Plan = plan(
            self.design,
            self.spec.parameterization,
            shear=intercept is not None and intercept.support == "real",
        )

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        data: Any,
        namespace: Mapping[str, Any] | str | Namespace = "safe",
    ) -> Model:
        """Build a model from a :class:`~hierbayes.spec.modelspec.ModelSpec` and its data.

        A spec comes from a file or another process, not from the caller's code, so its
        formula may by default use only the safe names (:mod:`hierbayes.spec.namespace`).
        """
        return cls(
            spec.formula,
            data,
            se=spec.se,
            family=spec.family,
            trials=spec.trials,
            parameterization=spec.parameterization,
            priors=dict(spec.priors),
            namespace=namespace,
            offset=spec.offset,
            link=spec.link,
            weights=spec.weights,
            **dict(spec.dpars),
        )

    @property
    def parameterization(self) -> str:
        return self.spec.parameterization

    def build(self) -> pm.Model:
        """Emit the PyMC model (a new one each call); coords are named by group labels.

        For the marginal parameterisation the graph holds the population-level terms, the
        group-level SDs (and correlations) and sigma, with the likelihood of the data with
        the group effects integrated out (a ``Potential``); :meth:`fit` adds the group
        effects to the posterior.
        """
        return build_model(
            self.design,
            self.priors,
            parameterization=self.plan.graph,
            shear=self.plan.shear,
            nested=self.plan.nested,
            centered=self.plan.sampled,
        )

    def fit(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        *,
        cores: int | None = None,
        target_accept: float = DEFAULT_TARGET_ACCEPT,
        random_seed: int | None = None,
        progressbar: bool | None = None,
        strict: bool = False,
        sampler: str = samplers.DEFAULT_SAMPLER,
        log_likelihood: bool | None = None,
    ) -> Fit:
        """Sample the posterior with NUTS and check the diagnostics.

        Each failed check (divergences, R-hat > 1.01, low ESS, low E-BFMI) issues one
        :class:`~hierbayes.errors.SamplingWarning` saying what to do.

        Parameters
        ----------
        draws, tune, chains : int
            Kept draws, tuning steps and chains.
        cores : int, optional
            Chains run in parallel; by default as many as chains and CPUs allow.
        target_accept : float
            NUTS target acceptance, 0.95 by default (see :data:`DEFAULT_TARGET_ACCEPT`).
        random_seed : int, optional
            Seed; when None one is drawn and stored in ``fit.idata.attrs["random_seed"]``,
            so every fit can be repeated.
        progressbar : bool, optional
            Defaults to on in a terminal or notebook, off under CI.
        strict : bool
            Raise :class:`~hierbayes.errors.SamplingError`, listing every failed check and
            what to try, instead of warning.
        sampler : {"pymc", "nutpie", "numpyro"}
            The NUTS implementation (:mod:`hierbayes.backend.samplers`): nutpie's by
            default, PyMC's, or numpyro (``pip install "hierbayes[numpyro]"``). Every
            sampler gives the same InferenceData.
        log_likelihood : bool, optional
            Store the pointwise log-likelihood (for :func:`hierbayes.compare`). By default it
            is stored unless draws x observations exceeds
            :data:`~hierbayes.posterior.complete.LOG_LIKELIHOOD_MAX_CELLS`.

        Examples
        --------
        >>> import hierbayes as hb
        >>> df = hb.datasets.load("eight_schools")
        >>> fit = hb.Model("y ~ 1 + (1 | school)", df, se="sigma").fit(
        ...     random_seed=1, progressbar=False)  # doctest: +SKIP
        >>> fit.diagnostics.divergences  # doctest: +SKIP
        0
        """
        _check_fit_arguments(draws, tune, chains, cores, target_accept, random_seed)
        absent = no_log_likelihood(self.design)
        if log_likelihood and absent:
            raise SpecError(f"log_likelihood=True: {absent}")
        if random_seed is None:
            random_seed = int(np.random.SeedSequence().entropy % (MAX_SEED + 1))
        random_seed = int(random_seed)
        graph = self.build()
        idata = _sample(
            graph,
            sampler=sampler,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores or max(1, min(chains, os.cpu_count() or 1)),
            target_accept=target_accept,
            random_seed=random_seed,
            progressbar=default_progressbar() if progressbar is None else progressbar,
            jitter_scales=jitter_scales(self.design, sheared=bool(self.plan.shear)),
        )
        self._complete(idata, random_seed=random_seed, log_likelihood=log_likelihood, absent=absent)
        idata.attrs.update(
            self._attrs(random_seed=random_seed, target_accept=target_accept, sampler=sampler)
        )
        fit = Fit(self, idata, target_accept=target_accept, warn=not strict)
        problems = fit.diagnostics.problems(
            parameterization=self.plan.describe(), target_accept=target_accept
        )
        if strict and problems:
            raise SamplingError("sampling failed its checks:\n- " + "\n- ".join(problems))
        return fit

    def _complete(
        self,
        idata: az.InferenceData,
        *,
        random_seed: int,
        log_likelihood: bool | None,
        absent: str | None,
    ) -> None:
        """Add what no sampler gives: marginal group effects, observed data, log-likelihood
        (unless ``absent`` says why the model has none: :func:`no_log_likelihood`)."""
        d = self.design
        if self.plan.marginal and d.factors:
            rng = np.random.default_rng([random_seed, 1])  # apart from the sampler's streams
            add_group_effects(d, idata, rng)
        if absent:
            idata.attrs["log_likelihood_absent"] = absent
        if d.sums is not None:  # no rows: per group, the sums and the marginal likelihood
            idata.add_groups(observed_data=group_observations(d))
            if log_likelihood is not False and not absent:
                idata.add_groups(log_likelihood=group_log_likelihood(d, idata))
                unit = log_likelihood_groups(d)[0].name
                idata.attrs["log_likelihood_unit"] = f"group of {unit!r}"
            return
        if "observed_data" not in idata.groups():
            index = d.index if d.index.is_unique else np.arange(d.n_obs)
            y = xr.DataArray(d.y, dims="obs", coords={"obs": index})
            idata.add_groups(observed_data=xr.Dataset({d.response: y}))
        cells = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"] * d.n_obs
        if absent:
            return
        if log_likelihood is None:
            log_likelihood = cells <= LOG_LIKELIHOOD_MAX_CELLS
        if log_likelihood:
            idata.add_groups(log_likelihood=pointwise_log_likelihood(d, idata))

    def prior_predictive(
        self, draws: int = 500, *, random_seed: int | None = None
    ) -> az.InferenceData:
        """Draws from the prior and the prior predictive of the model.

        The centered and non-centered graphs are the fitted graph itself. A marginal model
        has no group effects in its graph, so its prior predictive comes from the
        non-centered graph of the same model: the same joint distribution of parameters and
        data, with ``u_<f>`` and ``b_<f>`` drawn too. An ordinal response is drawn as its
        level values, as :meth:`Fit.predict` gives them (its integers, or positions 1..K of
        an ordered categorical), and its cutpoints come from their prior restricted to
        increasing values, as the model's density has them (:func:`_ordered_cutpoints`); with
        ``weights=`` each row is drawn once.
        """
        graph = "non-centered" if self.plan.marginal else self.plan.graph
        with (
            build_model(self.design, self.priors, parameterization=graph),
            warnings.catch_warnings(),
        ):
            # the weights' Potential holds only the likelihood, which a prior predictive omits
            warnings.filterwarnings("ignore", "The effect of Potentials", UserWarning)
            idata = pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
            if "cutpoints" in self.design.aux:
                idata = _ordered_cutpoints(idata, draws, random_seed)
        levels = self.design.response_levels
        if levels is not None:  # PyMC draws the codes 0..K-1
            y = idata.prior_predictive[self.design.response]
            scores = families.level_scores(levels)
            idata.prior_predictive[self.design.response] = y.copy(data=scores[y.values])
        return idata

    def _attrs(self, **extra: Any) -> dict[str, Any]:

        return {
            "hierbayes_version": __version__,
            "formula": self.spec.formula,
            "family": self.family.name,
            "link": self.family.link,
            "weights": self.spec.weights or "",
            **{f"formula_{name}": rhs for name, rhs in self.spec.dpars.items()},
            "parameterization": self.parameterization,
            "parameterization_used": self.plan.describe(),
            "se": self.spec.se or "",
            "offset": " + ".join(self._offsets()),
            **extra,
        }

    def _offsets(self) -> list[str]:
        """The offset's parts as written: ``offset(...)`` terms, then the ``offset=`` column."""
        parts = [f"offset({expr})" for expr in self.formula.offsets]
        return parts + ([f"offset column {self.spec.offset!r}"] if self.spec.offset else [])

    def __repr__(self) -> str:
        d = self.design
        noise = ""
        if d.se is not None:
            noise = f", known se from {self.spec.se!r}"
        elif d.estimates_sigma:
            noise = ", sigma estimated"
        for dpar in d.dpars:
            noise += f", {dpar.name} {dpar.rhs}"
        offsets = self._offsets()
        if offsets:
            noise += f", with {' + '.join(offsets)}"
        distinct = "" if d.multiplicity is None else f" ({d.n_obs} distinct, with counts)"
        if d.summed_offsets is not None:
            distinct = f" (in {d.n_obs} cells, counts and exposures summed)"
        if self.spec.weights:
            noise += f", weights from {self.spec.weights!r}"
        family = self.family.name
        if self.family.link != self.family.links[0]:
            family += f" ({self.family.link} link)"
        factors = [*d.factors, *(f for dpar in d.dpars for f in dpar.factors)]
        groups = (
            "; ".join(f"{f.name} ({f.n_groups} groups; {', '.join(f.terms)})" for f in factors)
            or "none (complete pooling)"
        )
        return (
            f"hierbayes.Model: {self.spec.formula}\n"
            f"  family {family}, {self.plan.describe()}, "
            f"{d.n_rows} observations{distinct}{noise}\n"
            f"  groups: {groups}\n"
            f"  priors:\n{describe(self.priors)}"
        )
