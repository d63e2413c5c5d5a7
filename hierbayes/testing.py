"""Fake results for examples and tests: no sampling, made-up draws. Not for analyses."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

from hierbayes.analysis.report import PoolingReport, pooling_report
from hierbayes.analysis.sbc_result import SBCResult
from hierbayes.api.datasets import load
from hierbayes.spec.design import build_design
from hierbayes.spec.families import GAUSSIAN
from hierbayes.spec.formula import parse

__all__ = ["example_report", "example_result"]


def example_report(seed: int = 0) -> PoolingReport:
    """A pooling report for eight schools from a synthetic posterior (no sampling).

    The draws are made up (``tau`` half-normal, school effects between the data and
    the pooled mean); it exists for examples and tests of the reporting layer.

    Examples
    --------
    >>> example_report().table["group"].tolist()[:3]
    ['A', 'B', 'C']
    """
    df = load("eight_schools")
    design = build_design(parse("y ~ 1 + (1 | school)"), df, se="sigma", family=GAUSSIAN)
    rng = np.random.default_rng(seed)
    mu = rng.normal(4.4, 3.3, size=(2, 200))
    tau = np.abs(rng.normal(0, 5, size=(2, 200, 1)))
    u = rng.normal(0.3 * (df["y"].to_numpy() - 4.4), 2.0, size=(2, 200, 8))[..., None]
    idata = az.from_dict(
        posterior={
            "Intercept": mu,
            "sd_school": tau,
            "u_school": u,
            "b_school": mu[..., None, None] + u,
        },
        coords={"school": list(df["school"]), "school_term": ["Intercept"]},
        dims={
            "sd_school": ["school_term"],
            "u_school": ["school", "school_term"],
            "b_school": ["school", "school_term"],
        },
    )
    return pooling_report(idata, design)


def example_result(n_simulations: int = 100, seed: int = 0) -> SBCResult:
    """A fake, calibrated SBC result (uniform ranks; no sampling), for examples and tests.

    Examples
    --------
    >>> example_result().ranks.shape
    (100, 2)
    """
    rng = np.random.default_rng(seed)
    names = ["mu", "tau"]
    ranks = pd.DataFrame(rng.integers(0, 100, size=(n_simulations, 2)), columns=names)
    ranks.index.name = "simulation"
    truth = pd.DataFrame(rng.normal(size=(n_simulations, 2)), columns=names, index=ranks.index)
    diagnostics = pd.DataFrame(
        {"divergences": 0, "min_ess_bulk": np.nan, "seconds": 0.0}, index=ranks.index
    )
    return SBCResult(ranks, 99, truth, diagnostics, {}, n_simulations)
