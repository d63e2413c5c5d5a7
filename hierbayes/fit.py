"""A fitted model: the posterior as ArviZ InferenceData, its diagnostics, and reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

import arviz as az
import pandas as pd

from hierbayes.diagnostics import Diagnostics, diagnose, warn_problems
from hierbayes.report import PoolingReport, pooling_report

if TYPE_CHECKING:
    from hierbayes.model import Model

__all__ = ["Fit"]


class Fit:
    """The result of :meth:`hierbayes.Model.fit`.

    Attributes
    ----------
    model : Model
        The model that was fitted.
    idata : arviz.InferenceData
        ``posterior``, ``sample_stats``, ``observed_data`` and ``log_likelihood``, with
        coordinates named by the group labels; ``attrs`` record the formula,
        parameterisation, seed and hierbayes version.
    diagnostics : Diagnostics
        Divergences, max R-hat, min bulk/tail ESS, E-BFMI (checked, with warnings, on creation).
    """

    def __init__(self, model: Model, idata: az.InferenceData, *, target_accept: float) -> None:
        self.model = model
        self.idata = idata
        self.diagnostics: Diagnostics = diagnose(idata)
        warn_problems(
            self.diagnostics,
            parameterization=model.parameterization,
            target_accept=target_accept,
            stacklevel=4,
        )

    def pooling(self, hdi_prob: float = 0.94) -> PoolingReport:
        """No pooling vs complete pooling vs partial pooling, per group and term.

        Examples
        --------
        >>> report = fit.pooling()  # doctest: +SKIP
        >>> report.table.columns.tolist()[:4]  # doctest: +SKIP
        ['factor', 'group', 'term', 'n']
        """
        return pooling_report(self.idata, self.model.design, hdi_prob=hdi_prob)

    def summary(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """ArviZ summary of the population-level and group-SD parameters."""
        design = self.model.design
        names = list(design.fixed_names) + [f"sd_{f.name}" for f in design.factors]
        if design.estimates_sigma:
            names.append("sigma")
        return az.summary(self.idata, var_names=names, hdi_prob=hdi_prob)

    def __repr__(self) -> str:
        post = self.idata.posterior
        return (
            f"hierbayes.Fit: {self.model.spec.formula} ({self.model.parameterization}), "
            f"{post.sizes['chain']} chains x {post.sizes['draw']} draws\n{self.diagnostics}"
        )
