"""Model comparison by PSIS-LOO (ArviZ), with the residual SD beside each model.

Fits made from per-group sums (:mod:`hierbayes.spec.reduce`) hold one log-likelihood term
per group, each group's data with its effects integrated out: their PSIS-LOO is
leave-one-group-out, and they compare only with each other
(``fit.idata.attrs["log_likelihood_unit"]``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Protocol

import arviz as az
import numpy as np
import pandas as pd

from hierbayes.core.stacking import stacking_weights
from hierbayes.errors import SamplingWarning, SpecError
from hierbayes.posterior.diagnostics import Diagnostics

__all__ = ["Comparable", "compare"]


class Comparable(Protocol):
    """What compare needs of a fit (:class:`hierbayes.Fit` has it)."""

    idata: az.InferenceData
    diagnostics: Diagnostics


def _observed(idata: az.InferenceData) -> np.ndarray:
    """The response values (the one variable of ``observed_data``)."""
    return np.asarray(next(iter(idata.observed_data.data_vars.values())))


def compare(fits: Mapping[str, Comparable]) -> pd.DataFrame:
    """Rank fitted models of the same data by expected log predictive density (PSIS-LOO).

    Parameters
    ----------
    fits : dict
        Name -> :class:`~hierbayes.Fit`; every fit must hold the same observations.

    Returns
    -------
    pandas.DataFrame
        Indexed by model name, best first: ``elpd_loo``, ``se``, ``p_loo``, ``elpd_diff``,
        ``dse`` (SE of the difference to the best), ``weight`` (stacking), ``residual_sd``
        (posterior mean of the residual SD; NaN where it is not a parameter),
        ``pareto_k_warning`` (True when PSIS found Pareto k > 0.7 for some observation, so
        that model's LOO estimate is unreliable) and ``problems``: what makes a row
        untrustworthy (failed sampler checks, such as a stuck chain, and high Pareto k),
        empty for a sound fit. Each model with problems is also named in one
        :class:`~hierbayes.errors.SamplingWarning`: a fit that did not converge has an elpd
        that says nothing about the model.

    Examples
    --------
    >>> hb.compare({"OLS": fit_ols, "HLM": fit_hlm})  # doctest: +SKIP
    """
    if len(fits) < 2:
        raise SpecError("compare needs at least two fits, as a dict of name -> fit")
    for name, f in fits.items():
        if "log_likelihood" not in f.idata.groups():
            why = f.idata.attrs.get("log_likelihood_absent", "fit it with log_likelihood=True")
            raise SpecError(f"fit {name!r} holds no log-likelihood: {why}")
    units = {name: f.idata.attrs.get("log_likelihood_unit", "row") for name, f in fits.items()}
    first = next(iter(fits))
    for name, unit in units.items():
        if unit != units[first]:
            raise SpecError(
                f"fit {first!r} has a log-likelihood per {units[first]} and fit {name!r} per "
                f"{unit}: leave-one-group-out and leave-one-row-out elpds are not on one "
                "scale. Fit both the same way (reduce=False reads the rows of both)"
            )
    observed = [_observed(f.idata) for f in fits.values()]
    # per-group sums from an engine that adds in parallel differ in the last bits run to run
    rtol = 0.0 if units[first] == "row" else 1e-9
    for name, values in zip(fits, observed, strict=True):
        if values.shape != observed[0].shape or not np.allclose(
            values, observed[0], rtol=rtol, atol=0.0
        ):
            raise SpecError(
                f"fit {name!r} was made on other observations than {next(iter(fits))!r}: "
                "LOO compares models of the same data only"
            )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # ArviZ warns about Pareto k; reported as a column
        loos = {name: az.loo(f.idata, pointwise=True) for name, f in fits.items()}
        table = az.compare(loos, ic="loo")
    del caught
    out = table[["elpd_loo", "se", "p_loo", "elpd_diff", "dse"]].copy()
    lpd = np.column_stack([np.asarray(loos[name].loo_i).ravel() for name in out.index])
    out["weight"] = stacking_weights(lpd)  # ArviZ's underflow for whole groups (core.stacking)
    out["residual_sd"] = [
        float(fits[name].idata.posterior["sigma"].mean())
        if "sigma" in fits[name].idata.posterior
        else np.nan
        for name in out.index
    ]
    out["pareto_k_warning"] = table["warning"].astype(bool)
    problems = {
        name: fits[name].diagnostics.failed_checks()
        + (["Pareto k > 0.7"] if out.loc[name, "pareto_k_warning"] else [])
        for name in out.index
    }
    out["problems"] = ["; ".join(problems[name]) for name in out.index]
    out.index.name = "model"
    bad = {name: p for name, p in problems.items() if p}
    if bad:
        listed = "; ".join(f"{name!r} ({', '.join(p)})" for name, p in bad.items())
        sampling = any(p != ["Pareto k > 0.7"] for p in bad.values())
        advice = (
            "fix their sampling (see each fit's diagnostics), and read a high Pareto k as LOO "
            "failing for those rows, before comparing"
            if sampling
            else "their sampler checks passed, but PSIS-LOO is unreliable for the rows with "
            "Pareto k > 0.7 (influential rows, or a model too flexible for them): compare "
            "with leave-one-group-out or K-fold cross-validation, or read the elpd as rough"
        )
        warnings.warn(
            f"compare: {listed}. The ranking of these fits is not to be trusted: {advice}",
            SamplingWarning,
            stacklevel=2,
        )
    return out
