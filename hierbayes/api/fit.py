"""A fitted model: the posterior as ArviZ InferenceData, its diagnostics, and reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.analysis import tidy, variance
from hierbayes.analysis.eb import empirical_bayes as run_eb
from hierbayes.analysis.eb import unavailable as eb_unavailable
from hierbayes.analysis.effects import effects as effects_table
from hierbayes.analysis.plots import plot_effects, plot_ppc, ppc_view
from hierbayes.analysis.predict import predict
from hierbayes.analysis.printout import Summary, lme4_summary
from hierbayes.analysis.report import PoolingReport, pooling_report
from hierbayes.backend.plan import Plan
from hierbayes.errors import SpecError
from hierbayes.posterior.diagnostics import Diagnostics, diagnose, warn_problems
from hierbayes.posterior.storage import atomic_write, write_fit
from hierbayes.spec.design import Design
from hierbayes.spec.families import level_scores
from hierbayes.spec.modelspec import ModelSpec
from hierbayes.spec.sources import to_pandas

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Fit", "FittedModel"]


class FittedModel(Protocol):
    """What a fit needs of its model (:class:`hierbayes.Model` has it all)."""

    spec: ModelSpec
    design: Design
    data: pd.DataFrame
    plan: Plan


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

    def __init__(
        self,
        model: FittedModel,
        idata: az.InferenceData,
        *,
        target_accept: float,
        warn: bool = True,
    ) -> None:
        self.model = model
        self.idata = idata
        self.target_accept = target_accept
        self.diagnostics: Diagnostics = diagnose(idata)
        if warn:
            warn_problems(
                self.diagnostics,
                parameterization=model.plan.describe(),
                target_accept=target_accept,
                stacklevel=4,
            )

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fit, its model spec and its data to a netCDF file (atomically); a model of
        per-group sums stores those sums, not rows.

        :func:`hierbayes.load` reads it back, ready to report, predict and compare without
        refitting. An existing file is replaced only with ``overwrite=True``.

        Examples
        --------
        >>> fit.save("eight_schools.nc")  # doctest: +SKIP
        >>> again = hb.load("eight_schools.nc")  # doctest: +SKIP
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{str(path)!r} exists: pass overwrite=True to replace it")
        atomic_write(path, self.write_netcdf)
        return path

    def write_netcdf(self, path: str | Path) -> None:
        """Write the fit to ``path`` as it stands, not atomically: :meth:`save` is the safe way.

        The CLI writes its ``posterior.nc`` with it, among files written together.
        """
        design = self.model.design
        if design.sums is not None:  # no rows: the per-group sums
            kind, data = "group sums", design.sums.table
        elif design.multiplicity is None:
            kind, data = "rows", self.model.data[list(design.columns)]
        elif design.summed_offsets is not None:  # the cells, their count and offsets last
            frame = self.model.data
            kind, data = "cells", frame[[*design.columns, *frame.columns[-2:]]]
        else:  # the distinct rows, their count (the weights column) last, as load reads it
            count = design.weights_column
            columns = [c for c in design.columns if c != count] + [count]
            kind, data = "distinct rows", self.model.data[columns]
        write_fit(Path(path), self.idata, self.model.spec, data, self.target_accept, kind)

    def pooling(self, hdi_prob: float = 0.94, empirical_bayes: bool = True) -> PoolingReport:
        """No pooling vs complete pooling vs empirical Bayes vs full Bayes, per group and term.

        Parameters
        ----------
        hdi_prob : float
            Probability of the posterior intervals (94% by default).
        empirical_bayes : bool
            Add the REML empirical-Bayes estimates (:func:`hierbayes.empirical_bayes`) as the
            columns ``empirical_bayes``, ``eb_lower``, ``eb_upper`` when the model allows
            them (Gaussian, residual SD estimated, one grouping factor).

        Examples
        --------
        >>> report = fit.pooling()  # doctest: +SKIP
        >>> report.table.columns.tolist()[:4]  # doctest: +SKIP
        ['factor', 'group', 'term', 'n']
        """
        design = self.model.design
        eb = None
        if empirical_bayes and design.factors and eb_unavailable(design) is None:
            eb = run_eb(design)
        return pooling_report(self.idata, design, hdi_prob=hdi_prob, eb=eb)

    def predict(
        self,
        data: pd.DataFrame,
        kind: str = "mean",
        new_groups: str = "population",
        random_seed: int | None = None,
        draws: int | None = None,
        group_effects: bool = True,
    ) -> xr.DataArray:
        """Posterior predictions for new rows: dims ``(chain, draw, obs)``.

        Parameters
        ----------
        data : pandas.DataFrame, path, SQL text or another engine's frame
            Rows to predict, with the formula's predictor and grouping columns (and, for
            ``kind="response"``, the ``se`` or ``trials`` column the model uses); any input
            :class:`~hierbayes.Model` takes (:mod:`hierbayes.spec.sources`), collected whole.
        kind : {"mean", "response"}
            ``"mean"``: the expected response (probability for bernoulli/binomial, rate for
            poisson) per draw; ``"response"``: a draw of the response itself.
        new_groups : {"population", "error"}
            For a group the model never saw: ``"population"`` draws its effects from the
            fitted population distribution Normal(0, T) (a new draw for each posterior
            draw); ``"error"`` raises :class:`~hierbayes.errors.DataError` naming the labels.
        random_seed : int, optional
            Seeds the new-group and response draws.
        draws : int, optional
            Use only this many draws of each chain, evenly spaced (the ``draw`` coordinate
            keeps their numbers). The result holds chains x draws x rows float64 numbers:
            for 10^6 rows and 4 chains, ``draws=100`` makes 3.2 GB, all 1,000 draws 32 GB.
            The work beside the result is done a chunk of draws at a time.
        group_effects : bool
            False: leave every group effect out, the population-level terms alone (lme4's
            ``re.form = NA``, brms' ``re_formula = NA``).

        Examples
        --------
        >>> mu = fit.predict(df.head(2)).mean(("chain", "draw"))  # doctest: +SKIP
        >>> fit.predict(df, draws=100).sizes["draw"]  # doctest: +SKIP
        100
        """
        model = self.model
        return predict(
            self.idata,
            model.data,
            model.design,
            model.spec,
            to_pandas(data),
            kind=kind,
            new_groups=new_groups,
            random_seed=random_seed,
            draws=draws,
            group_effects=group_effects,
        )

    def summary(self, hdi_prob: float = 0.94) -> Summary:
        """The fit as lme4's ``summary()`` lays it out, with ArviZ's table behind it.

        Printed (or shown in a notebook) it is the text of ``print(fit)``
        (:mod:`hierbayes.analysis.printout`). Its ``table`` is ArviZ's summary of the
        population-level terms, group SDs, correlations (``corr_<factor>[a, b]``, the lower
        triangle, as lme4 prints them) and the family's parameters: mean, SD, HDI, MCSE, ESS
        and R-hat per row (:func:`hierbayes.analysis.tidy.arviz_table`).

        Examples
        --------
        >>> print(fit.summary())  # doctest: +SKIP
        Bayesian multilevel model (hierbayes): gaussian family, identity link
        ...
        >>> fit.summary().table.index.tolist()  # doctest: +SKIP
        ['Intercept', 'standLRT', 'sd_school[Intercept]', 'sd_school[standLRT]',
         'corr_school[Intercept, standLRT]', 'sigma']
        """
        return Summary(
            self._lme4_text(hdi_prob), tidy.arviz_table(self.model.design, self.idata, hdi_prob)
        )

    def _lme4_text(self, hdi_prob: float = 0.94) -> str:
        sampler = self.idata.posterior.attrs.get("inference_library", "")
        return lme4_summary(
            self.model.design,
            self.idata,
            formula=str(self.model.spec.formula),
            parameterization=self.model.plan.describe() + (f", {sampler}" if sampler else ""),
            diagnostics=f"Diagnostics:\n{self.diagnostics}",
            hdi_prob=hdi_prob,
        )

    def posterior_predictive(
        self, random_seed: int | None = None, draws: int | None = None
    ) -> az.InferenceData:
        """Add the ``posterior_predictive`` group: a replicated data set per posterior draw.

        Each draw's response comes from the family given that draw's parameters and the
        group effects of the rows' own groups (:meth:`predict` with ``kind="response"`` on
        the fitted rows), with the ``obs`` coordinate of ``observed_data``, so that ArviZ's
        ``az.plot_ppc(fit.idata)`` and ``az.plot_bpv`` work on the fit directly. An ordinal
        response is replicated as its level codes 0..K-1, as ``observed_data`` holds it. An
        existing group is replaced. Returns ``fit.idata``.

        Parameters
        ----------
        random_seed : int, optional
            Seeds the replicated responses.
        draws : int, optional
            Only this many draws of each chain, evenly spaced (chains x draws x rows numbers).

        Examples
        --------
        >>> idata = fit.posterior_predictive(random_seed=1, draws=100)  # doctest: +SKIP
        >>> az.plot_ppc(idata)  # doctest: +SKIP
        """
        model = self.model
        model.design.require_rows("the posterior predictive of the fitted rows")
        replicated = self.predict(model.data, kind="response", random_seed=random_seed, draws=draws)
        observed = self.idata.observed_data[model.design.response]
        replicated = replicated.assign_coords(obs=observed["obs"].values)
        levels = model.design.response_levels
        if levels is not None:  # predictions give the levels' values, observed_data their codes
            codes = np.searchsorted(level_scores(levels), replicated.values)
            replicated = replicated.copy(data=codes.astype(float))
        group = xr.Dataset({model.design.response: replicated})
        if "posterior_predictive" in self.idata.groups():
            del self.idata.posterior_predictive
        self.idata.add_groups(posterior_predictive=group)
        return self.idata

    def plot_ppc(
        self,
        group: str | None = None,
        groups: list | None = None,
        *,
        draws: int = 100,
        random_seed: int | None = None,
    ) -> Figure:
        """The posterior predictive check in the view that suits the response
        (:func:`hierbayes.analysis.plots.plot_ppc`): densities for a continuous response, bars
        for counts and ordinal levels, a calibration plot for 0/1 responses. Adds the
        ``posterior_predictive`` group (:meth:`posterior_predictive`, ``draws`` per chain).
        With ``group`` (a grouping column) and ``groups`` (its labels; by default its six
        largest groups), one panel per group: its rows against their replicates.

        Examples
        --------
        >>> fig = fit.plot_ppc(random_seed=1)  # doctest: +SKIP
        >>> fig = fit.plot_ppc(group="school", groups=[1, 48])  # doctest: +SKIP
        """
        design = self.model.design
        idata = self.posterior_predictive(random_seed=random_seed, draws=draws)
        replicated = idata.posterior_predictive[design.response].values
        replicated = replicated.reshape(-1, replicated.shape[-1])
        observed = idata.observed_data[design.response].values
        view = ppc_view(design.family)
        options: dict = {"response": design.response}
        if group is not None:
            if group not in self.model.data:
                raise SpecError(f"group={group!r} is not a column of the model's data")
            labels = self.model.data[group].to_numpy()
            largest = list(pd.Series(labels).value_counts().index[:6])
            options |= {"groups": labels, "labels": groups if groups is not None else largest}
        elif view == "calibration":
            mean = self.predict(self.model.data, draws=draws).mean(("chain", "draw"))
            options["predicted"] = mean.values
        return plot_ppc(observed, replicated, view, **options)

    def effects(
        self,
        x: str,
        by: str | None = None,
        groups: list | None = None,
        *,
        predictive: bool = False,
        hdi_prob: float = 0.94,
        draws: int | None = None,
        random_seed: int | None = None,
    ) -> pd.DataFrame:
        """Conditional effects of ``x`` (brms' ``conditional_effects``): the expected response
        over a grid of ``x``, the other predictors at reference values (mean, or the first
        level), as a table (:mod:`hierbayes.analysis.effects`).

        Parameters
        ----------
        x : str
            The predictor to vary: a numeric column (50 points over its range) or a
            categorical one (each level).
        by : str, optional
            A second column: a numeric one at its mean and mean +- 1 SD, a categorical one at
            each level, or a grouping column, whose ``groups`` get their own curves; without a
            grouping column the curve is the population line (no group effects).
        groups : list, optional
            The groups to draw when ``by`` is a grouping column.
        predictive : bool
            Also the HDI of a new observation (``predictive_lower``, ``predictive_upper``).
        hdi_prob, draws, random_seed
            The interval's probability; draws per chain (all by default); the seed of the
            predictive draws.

        Examples
        --------
        >>> fit.effects("standLRT").columns.tolist()  # doctest: +SKIP
        ['standLRT', 'mean', 'hdi_lower', 'hdi_upper']
        """
        model = self.model
        return effects_table(
            self.idata, model.data, model.design, model.spec, x, by, groups,
            predictive=predictive, hdi_prob=hdi_prob, draws=draws, random_seed=random_seed,
        )  # fmt: skip

    def plot_effects(self, x: str, by: str | None = None, groups: list | None = None,
                     **options: object) -> Figure:  # fmt: skip
        """The conditional-effects plot of :meth:`effects` (same arguments): the expected
        response with its HDI band, one curve per ``by`` value.

        Examples
        --------
        >>> fig = fit.plot_effects("standLRT", by="school", groups=[1, 2])  # doctest: +SKIP
        """
        table = self.effects(x, by, groups, **options)  # type: ignore[arg-type]
        return plot_effects(table, x, by, response=self.model.design.response)

    def fixef(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """The population-level coefficients (lme4's ``fixef``): posterior mean, SD and HDI,
        indexed by term (:mod:`hierbayes.analysis.tidy`).

        Examples
        --------
        >>> fit.fixef().columns.tolist()  # doctest: +SKIP
        ['mean', 'sd', 'hdi_lower', 'hdi_upper']
        """
        return tidy.fixef(self.model.design, self.idata, hdi_prob)

    def ranef(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Each group's deviations from the population, ``u_<factor>`` (lme4's ``ranef``):
        one row per factor, group and term.

        Examples
        --------
        >>> fit.ranef().columns.tolist()  # doctest: +SKIP
        ['factor', 'group', 'term', 'mean', 'sd', 'hdi_lower', 'hdi_upper']
        """
        return tidy.ranef(self.model.design, self.idata, hdi_prob)

    def coef(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Each group's own coefficients, ``b_<factor>`` (lme4's ``coef``), laid out as
        :meth:`ranef`.

        Examples
        --------
        >>> fit.coef().query("group == '1'")  # doctest: +SKIP
        """
        return tidy.coef(self.model.design, self.idata, hdi_prob)

    def varcorr(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """SDs and correlations of the group-level effects and the residual SD (lme4's
        ``VarCorr``), with the REML estimate in column ``reml`` where the model has one (one
        grouping factor, Gaussian, residual SD estimated; NaN otherwise).

        Examples
        --------
        >>> fit.varcorr()[["factor", "quantity", "term", "mean", "reml"]]  # doctest: +SKIP
        """
        design = self.model.design
        eb = None
        if len(design.factors) == 1 and eb_unavailable(design) is None:
            eb = run_eb(design)
        return tidy.varcorr(design, self.idata, hdi_prob, eb=eb)

    def icc(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """The intraclass correlation of each grouping factor, per posterior draw summarised:
        V_f / (sum of V_g + residual variance), on the latent scale for binary, binomial and
        Poisson models (:mod:`hierbayes.analysis.variance` says how).

        Examples
        --------
        >>> fit.icc()  # doctest: +SKIP
        """
        return variance.icc(self.model.design, self.idata, hdi_prob)

    def r2(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Bayesian R² (Gelman et al. 2019), ``conditional`` (with the group effects) and
        ``marginal`` (population-level terms only), summarised over the posterior draws.

        Examples
        --------
        >>> fit.r2().loc["conditional", "mean"]  # doctest: +SKIP
        """
        return variance.r2(self.model.design, self.idata, hdi_prob)

    def __repr__(self) -> str:
        """The fit laid out as lme4's ``summary()`` (:mod:`hierbayes.analysis.printout`)."""
        return self._lme4_text()
