"""lme4's accessors as tidy tables of posterior summaries: fixef, ranef, coef and VarCorr.

Each takes a :class:`~hierbayes.spec.design.Design` and the posterior and returns a DataFrame,
one row per quantity, with the posterior ``mean``, ``sd`` and the ends of the highest-density
interval (:func:`hierbayes.core.intervals.summarize`). They cover the mean model: the
population-level terms and the grouping factors of the formula (a distributional parameter's
own terms are in :meth:`hierbayes.Fit.summary`).

* ``fixef``: the population-level coefficients (lme4's ``fixef``).
* ``ranef``: each group's deviations ``u_<factor>`` from the population (``ranef``).
* ``coef``: each group's own coefficients ``b_<factor>`` (``coef``): the population
  coefficients of the factor's terms, plus the group-level predictors' part, plus ``u``.
* ``arviz_table``: ArviZ's summary (with MCSE, ESS and R-hat) of every quantity above the
  group level, the distributional parameters' terms and the family's parameters included,
  one row per scalar.
* ``varcorr``: per factor the SD of each term and the correlation of each pair, and the
  residual SD (``VarCorr``), with the REML estimate beside them where one exists
  (:mod:`hierbayes.analysis.eb`: one grouping factor, Gaussian).
"""

from __future__ import annotations

from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.analysis.eb import EmpiricalBayes
from hierbayes.core.intervals import SUMMARY_COLUMNS, summarize
from hierbayes.posterior.draws import posterior_draws
from hierbayes.spec.design import Design

__all__ = ["arviz_table", "coef", "fixef", "ranef", "summary_frame", "varcorr"]


def fixef(design: Design, idata: az.InferenceData, hdi_prob: float = 0.94) -> pd.DataFrame:
    """The population-level coefficients, indexed by term.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("y ~ 1 + (1 | school)", hb.datasets.load("eight_schools")).design
    >>> idata = az.from_dict(posterior={"Intercept": np.array([[1.0, 2.0, 3.0]])})
    >>> fixef(d, idata, hdi_prob=0.5).round(2).to_dict("index")
    {'Intercept': {'mean': 2.0, 'sd': 1.0, 'hdi_lower': 1.0, 'hdi_upper': 2.0}}
    """
    draws = {name: posterior_draws(idata, name) for name in design.fixed_names}
    return summary_frame(draws, "term", hdi_prob)


def summary_frame(draws: Mapping[str, np.ndarray], index: str, hdi_prob: float) -> pd.DataFrame:
    """One row per entry of ``draws`` (name -> draws of a scalar): mean, SD and HDI, indexed
    by the names under ``index``.

    Examples
    --------
    >>> summary_frame({"a": np.array([1.0, 2.0, 3.0])}, "name", 0.5).round(1).to_dict("index")
    {'a': {'mean': 2.0, 'sd': 1.0, 'hdi_lower': 1.0, 'hdi_upper': 2.0}}
    """
    rows = [summarize(values, hdi_prob) for values in draws.values()]
    return pd.DataFrame(
        rows, columns=list(SUMMARY_COLUMNS), index=pd.Index(list(draws), name=index)
    )


def _group_table(
    design: Design, idata: az.InferenceData, prefix: str, hdi_prob: float
) -> pd.DataFrame:
    frames = []
    for f in design.factors:
        stats = summarize(posterior_draws(idata, f"{prefix}_{f.name}"), hdi_prob)  # (J, q, 4)
        J, q = f.n_groups, len(f.terms)
        frames.append(
            pd.DataFrame(
                {
                    "factor": f.name,
                    "group": np.repeat(np.asarray(f.levels, dtype=object), q),
                    "term": np.tile(np.asarray(f.terms, dtype=object), J),
                    **{c: stats[..., k].ravel() for k, c in enumerate(SUMMARY_COLUMNS)},
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def ranef(design: Design, idata: az.InferenceData, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Each group's deviations from the population (``u_<factor>``): one row per factor,
    group and term, with columns ``factor``, ``group``, ``term`` and the summary.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("y ~ 1 + (1 | school)", hb.datasets.load("eight_schools")).design
    >>> u = np.arange(16.0).reshape(1, 2, 8, 1)  # one chain, two draws
    >>> idata = az.from_dict(posterior={"u_school": u}, dims={"u_school": ["school", "t"]})
    >>> row = ranef(d, idata).iloc[0]
    >>> row["factor"], row["group"], row["term"], float(row["mean"])
    ('school', 'A', 'Intercept', 4.0)
    """
    return _group_table(design, idata, "u", hdi_prob)


def coef(design: Design, idata: az.InferenceData, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Each group's own coefficients (``b_<factor>``): laid out as :func:`ranef`.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("y ~ 1 + (1 | school)", hb.datasets.load("eight_schools")).design
    >>> b = np.full((1, 2, 8, 1), 7.5)
    >>> idata = az.from_dict(posterior={"b_school": b}, dims={"b_school": ["school", "t"]})
    >>> coef(d, idata)["mean"].tolist() == [7.5] * 8
    True
    """
    return _group_table(design, idata, "b", hdi_prob)


def varcorr(
    design: Design,
    idata: az.InferenceData,
    hdi_prob: float = 0.94,
    eb: EmpiricalBayes | None = None,
) -> pd.DataFrame:
    """SDs and correlations of the group-level effects, and the residual SD.

    Columns ``factor`` (``"Residual"`` for sigma), ``quantity`` (``"sd"`` or ``"corr"``),
    ``term`` (``"a"``, or ``"a, b"`` for a correlation), the summary, and ``reml``: the
    REML estimate of ``eb`` where it has one (NaN otherwise, and without ``eb``).

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("normexam ~ 1 + (1 | school)", hb.datasets.load("exam")).design
    >>> idata = az.from_dict(posterior={"sd_school": np.full((1, 3, 1), 0.4),
    ...                                 "sigma": np.full((1, 3), 0.9)})
    >>> varcorr(d, idata).round(3)[["factor", "term", "mean"]].values.tolist()
    [['school', 'Intercept', 0.4], ['Residual', 'sigma', 0.9]]
    """
    rows: list[tuple] = []
    reml: dict[tuple, float] = {}
    if eb is not None and eb.factor is not None:
        cov = eb.cov_re.to_numpy()
        sd = np.sqrt(np.diag(cov))
        for i, a in enumerate(eb.cov_re.index):
            reml[(eb.factor, "sd", a)] = sd[i]
            for j in range(i):
                reml[(eb.factor, "corr", f"{eb.cov_re.index[j]}, {a}")] = cov[i, j] / (
                    sd[i] * sd[j]
                )
        reml[("Residual", "sd", "sigma")] = float(np.sqrt(eb.sigma2))
    for f in design.factors:
        sds = posterior_draws(idata, f"sd_{f.name}")
        for i, term in enumerate(f.terms):
            rows.append((f.name, "sd", term, summarize(sds[:, i], hdi_prob)))
        if f.correlated:
            corr = posterior_draws(idata, f"corr_{f.name}")
            for i, a in enumerate(f.terms):
                for j in range(i):
                    pair = f"{f.terms[j]}, {a}"
                    rows.append((f.name, "corr", pair, summarize(corr[:, i, j], hdi_prob)))
    if "sigma" in design.aux:
        rows.append(
            ("Residual", "sd", "sigma", summarize(posterior_draws(idata, "sigma"), hdi_prob))
        )
    table = pd.DataFrame(
        [(f, q, t, *s) for f, q, t, s in rows],
        columns=["factor", "quantity", "term", *SUMMARY_COLUMNS],
    )
    table["reml"] = [reml.get((f, q, t), np.nan) for f, q, t, _ in rows]
    return table


def arviz_table(design: Design, idata: az.InferenceData, hdi_prob: float = 0.94) -> pd.DataFrame:
    """ArviZ's summary of the population-level terms, group SDs, correlations and the
    family's parameters, one row per scalar.

    Rows: the population-level terms (the distributional parameters' after the mean's), then
    per factor ``sd_<factor>[term]`` and, if correlated, ``corr_<factor>[a, b]`` once per
    pair (the lower triangle, as lme4 prints them), then the family's parameters
    (``cutpoints[a|b]`` by level pair).

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("normexam ~ 1 + (1 | school)", hb.datasets.load("exam")).design
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior={"Intercept": rng.normal(size=(2, 50)),
    ...     "sd_school": rng.gamma(9, 0.05, (2, 50, 1)), "sigma": rng.gamma(9, 0.1, (2, 50))},
    ...     dims={"sd_school": ["school_term"]}, coords={"school_term": ["Intercept"]})
    >>> arviz_table(d, idata).index.tolist()
    ['Intercept', 'sd_school[Intercept]', 'sigma']
    """
    post = idata.posterior
    columns: dict[str, xr.DataArray] = {}
    dpar_names = tuple(n for d in design.dpars for n in d.fixed_names)
    for name in design.fixed_names + dpar_names:
        columns[name] = post[name]
    for f in [*design.factors, *(f for d in design.dpars for f in d.factors)]:
        for term in f.terms:
            columns[f"sd_{f.name}[{term}]"] = post[f"sd_{f.name}"].sel({f.term_dim: term})
        if f.correlated:
            corr = post[f"corr_{f.name}"]
            for j, a in enumerate(f.terms):
                for b in f.terms[j + 1 :]:
                    columns[f"corr_{f.name}[{a}, {b}]"] = corr.sel(
                        {f.term_dim: a, f"{f.term_dim}2": b}
                    )
    for name in design.aux:
        if name == "cutpoints":
            for label in post["cutpoints"]["cutpoint"].values:
                columns[f"cutpoints[{label}]"] = post["cutpoints"].sel(cutpoint=label)
        else:
            columns[name] = post[name]
    table = xr.Dataset(
        {k: v.drop_vars(list(v.coords.keys() - {"chain", "draw"})) for k, v in columns.items()}
    )
    return az.summary(table, hdi_prob=hdi_prob)
