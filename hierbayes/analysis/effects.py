"""Conditional effects: the expected response over a grid of one predictor, as brms'
``conditional_effects`` and Bambi's ``interpret.plot_predictions`` show it.

The grid varies ``x`` (50 points from its smallest to its largest value, or each level of a
categorical column) and holds every other predictor at a reference value: a numeric column
at its mean, a categorical one at its first level (the reference level of its dummy
coding), an offset at its mean. ``by`` adds curves:

* a numeric column: at its mean minus one SD, its mean and its mean plus one SD (brms);
* a categorical column: at each of its levels;
* a grouping factor: the named ``groups``' own curves, their group effects included.

Without a grouping factor in ``by`` the curve is the population line: every group effect
left out (``re_formula = NA``), the group-level predictors at their reference values. Each
grid row gets the posterior mean of the expected response and its HDI and, with
``predictive=True``, the HDI of a new observation's response as well.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

from hierbayes.analysis.predict import predict
from hierbayes.core.intervals import hdi
from hierbayes.errors import SpecError
from hierbayes.spec.columns import is_numeric
from hierbayes.spec.design import Design
from hierbayes.spec.modelspec import ModelSpec

__all__ = ["GRID_POINTS", "effects", "effects_grid"]

#: Points of a numeric predictor's grid.
GRID_POINTS = 50


def _reference(values: pd.Series) -> object:
    """A column's reference value: the mean of a numeric one, else its first level."""
    if is_numeric(values):
        return float(values.mean())
    return pd.Categorical(values).categories[0]


def _levels(values: pd.Series) -> list:
    return list(pd.Categorical(values).categories)


def effects_grid(
    data: pd.DataFrame,
    design: Design,
    spec: ModelSpec,
    x: str,
    by: str | None = None,
    groups: list | None = None,
    points: int = GRID_POINTS,
) -> pd.DataFrame:
    """The rows to predict (module docstring): ``x`` over its grid, crossed with ``by``'s
    values, every other column the model reads at its reference value.

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("exam")
    >>> m = hb.Model("normexam ~ standLRT + (1 | school)", df)
    >>> grid = effects_grid(df, m.design, m.spec, "standLRT", points=3)
    >>> grid["standLRT"].round(2).tolist()
    [-2.93, 0.04, 3.02]
    """
    factor_names = {f.name for f in design.factors}
    reads = [c for c in design.columns if c not in (design.response, design.weights_column)]
    for name, role in ((x, "x"), (by, "by")):
        if name is not None and name not in reads and name not in factor_names:
            raise SpecError(
                f"{role}={name!r} is not a column the model reads; choose from {sorted(reads)}"
            )
    if x in factor_names:
        raise SpecError(f"x={x!r} is a grouping factor: give it as by= with groups=[...]")
    numeric = is_numeric(data[x])
    grid = np.linspace(data[x].min(), data[x].max(), points) if numeric else _levels(data[x])
    base = {c: _reference(data[c]) for c in reads if c != x}
    for f in design.factors:  # any seen label: the population line leaves the effects out
        for c in f.columns:
            base[c] = data[c].iloc[0]
    if by is None:
        values: list = [None]
    elif by in factor_names:
        (f,) = (f for f in design.factors if f.name == by)
        if f.columns != (by,):
            raise SpecError(
                f"by={by!r} is a factor of the columns {list(f.columns)}: give one grouping "
                "column as by="
            )
        if not groups:
            raise SpecError(f"by={by!r} is a grouping factor: name the groups=[...] to draw")
        values = list(groups)
    elif is_numeric(data[by]):
        m, s = float(data[by].mean()), float(data[by].std())
        values = [m - s, m, m + s]
    else:
        values = _levels(data[by])
    frames = []
    for value in values:
        rows = pd.DataFrame({x: grid})
        for c, v in base.items():
            rows[c] = v
        if by is not None:
            rows[by] = value
        frames.append(rows)
    out = pd.concat(frames, ignore_index=True)
    for c in reads:  # the model's column types (categories, integers) for the new rows
        if c in data and isinstance(data[c].dtype, pd.CategoricalDtype):
            out[c] = pd.Categorical(out[c], categories=data[c].cat.categories)
    return out


def effects(
    idata: az.InferenceData,
    data: pd.DataFrame,
    design: Design,
    spec: ModelSpec,
    x: str,
    by: str | None = None,
    groups: list | None = None,
    *,
    predictive: bool = False,
    hdi_prob: float = 0.94,
    points: int = GRID_POINTS,
    draws: int | None = None,
    random_seed: int | None = None,
) -> pd.DataFrame:
    """The expected response over ``x``'s grid (module docstring): one row per grid point
    (and ``by`` value) with ``x``, ``by``, ``mean``, ``hdi_lower``, ``hdi_upper`` and, with
    ``predictive``, ``predictive_lower`` and ``predictive_upper``.

    Examples
    --------
    >>> fit.effects("standLRT").head(2)  # doctest: +SKIP
    """
    design.require_rows("fit.effects")
    grid = effects_grid(data, design, spec, x, by, groups, points)
    factor = by is not None and by in {f.name for f in design.factors}
    options = {"group_effects": factor, "draws": draws, "random_seed": random_seed}
    mean = predict(idata, data, design, spec, grid, kind="mean", **options).values
    mean = mean.reshape(-1, len(grid))
    table = grid[[x] + ([by] if by is not None else [])].copy()
    table["mean"] = mean.mean(axis=0)
    table[["hdi_lower", "hdi_upper"]] = hdi(mean, hdi_prob)
    if predictive:
        needed = [c for c in (spec.se, spec.trials) if c is not None]
        if needed:
            raise SpecError(
                f"predictive=True needs each grid row's {needed[0]!r}, which a grid has no "
                "value for; leave it out to show the expected response"
            )
        response = predict(idata, data, design, spec, grid, kind="response", **options).values
        table[["predictive_lower", "predictive_upper"]] = hdi(
            response.reshape(-1, len(grid)), hdi_prob
        )
    return table
