"""A discrete-response model's rows collapsed in their engine into distinct rows with counts.

Rows with the same values in every column a model reads (response, predictors, grouping
columns, trials, offset) have the same likelihood term, so a model of N such rows is a model
of its distinct rows, each counted as many times as it occurs: with frequency weights n_c,

    sum_i log p(y_i | theta) = sum_c n_c log p(y_c | theta)

exactly (constants included), for any formula and any grouping. One ``GROUP BY`` of the
model's columns in the engine gives the distinct rows and their counts. For a discrete
response (bernoulli, binomial, the count families, cumulative) and categorical or few-valued
predictors that is few rows: 10^8 Bernoulli rows of 10^4 groups and a three-level predictor
are at most 6 x 10^4. With a continuous predictor nearly every row is distinct; then the
rows must fit in memory, and the error says so with the count.

The counts are frequency weights (a model with ``weights=`` of its own is read as rows). The
design keeps them as its ``multiplicity`` too, so that what is computed over the rows, the
default priors' means and SDs and the number of observations, counts each distinct row n_c
times, as the rows would.

Examples
--------
>>> import pandas as pd
>>> rows = pd.DataFrame({"y": [1, 0, 1, 1], "g": ["a", "a", "a", "b"]})
>>> cells, column = collapse(rows, ["y", "g"])
>>> cells.to_dict("list")
{'y': [0, 1, 1], 'g': ['a', 'a', 'b'], 'rows': [1, 2, 1]}
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hierbayes.errors import DataError
from hierbayes.spec.families import Family
from hierbayes.spec.names import free_name
from hierbayes.spec.sources import check_fits_in_memory, describe_source, is_dask, open_frame

__all__ = ["COLLAPSIBLE", "DistinctRows", "collapse", "collapsible", "count_distinct"]

#: response supports whose families' rows collapse (a discrete response)
COLLAPSIBLE = ("binary", "binomial", "count", "ordinal")
#: collapsing is worth it (auto) when the distinct rows are at most this share of the rows
WORTH = 0.5
#: rows looked at first (auto): when as many as WORTH of them differ, nothing is collapsed and
#: the rows, perhaps all distinct, are not counted in full
LOOK = 1_000_000


@dataclass(frozen=True, eq=False)
class DistinctRows:
    """Distinct rows already counted (a saved fit's): ``frame`` holds the model's columns
    and ``count``, the rows each stands for."""

    frame: pd.DataFrame
    count: str


def collapsible(family: Family, se: str | None = None, weights: str | None = None) -> str | None:
    """Why rows of this family do not collapse, or None when they do."""
    if family.support not in COLLAPSIBLE:
        return f"the {family.name} family's response is continuous: few of its rows repeat"
    if se is not None or weights is not None:
        return f"{'se' if se is not None else 'weights'}= is a column of its own per row"
    return None


def count_distinct(data: Any, columns: Sequence[str], head: int | None = None) -> tuple[int, int]:
    """(rows, distinct rows) of ``columns``, counted in the engine (a hash aggregate), or of
    the first ``head`` rows only: a cheap look before counting rows that may all differ."""
    columns = list(columns)
    if isinstance(data, pd.DataFrame) or is_dask(data):
        frame = data[columns]
        if head is not None:
            with warnings.catch_warnings():  # Dask: a first partition shorter than head
                warnings.filterwarnings("ignore", "Insufficient elements for `head`")
                frame = frame.head(head)  # Dask: of the first partition, as pandas
        if is_dask(frame):
            return int(frame.shape[0].compute()), int(frame.drop_duplicates().shape[0].compute())
        return len(frame), len(frame.drop_duplicates())
    import narwhals.stable.v2 as nw

    frame = open_frame(data).select(columns)
    frame = frame if head is None else frame.head(head)
    rows = frame.select(nw.len())
    # a GROUP BY, not unique(): narwhals writes DuckDB's unique() as a window over every row
    # (10^8 rows: 5.3 s and 2.5 GB, against 0.4 s and nothing to speak of)
    distinct = frame.group_by(columns, drop_null_keys=False).agg(nw.len()).select(nw.len())
    rows, distinct = (f.collect() if hasattr(f, "collect") else f for f in (rows, distinct))
    return int(rows.item()), int(distinct.item())


def collapse(
    data: Any,
    columns: Sequence[str],
    *,
    what: str | None = None,
    counted: tuple[int, int] | None = None,
) -> tuple[pd.DataFrame, str]:
    """The distinct rows of ``columns`` with their count, as pandas: the frame and the count
    column's name. ``counted`` is :func:`count_distinct`'s answer if the caller has it.
    Refused, with the count, when even the distinct rows would not fit in memory
    (:func:`~hierbayes.spec.sources.check_fits_in_memory`)."""
    columns = list(dict.fromkeys(columns))
    what = describe_source(data) if what is None else what
    total, distinct = counted or count_distinct(data, columns)
    if total == 0:
        raise DataError(f"data {what} has no rows")
    check_fits_in_memory(
        distinct,
        len(columns) + 1,
        what,
        why=f"its {distinct:,} distinct rows are too many: a continuous predictor makes nearly "
        "every row distinct",
    )
    count = free_name("rows", columns)
    if isinstance(data, pd.DataFrame) or is_dask(data):
        out = data[columns].groupby(columns, dropna=False, sort=False).size()
        out = (out.compute() if is_dask(data) else out).rename(count).reset_index()
    else:
        import narwhals.stable.v2 as nw

        out = open_frame(data).group_by(columns, drop_null_keys=False).agg(nw.len().alias(count))
        out = (out.collect() if hasattr(out, "collect") else out).to_pandas()
    # in sorted order, whatever order the engine's threads finished in: the same design each time
    return out.sort_values(columns, kind="stable").reset_index(drop=True), count
