"""A Poisson model's rows summed in their engine, cell by cell, with their exposure.

Rows with the same predictors and groups (a cell c) share their rate exp(eta_c) and differ
only in their exposure E_i (their offset o_i = log E_i). Their counts add up to one Poisson
count with the summed exposure,

    y_c = sum_i y_i ~ Poisson(E_c exp(eta_c)),    E_c = sum_i E_i,

and the rows' log-likelihood is the cells' plus a term free of the parameters,

    sum_i log p(y_i | eta_c + o_i) = log p(y_c | eta_c + log E_c) + K_c,
    K_c = sum_i y_i o_i - y_c log E_c - sum_i log y_i! + log y_c!,

so a model of the cells has the rows' posterior exactly. This is what distinct rows with
counts (:mod:`hierbayes.spec.distinct`) cannot do when the exposure is continuous: nearly
every row is then distinct, but the cells are as few as the combinations of predictors and
groups. One ``GROUP BY`` of the predictors and grouping columns in the engine gives each
cell's rows, summed count and summed exposure, and the sum of its rows' offsets, which the
default prior of the intercept needs (the mean offset over the rows).

The exposure is the model's one offset: ``offset(log(E))`` (or ``np.log``) of a column E,
whose cells hold sum E_i; or ``offset(o)`` or ``offset="o"``, a column of log exposures, whose
cells hold log sum exp(o_i). Every other term is computed row by row from columns the cells
keep as they are. The cell sums lose each row's own count, so such a model has no
log-likelihood per row, nor anything else per row (R², the posterior predictive of the
fitted rows).

Examples
--------
>>> import pandas as pd
>>> rows = pd.DataFrame({"y": [1, 0, 3], "t": [1.0, 2.0, 4.0], "g": ["a", "a", "b"]})
>>> cells = sum_cells(rows, ["g"], "y", Exposure("t", logged=True))
>>> cells.frame.to_dict("list")
{'g': ['a', 'b'], 'y': [1.0, 3.0], 't': [3.0, 4.0], 'rows': [2, 1], 'offsets': [0.693..., 1.386...]}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.errors import DataError, describe_rows
from hierbayes.spec.columns import is_number_type
from hierbayes.spec.families import Family
from hierbayes.spec.formula import Formula
from hierbayes.spec.names import free_name
from hierbayes.spec.namespace import Namespace
from hierbayes.spec.sources import (
    by_partition,
    check_fits_in_memory,
    describe_source,
    is_dask,
    key_names,
    open_frame,
    rows_where,
)

__all__ = ["Exposure", "SummedCells", "exposure", "sum_cells"]

_LOG = re.compile(r"^\s*(?:(np|numpy)\.)?log\(\s*([A-Za-z_]\w*)\s*\)\s*$")
_NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*$")


@dataclass(frozen=True)
class Exposure:
    """Where a Poisson model's offset comes from: the column ``column``, with
    ``logged=True`` its exposure (``offset(log(E))``), else its log (``offset="o"``)."""

    column: str
    logged: bool


@dataclass(frozen=True, eq=False)
class SummedCells:
    """Cells of summed rows (also a saved fit's): ``frame`` holds the model's columns (the
    response and exposure summed), ``count`` the rows in each cell and ``offsets`` the sum
    of their offsets."""

    frame: pd.DataFrame
    count: str
    offsets: str


def exposure(
    formula: Formula,
    family: Family,
    namespace: Namespace,
    options: Mapping[str, str | None],
    types: Mapping[str, Any],
) -> Exposure | str:
    """The exposure of a model whose rows sum into cells, or why they do not.

    ``options`` are the model's column arguments; ``types`` the data's columns and their
    types (:func:`~hierbayes.spec.sources.schema`): the response and exposure must hold
    numbers (other types are read and named in the errors of the rows they collapse into).

    Examples
    --------
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.spec.families import POISSON
    >>> from hierbayes.spec.namespace import resolve
    >>> types = dict.fromkeys(["y", "x", "t"], np.dtype(float)) | {"g": np.dtype(object)}
    >>> exposure(parse("y ~ x + offset(np.log(t)) + (1 | g)"), POISSON, resolve("safe"), {},
    ...          types)
    Exposure(column='t', logged=True)
    >>> exposure(parse("y ~ x + offset(log(2 * t)) + (1 | g)"), POISSON, resolve("safe"), {},
    ...          types)[:40]
    'its offset(log(2 * t)) is neither a colu'
    """
    if family.name != "poisson" or family.link != "log":
        return f"the {family.name} family with the {family.link} link does not add up over rows"
    if any(options.get(k) for k in ("se", "weights", "trials")):
        return "its weights= are a column of their own per row"
    found = [*formula.offsets, *([options["offset"]] if options.get("offset") else [])]
    if len(found) != 1:
        return "it has no offset" if not found else "it has more than one offset"
    column, logged = found[0], False
    if formula.offsets:
        log, name = _LOG.match(column), _NAME.match(column)
        function = log and namespace.lookup(f"{log[1]}.log" if log[1] else "log")
        if log and function is np.log:
            column, logged = log[2], True
        elif name:
            column = name[1]
        else:
            return (
                f"its offset({column}) is neither a column nor the log of one, so it cannot "
                "be summed"
            )
    for name in (formula.response, column):
        if name not in types:
            return f"column {name!r} is not in the data"
        if not is_number_type(types[name]):
            return f"column {name!r} holds {types[name]}, not numbers"
    if column in replace(formula, offsets=()).variables:
        return f"its exposure column {column!r} is read by another term too"
    return Exposure(column, logged)


def _aggregate(frame: Any, keys: list[str], y: str, exposure: Exposure) -> pd.DataFrame:
    """One grouped aggregation (narwhals): per cell (the ``keys`` as
    :func:`~hierbayes.spec.sources.key_names`) its rows, summed count, summed exposure and
    summed offsets, and what checks the counts and exposures (smallest values, the count of
    non-integers)."""
    import narwhals.stable.v2 as nw

    count, e = nw.col(y).cast(nw.Float64), nw.col(exposure.column).cast(nw.Float64)
    names = key_names(len(keys))
    with np.errstate(divide="ignore", invalid="ignore"):  # eager: log(E <= 0), refused after
        # the values first, then plain sums and minima (pandas and Dask: its fast group-by)
        frame = frame.select(
            *(nw.col(k).alias(n) for k, n in zip(keys, names, strict=True)),
            count.alias("_y"),
            (e if exposure.logged else e.exp()).alias("_e"),
            (e.log() if exposure.logged else e).alias("_offsets"),
            (count != count.round(0)).cast(nw.Int64).alias("_fractions"),
            e.alias("_emin"),
        )
        out = frame.group_by(names, drop_null_keys=False).agg(
            nw.len().alias("_rows"),
            *(nw.col(c).sum() for c in ("_y", "_e", "_offsets", "_fractions")),
            nw.col("_y").min().alias("_ymin"),
            nw.col("_emin").min(),
        )
        out = out.collect() if hasattr(out, "collect") else out
        return out.to_pandas()


def _engine_cells(data: Any, keys: list[str], y: str, exposure: Exposure) -> pd.DataFrame:
    if not is_dask(data):
        return _aggregate(open_frame(data), keys, y, exposure)

    def part(frame: pd.DataFrame) -> pd.DataFrame:
        return _aggregate(open_frame(frame), keys, y, exposure)

    columns = list(dict.fromkeys([*keys, y, exposure.column]))
    how = {"_ymin": "min", "_emin": "min"}
    return by_partition(data[columns], part, key_names(len(keys)), how)


def _refuse_bad(data: Any, table: pd.DataFrame, y: str, exposure: Exposure, what: str) -> None:
    """A DataError naming the rows whose count is not a count, or whose exposure is not
    positive (offset(log(E))) or whose summed exposure overflows."""
    import narwhals.stable.v2 as nw

    if (table["_ymin"] < 0).any() or table["_fractions"].sum():
        c = nw.col(y).cast(nw.Float64)
        rows = rows_where(data, [y], (c < 0) | (c != c.round(0)))
        raise DataError(
            f"response column {y!r} has values that are not non-negative integer counts in "
            f"{describe_rows(pd.Index(rows))} of {what}, as the poisson family needs: correct "
            "them or choose another family"
        )
    e = exposure.column
    if exposure.logged and (table["_emin"] <= 0).any():
        rows = rows_where(data, [e], nw.col(e).cast(nw.Float64) <= 0)
        raise DataError(
            f"exposure column {e!r} is not positive in {describe_rows(pd.Index(rows))} of "
            f"{what}, so offset(log({e})) is not a number there: correct or remove these rows "
            "in the engine (e.g. SQL WHERE ... > 0)"
        )
    if not np.isfinite(table["_e"]).all():
        raise DataError(
            f"offset column {e!r} holds log exposures too large to add up (exp overflows): "
            "pass the exposure itself, as offset(log(E)) of a column E"
        )


def sum_cells(
    data: Any,
    keys: Sequence[str],
    response: str,
    exposure: Exposure,
    *,
    what: str | None = None,
    cells: int | None = None,
) -> SummedCells:
    """The cells of ``keys`` (the model's other columns) with the rows' ``response`` and
    exposure summed in the engine (module docstring), as pandas, in sorted order. The data
    must be checked for missing values first
    (:func:`~hierbayes.spec.sources.refuse_incomplete`); bad counts and exposures are named
    by row here. ``cells``, if known, is checked against the memory before summing."""
    keys = list(keys)
    what = describe_source(data) if what is None else what
    if cells is not None:
        check_fits_in_memory(
            cells,
            len(keys) + 4,
            what,
            why=f"its {cells:,} cells (combinations of predictors and groups) are too many",
        )
    table = _engine_cells(data, keys, response, exposure)
    if len(table) == 0:
        raise DataError(f"data {what} has no rows")
    _refuse_bad(data, table, response, exposure, what)
    e = table["_e"] if exposure.logged else np.log(table["_e"])
    out = table[key_names(len(keys))].set_axis(keys, axis=1)
    out = out.assign(**{response: table["_y"], exposure.column: e})
    count = free_name("rows", out.columns)
    out[count] = table["_rows"].astype(np.int64)
    offsets = free_name("offsets", out.columns)
    out[offsets] = table["_offsets"]
    # in sorted order, whatever order the engine's threads finished in: the same design each time
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    return SummedCells(out, count, offsets)
