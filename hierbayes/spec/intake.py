"""From any data to a model's design: its rows, per-group sums, distinct rows or cells.

:class:`hierbayes.Model` hands its data here (a pandas frame, a path, SQL, another engine's
frame: :mod:`hierbayes.spec.sources`). One of four things happens, and
:attr:`Intake.form` says which:

* ``"sums"``: a Gaussian model whose terms are columns as they are reads only each group's
  (with several grouping factors, each cell's) cross-products, computed in the engine
  (:mod:`hierbayes.spec.reduce`);
* ``"distinct rows"``: a discrete-response model (bernoulli, binomial, the count families,
  cumulative) whose rows repeat reads its distinct rows with their counts, one ``GROUP BY``
  in the engine (:mod:`hierbayes.spec.distinct`), when at most half the rows are distinct;
* ``"cells"``: a Poisson model with an exposure (``offset(log(E))``) reads, per combination
  of its predictors and groups, the rows' summed counts and exposures
  (:mod:`hierbayes.spec.summed`), when there are at most half as many as rows;
* ``"rows"``: anything else reads the model's columns, one row per observation.

By default (``reduce=None``) data in an engine take the first of these that applies; a
pandas frame is used as rows. ``reduce=False`` reads rows; ``reduce=True`` asks for sums,
distinct rows or cells, pandas frames included, and says why none applies. Rows collapse
only when every term is computed row by row: ``scale(x)`` or ``bs(x)`` learn their state
from the rows they see, so with them the rows are read
(:func:`~hierbayes.spec.namespace.not_row_by_row`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.errors import DataError, DataWarning
from hierbayes.spec.design import Design, build_design, incomplete_rows, model_columns
from hierbayes.spec.distinct import (
    LOOK,
    WORTH,
    DistinctRows,
    collapse,
    collapsible,
    count_distinct,
)
from hierbayes.spec.dpars import parse_dpar
from hierbayes.spec.families import Family
from hierbayes.spec.formula import Formula
from hierbayes.spec.namespace import Namespace, not_row_by_row
from hierbayes.spec.reduce import GroupTable, check_reducible, reduced_design, unreducible
from hierbayes.spec.sources import (
    column_names,
    describe_source,
    open_source,
    refuse_incomplete,
    schema,
    to_pandas,
)
from hierbayes.spec.summed import Exposure, SummedCells, exposure, sum_cells

__all__ = ["Intake", "intake", "used_columns"]


@dataclass(frozen=True, eq=False)
class Intake:
    """A model's design, and the rows it was built from (None for sums): ``form`` is
    ``"rows"``, ``"sums"``, ``"distinct rows"`` or ``"cells"``; ``dropped`` the labels of the rows
    ``dropna=True`` dropped."""

    design: Design
    data: pd.DataFrame | None
    form: str
    dropped: pd.Index


def used_columns(
    formula: Formula,
    family: Family,
    dpars: Mapping[str, str],
    namespace: Namespace,
    data: pd.DataFrame,
    extra: list[str | None],
) -> list[str]:
    """The columns a model reads (``data`` may have no rows: only its names count)."""
    used = model_columns(formula, data, namespace, extra)
    for name, rhs in dpars.items():
        dpar = parse_dpar(name, rhs, family, formula.response)
        used += [c for c in model_columns(dpar, data, namespace, []) if c not in used]
    return used


def _drop_incomplete(
    formula: Formula, data: pd.DataFrame, columns: list[str]
) -> tuple[pd.DataFrame, pd.Index]:
    """dropna=True: drop rows with a missing or infinite used value, and say which."""
    mask = incomplete_rows(data, columns)
    if not mask.any():
        return data, pd.Index([])
    where = ""
    if formula.groups:
        column = formula.groups[0].factor_columns[0]
        per_group = data.loc[mask, column].astype(str).value_counts(sort=False)
        shown = ", ".join(f"{g}: {c}" for g, c in per_group.head(10).items())
        more = ", ..." if len(per_group) > 10 else ""
        where = f"; rows dropped per {column!r}: {shown}{more}"
    warnings.warn(
        f"dropna=True dropped {int(mask.sum())} of {len(data)} rows with missing or "
        f"infinite values in the model's columns{where} (their labels: model.dropped)",
        DataWarning,
        stacklevel=5,
    )
    return data.loc[~mask], data.index[mask]


@dataclass(frozen=True)
class _Request:
    """What a model asks of its data: formula, family, names, column options, dpars."""

    formula: Formula
    family: Family
    namespace: Namespace
    options: Mapping[str, str | None]
    dpars: Mapping[str, str]

    def design(self, frame: pd.DataFrame, **options: str | None) -> Design:
        """:func:`~hierbayes.spec.design.build_design` of ``frame``, ``options`` overriding."""
        return build_design(
            self.formula,
            frame,
            family=self.family,
            namespace=self.namespace,
            dpars=self.dpars,
            **{**self.options, **options},
        )


def intake(
    formula: Formula,
    data: Any,
    *,
    family: Family,
    namespace: Namespace,
    options: Mapping[str, str | None],
    dpars: Mapping[str, str],
    dropna: bool = False,
    reduce: bool | None = None,
    parameterization: str = "auto",
) -> Intake:
    """The design of ``formula`` on ``data`` (module docstring). ``options`` are the column
    arguments ``se``, ``trials``, ``offset`` and ``weights``; ``dpars`` the formulas of
    auxiliary parameters."""
    request = _Request(formula, family, namespace, options, dpars)
    what = describe_source(data)
    data = open_source(data)  # a path or SQL: opened once, for every read below
    if isinstance(data, GroupTable):  # a saved fit's sums
        return Intake(reduced_design(formula, data, family, what=what), None, "sums", pd.Index([]))
    if isinstance(data, DistinctRows):  # a saved fit's distinct rows
        return _counted_design(request, data.frame, data.count)
    if isinstance(data, SummedCells):  # a saved fit's cells
        return _counted_design(request, data.frame, data.count, data.offsets)
    engine = not isinstance(data, pd.DataFrame)
    why = unreducible(formula, family, **options, **dpars)
    if why is None and engine:
        why = unreducible(formula, family, schema(data), **options, **dpars)
    if why is None and parameterization not in ("auto", "marginal") and not reduce:
        why = f"parameterization={parameterization!r} samples the group effects from the rows"
    automatic = reduce is None and engine and not dropna
    if why is None and (reduce or automatic):
        check_reducible(why, dropna, parameterization)
        return Intake(reduced_design(formula, data, family, what=what), None, "sums", pd.Index([]))
    extra = [options.get(k) for k in ("se", "trials", "offset", "weights")]
    names = data if not engine else pd.DataFrame(columns=column_names(data))
    columns = used_columns(formula, family, dpars, namespace, names, extra)
    no_collapse = collapsible(family, options.get("se"), options.get("weights"))
    no_collapse = no_collapse or not_row_by_row(_called(formula, family, dpars), namespace)
    if reduce and (no_collapse or dropna):
        check_reducible(f"{why}; nor do its rows collapse: {no_collapse}", dropna, "auto")
    if no_collapse is None and (reduce or automatic):
        summed = exposure(formula, family, namespace, options, schema(data))
        keys = columns
        if isinstance(summed, Exposure):  # the response and exposure are summed per cell
            keys = [c for c in columns if c not in (formula.response, summed.column)]
        counted = count_distinct(data, keys, head=None if reduce else LOOK)
        if counted[1] <= WORTH * counted[0] and counted[0] == LOOK:  # a look only: count all
            counted = count_distinct(data, keys)
        if reduce or counted[1] <= WORTH * counted[0]:
            refuse_incomplete(data, columns, what)  # names the engine's rows, before collapsing
            if isinstance(summed, Exposure):
                cells = sum_cells(data, keys, formula.response, summed, what=what, cells=counted[1])
                return _counted_design(request, cells.frame, cells.count, cells.offsets)
            frame, count = collapse(data, columns, what=what, counted=counted)
            return _counted_design(request, frame, count)
        look = " first" if counted[0] == LOOK else ""
        why = (
            f"{counted[1]:,} of its{look} {counted[0]:,} rows are distinct, too few repeat to "
            "collapse"
            if not isinstance(summed, Exposure)
            else f"its{look} {counted[0]:,} rows fall in {counted[1]:,} cells (combinations of "
            "predictors and groups), too many to sum"
        )
    elif no_collapse is not None and why is not None:
        why = f"{why}; nor do its rows collapse: {no_collapse}"
    if engine:
        data = to_pandas(data, columns, what=what, why=why)
    dropped = pd.Index([])
    if dropna:
        data, dropped = _drop_incomplete(formula, data, columns)
    return Intake(request.design(data), data, "rows", dropped)


def _called(formula: Formula, family: Family, dpars: Mapping[str, str]) -> list:
    """The names the model's formulas write, with whether each is called (the main formula's
    and those of its auxiliary parameters)."""
    names = list(formula.names)
    for name, rhs in dpars.items():
        names += parse_dpar(name, rhs, family, formula.response).names
    return names


def _counted_design(
    request: _Request, frame: pd.DataFrame, count: str, offsets: str | None = None
) -> Intake:
    """The design of rows that each stand for ``count`` of the data's rows: distinct rows,
    weighted by their count; or, with ``offsets`` (the column of each cell's summed
    offsets), cells of summed Poisson rows, each counted once (:mod:`hierbayes.spec.summed`).
    The count is the design's multiplicity either way."""
    try:
        design = request.design(frame, weights=count if offsets is None else None)
    except DataError as exc:
        what = "distinct rows" if offsets is None else "cells (rows summed)"
        raise DataError(
            f"{exc} (rows here are the {len(frame):,} {what} of the data's "
            f"{int(frame[count].sum()):,} rows, counted in the engine: pass reduce=False to "
            "read the rows and have them named)"
        ) from None
    m = frame[count].to_numpy(dtype=float)
    factors = tuple(
        replace(f, sizes=np.bincount(f.codes, m, minlength=f.n_groups)) for f in design.factors
    )
    summed = None if offsets is None else frame[offsets].to_numpy(dtype=float)
    design = replace(design, multiplicity=m, factors=factors, summed_offsets=summed)
    return Intake(design, frame, "distinct rows" if offsets is None else "cells", pd.Index([]))
