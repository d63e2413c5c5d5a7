"""The pooling report: what partial pooling did to each group, as tables and an xarray view.

Built from a posterior (any :class:`arviz.InferenceData` holding ``b_<factor>``,
``u_<factor>``, ``sd_<factor>`` and, when estimated, ``sigma``) and the model's
:class:`~hierbayes.spec.design.Design`; the numbers come from :mod:`hierbayes.core.pooling`.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.analysis.eb import EmpiricalBayes
from hierbayes.analysis.plots import plot_pooling
from hierbayes.core import pooling
from hierbayes.core.sums import no_pooling_sums
from hierbayes.errors import SpecError
from hierbayes.posterior.draws import RowDraws, posterior_draws
from hierbayes.spec.baselines import complete_pooling_fit, no_pooling_glm
from hierbayes.spec.design import Design, FactorDesign

__all__ = ["PoolingReport", "pooling_report", "TABLE_COLUMNS"]

TABLE_COLUMNS = [
    "factor",
    "group",
    "term",
    "n",
    "se",
    "no_pooling",
    "complete_pooling",
    "partial_pooling",
    "partial_pooling_sd",
    "hdi_lower",
    "hdi_upper",
    "shrinkage",
    "reliability",
]


def _factor_table(
    idata: az.InferenceData,
    design: Design,
    f: FactorDesign,
    pooled: tuple[np.ndarray, dict],
    hdi_prob: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    gamma, aux = pooled
    level1 = ~f.level2  # population columns with one common coefficient
    identity = design.family.link == "identity"
    if design.sums is not None:  # each group's least squares from its sums
        sums = design.factor_sums(f)
        common = [c for c, level in zip(sums.x_cols, level1, strict=True) if level]
        coef, cov, valid, group_se, _ = no_pooling_sums(
            sums.gram, sums.n, sums.z_cols[0], sums.y_col, common
        )
        fits = pooling.GroupFits(coef=coef, cov=cov, valid=valid)
    elif identity and design.weights is None:
        fits, group_se, _ = pooling.no_pooling(
            design.y_adjusted,
            f.Z,
            f.codes,
            f.n_groups,
            X_common=design.X[:, level1] if level1.any() else None,
            se=design.se,
        )
    else:  # a GLM per group; level-1 columns held at their complete-pooling values
        offset = design.X[:, level1] @ gamma[level1] + design.eta_offset
        fits, aux = no_pooling_glm(design, f.Z, f.codes, f.n_groups, offset, aux)
        group_se = np.sqrt(np.einsum("jkk->jk", fits.cov))
        if identity:  # Gaussian IRLS weights are 1: scale by the pooled residual SD
            group_se = group_se * (float(aux["sigma"]) if design.se is None else 1.0)
    # the population line each group is pulled towards, and the part of its no-pooling
    # coefficient that belongs to an earlier (crossed) factor's line
    complete = f.W[:, :, f.owns] @ gamma[f.owns]  # (J, q)
    offset = f.W[:, :, f.level2 & ~f.owns] @ gamma[f.level2 & ~f.owns]
    b = posterior_draws(idata, f"b_{f.name}")  # (S, J, q)
    u = posterior_draws(idata, f"u_{f.name}")
    sd = posterior_draws(idata, f"sd_{f.name}")  # (S, q)
    sigma = posterior_draws(idata, "sigma") if identity and design.estimates_sigma else None
    if sigma is not None and design.family.name == "student_t":
        # sigma is the t's scale: a row's information about its mean is
        # (nu + 1) / ((nu + 3) sigma^2), so its effective variance is sigma^2 (nu + 3) / (nu + 1)
        nu = posterior_draws(idata, "nu")
        sigma = sigma * np.sqrt((nu + 3.0) / (nu + 1.0))
    if identity and design.dpar("sigma") is not None:  # each group's own sigma, (S, J)
        sigma = RowDraws(idata, design.dpar("sigma")).group_rms(f.codes, f.n_groups)
    lam = pooling.reliability(sd, fits.cov, sigma)
    hdi = az.hdi(idata.posterior[f"b_{f.name}"], hdi_prob=hdi_prob)[f"b_{f.name}"]
    hdi = hdi.transpose(f.name, f.term_dim, "hdi").values

    rows = []
    for k, term in enumerate(f.terms):
        no = fits.coef[:, k] - offset[:, k]
        partial = b[:, :, k].mean(axis=0)
        rows.append(
            pd.DataFrame(
                {
                    "factor": f.name,
                    "group": f.levels,
                    "term": term,
                    "n": f.counts,
                    "se": group_se[:, k],
                    "no_pooling": no,
                    "complete_pooling": complete[:, k],
                    "partial_pooling": partial,
                    "partial_pooling_sd": b[:, :, k].std(axis=0, ddof=1),
                    "hdi_lower": hdi[:, k, 0],
                    "hdi_upper": hdi[:, k, 1],
                    "shrinkage": pooling.shrinkage(no, partial, complete[:, k]),
                    "reliability": lam[:, k],
                }
            )
        )
    sd_hdi = az.hdi(idata.posterior[f"sd_{f.name}"], hdi_prob=hdi_prob)[f"sd_{f.name}"]
    sd_hdi = sd_hdi.transpose(f.term_dim, "hdi").values
    lam_pool = pooling.pooling_factor(u)
    table = pd.concat(rows, ignore_index=True)
    summary = pd.DataFrame(
        {
            "factor": f.name,
            "term": list(f.terms),
            "groups": f.n_groups,
            "sd_mean": sd.mean(axis=0),
            "sd_sd": sd.std(axis=0, ddof=1),
            "sd_hdi_lower": sd_hdi[:, 0],
            "sd_hdi_upper": sd_hdi[:, 1],
            "pooling_factor": lam_pool,
            "mean_reliability": np.nanmean(lam, axis=0) if np.isfinite(lam).any() else np.nan,
        }
    )
    return table, summary


@dataclass(frozen=True, eq=False)
class PoolingReport:
    """No pooling, complete pooling and partial pooling side by side.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (factor, group, term); columns :data:`TABLE_COLUMNS`, then
        ``empirical_bayes``, ``eb_lower``, ``eb_upper`` when empirical Bayes was run.
    summary : pandas.DataFrame
        One row per (factor, term): the posterior of the group SD, Gelman & Pardoe's
        pooling factor and the mean reliability.
    hdi_prob : float
        Probability of the highest-density intervals.
    notes : tuple of str
        One line per (factor, term) whose no-pooling baseline does not exist for some groups
        (too few rows, or no variation in the term within the group): those rows have NaN in
        ``no_pooling``, ``se`` and ``shrinkage``, and the note names them.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    hdi_prob: float
    notes: tuple[str, ...] = ()

    def to_xarray(self) -> xr.Dataset:
        """The table as a Dataset with dims ``(factor, group, term)``.

        Examples
        --------
        >>> from hierbayes.testing import example_report
        >>> report = example_report()
        >>> report.to_xarray()["no_pooling"].dims
        ('factor', 'group', 'term')
        """
        frame = self.table.set_index(["factor", "group", "term"])
        return xr.Dataset.from_dataframe(frame).assign_attrs(hdi_prob=self.hdi_prob)

    def plot(self, **kwargs):
        """The shrinkage plot (:func:`~hierbayes.analysis.plots.plot_pooling`); its Figure."""
        return plot_pooling(self.table, self.hdi_prob, **kwargs)

    def __repr__(self) -> str:
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            return (
                f"PoolingReport ({100 * self.hdi_prob:g}% HDI)\n"
                f"{self.summary.round(3).to_string(index=False)}\n\n"
                f"{self.table.round(3).to_string(index=False)}"
            )


def pooling_report(
    idata: az.InferenceData,
    design: Design,
    hdi_prob: float = 0.94,
    eb: EmpiricalBayes | None = None,
) -> PoolingReport:
    """Compare each group's estimate under no, complete and partial pooling.

    Parameters
    ----------
    idata : arviz.InferenceData
        A posterior with the variables hierbayes' graphs expose.
    design : Design
        The design of the model that produced it.
    hdi_prob : float
        Probability of the highest-density intervals, 0.94 by default (ArviZ's).
    eb : EmpiricalBayes, optional
        REML empirical-Bayes results of the same model; adds the columns
        ``empirical_bayes``, ``eb_lower`` and ``eb_upper`` (its 95% intervals).

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.testing import example_report
    >>> report = example_report()
    >>> report.table[["group", "no_pooling", "complete_pooling"]].round(2).head(2)
      group  no_pooling  complete_pooling
    0     A        28.0              7.69
    1     B         8.0              7.69
    """
    if not 0 < hdi_prob < 1:
        raise SpecError(f"hdi_prob must be in (0, 1), got {hdi_prob!r}")
    if not design.factors:
        raise SpecError("the model has no group-level terms: there is no pooling to report")
    pooled = complete_pooling_fit(design)
    parts = [_factor_table(idata, design, f, pooled, hdi_prob) for f in design.factors]
    table = pd.concat([p[0] for p in parts], ignore_index=True)[TABLE_COLUMNS]
    if eb is not None:
        eb_cols = eb.table.rename(
            columns={"eb": "empirical_bayes", "lower": "eb_lower", "upper": "eb_upper"}
        )[["group", "term", "empirical_bayes", "eb_lower", "eb_upper"]]
        table = table.merge(eb_cols, on=["group", "term"], how="left", validate="one_to_one")
    return PoolingReport(
        table=table,
        summary=pd.concat([p[1] for p in parts], ignore_index=True),
        hdi_prob=hdi_prob,
        notes=_baseline_notes(table),
    )


def _baseline_notes(table: pd.DataFrame) -> tuple[str, ...]:
    """Name the groups whose own (no-pooling) estimate does not exist, per factor and term."""
    notes = []
    for (factor, term), rows in table.groupby(["factor", "term"], sort=False):
        missing = rows.loc[rows["no_pooling"].isna(), "group"].astype(str).tolist()
        if missing:
            shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            notes.append(
                f"{factor} / {term}: {len(missing)} group(s) have no no-pooling estimate (too "
                f"few rows, or no variation in the term within the group): {shown}; their "
                "no_pooling, se and shrinkage are NaN"
            )
    return tuple(notes)
