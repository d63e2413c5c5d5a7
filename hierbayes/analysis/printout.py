"""A fit printed as lme4's ``summary()`` lays a mixed model out, with posterior summaries.

Family and formula; the parameterisation and the draws; the random effects (per factor each
term's SD, then the correlations with the terms above it, as lme4 prints them, and the
residual SD); the number of observations and of groups per factor; the fixed effects; the
family's other auxiliary parameters; the sampler diagnostics. Every figure is a posterior
mean with its SD and highest-density interval (:mod:`hierbayes.analysis.tidy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd

from hierbayes.analysis.tidy import fixef, varcorr
from hierbayes.core.intervals import summarize
from hierbayes.posterior.draws import posterior_draws
from hierbayes.spec.design import Design

__all__ = ["Summary", "lme4_summary"]


@dataclass(frozen=True)
class Summary:
    """A fit's summary: shown as lme4's layout, with ArviZ's table behind it.

    Attributes
    ----------
    text : str
        The fit in the layout of lme4's ``summary()`` (:func:`lme4_summary`); ``print`` and
        a notebook show it.
    table : pandas.DataFrame
        ArviZ's summary, one row per scalar quantity, with MCSE, ESS and R-hat
        (:func:`hierbayes.analysis.tidy.arviz_table`).

    Examples
    --------
    >>> import pandas as pd
    >>> s = Summary("Formula: y ~ 1", pd.DataFrame({"mean": [0.5]}, index=["Intercept"]))
    >>> print(s)
    Formula: y ~ 1
    >>> float(s.table.loc["Intercept", "mean"])
    0.5
    """

    text: str
    table: pd.DataFrame

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _number(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else "NaN"


def _columns(rows: list[list[str]], header: list[str]) -> list[str]:
    """Left-aligned text columns, one space of indent as lme4 prints them."""
    table = [header, *rows]
    widths = [max(len(r[k]) for r in table) for k in range(len(header))]
    return [
        " " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
    ]


def _interval(row: pd.Series) -> str:
    return f"[{_number(row['hdi_lower'])}, {_number(row['hdi_upper'])}]"


def _random_effects(design: Design, idata: az.InferenceData, hdi_prob: float) -> list[str]:
    vc = varcorr(design, idata, hdi_prob)
    sds = vc[vc.quantity == "sd"]
    corr = {(r.factor, r.term): r["mean"] for _, r in vc[vc.quantity == "corr"].iterrows()}
    rows = []
    for f in design.factors:
        for i, term in enumerate(f.terms):
            row = sds[(sds.factor == f.name) & (sds.term == term)].iloc[0]
            above = [corr[(f.name, f"{f.terms[j]}, {term}")] for j in range(i) if f.correlated]
            rows.append(
                [
                    f.name if i == 0 else "",
                    term,
                    _number(row["mean"]),
                    _number(row["sd"]),
                    _interval(row),
                    " ".join(f"{c:.2f}" for c in above),
                ]
            )
    for _, row in sds[sds.factor == "Residual"].iterrows():
        rows.append(["Residual", "", _number(row["mean"]), _number(row["sd"]), _interval(row), ""])
    pct = f"{100 * hdi_prob:g}% HDI"
    return _columns(rows, ["Groups", "Name", "Std.Dev.", "sd", pct, "Corr"])


def lme4_summary(
    design: Design,
    idata: az.InferenceData,
    *,
    formula: str,
    parameterization: str,
    diagnostics: str,
    hdi_prob: float = 0.94,
) -> str:
    """The fit as text in the layout of lme4's ``summary()`` (module docstring).

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("normexam ~ 1 + (1 | school)", hb.datasets.load("exam")).design
    >>> idata = az.from_dict(posterior={"Intercept": np.full((1, 3), -0.01),
    ...     "sd_school": np.full((1, 3, 1), 0.41), "sigma": np.full((1, 3), 0.92)})
    >>> print(lme4_summary(d, idata, formula="normexam ~ 1 + (1 | school)",
    ...                    parameterization="marginal", diagnostics="verdict ok"))
    Bayesian multilevel model (hierbayes): gaussian family, identity link
    Formula: normexam ~ 1 + (1 | school)
    Parameterisation: marginal; 1 chains x 3 draws
    <BLANKLINE>
    Random effects:
     Groups    Name       Std.Dev.  sd  94% HDI       Corr
     school    Intercept  0.41      0   [0.41, 0.41]
     Residual             0.92      0   [0.92, 0.92]
    Number of obs: 4059, groups: school, 65
    <BLANKLINE>
    Fixed effects:
                Estimate  Est.Error  94% HDI
     Intercept  -0.01     0          [-0.01, -0.01]
    <BLANKLINE>
    verdict ok
    """
    post = idata.posterior
    family = design.family
    lines = [
        f"Bayesian multilevel model (hierbayes): {family.name} family, {family.link} link",
        f"Formula: {formula}",
        f"Parameterisation: {parameterization}; "
        f"{post.sizes['chain']} chains x {post.sizes['draw']} draws",
        "",
    ]
    if design.factors:
        lines += ["Random effects:", *_random_effects(design, idata, hdi_prob)]
    groups = ", ".join(f"{f.name}, {f.n_groups}" for f in design.factors)
    held = f" (held as {design.reduced})" if design.reduced else ""
    lines.append(
        f"Number of obs: {design.n_rows}{held}" + (f", groups: {groups}" if groups else "")
    )
    fixed = fixef(design, idata, hdi_prob)
    if len(fixed):
        pct = f"{100 * hdi_prob:g}% HDI"
        rows = [
            [term, _number(r["mean"]), _number(r["sd"]), _interval(r)]
            for term, r in fixed.iterrows()
        ]
        lines += ["", "Fixed effects:", *_columns(rows, ["", "Estimate", "Est.Error", pct])]
    aux = [a for a in design.aux if a != "sigma"]
    if aux:
        rows = []
        for name in aux:
            draws = posterior_draws(idata, name).reshape(len(post.chain) * len(post.draw), -1)
            for k, stats in enumerate(summarize(draws, hdi_prob)):
                label = name if draws.shape[1] == 1 else f"{name}[{k}]"
                rows.append(
                    [
                        label,
                        _number(stats[0]),
                        _number(stats[1]),
                        f"[{_number(stats[2])}, {_number(stats[3])}]",
                    ]
                )
        lines += ["", "Family parameters:", *_columns(rows, ["", "Estimate", "Est.Error", "HDI"])]
    return "\n".join([*lines, "", diagnostics])
