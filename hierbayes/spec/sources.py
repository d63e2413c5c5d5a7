"""Data from any engine: what ``hb.Model(formula, data)`` and ``fit.predict(data)`` accept.

* a pandas DataFrame, used as it is (never copied into, never modified);
* a path, or a glob such as ``"visits/*.parquet"``, of Parquet (``.parquet``, ``.pq``) or CSV
  (``.csv``, ``.tsv``) files, read by DuckDB, in process: only the model's columns are read;
* SQL text (starting with ``SELECT``, ``WITH``, ``FROM`` or ``VALUES``), run by DuckDB's
  default connection, so it may read files (``FROM 'visits/*.parquet'``) and the tables and
  frames that connection knows;
* any frame narwhals knows, eager or lazy: a polars DataFrame or LazyFrame, a pyarrow Table,
  a DuckDB relation, modin; a pyarrow Dataset (read by DuckDB); a Dask DataFrame (computed
  by Dask, on the active Dask client if there is one). The model's columns are selected in
  the engine, then collected.

The model is then built from those columns as a pandas frame, one row per observation,
labelled 0..N-1 in the engine's order, so that an error names rows by their position. The
rows are counted in the engine first, and rows too many for the memory available are
refused before they are read (:func:`check_fits_in_memory`). A one-factor Gaussian model
reads no rows at all: its per-group sums are computed in the engine
(:mod:`hierbayes.spec.reduce`).

Examples
--------
>>> import pyarrow as pa
>>> table = pa.table({"y": [1.0, 2.0], "g": ["a", "b"], "unused": [0, 0]})
>>> column_names(table)
['y', 'g', 'unused']
>>> to_pandas(table, ["y", "g"]).to_dict("list")
{'y': [1.0, 2.0], 'g': ['a', 'b']}
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.errors import DataError, describe_rows
from hierbayes.spec.columns import is_number_type

__all__ = [
    "FORMATS",
    "available_memory",
    "check_fits_in_memory",
    "column_names",
    "describe_source",
    "is_dask",
    "open_frame",
    "open_source",
    "bad_flag",
    "bad_rows",
    "by_partition",
    "key_names",
    "refuse_incomplete",
    "rows_where",
    "schema",
    "to_pandas",
]

#: file suffix -> the DuckDB reader of that format
FORMATS = {
    ".parquet": "read_parquet",
    ".pq": "read_parquet",
    ".csv": "read_csv",
    ".tsv": "read_csv",
}
#: the texts a CSV file may write for a missing value: pandas' defaults, so that a path
#: reads as ``pd.read_csv`` would read it (DuckDB's default, the empty field alone, would
#: turn a numeric column holding ``NA`` into text)
NA_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
#: bytes per collected cell, in units of 8: the column, the design's arrays and working copies
MEMORY_FACTOR = 4
#: the first word of the SQL text accepted as ``data``
SQL_STARTS = ("select", "with", "from", "values")
_ACCEPTED = (
    "a pandas DataFrame; a path or glob of Parquet or CSV files; SQL text for DuckDB; or a "
    "polars, pyarrow, DuckDB or Dask frame"
)


def _is_sql(text: str) -> bool:
    words = text.split(None, 1)
    return bool(words) and words[0].lower() in SQL_STARTS


def _files(path: str | os.PathLike) -> list[str]:
    """The files a path or glob names, all of one format; a DataError if there are none."""
    text = os.fspath(path)
    if glob.has_magic(text):
        files = sorted(glob.glob(text, recursive=True))
        if not files:
            raise DataError(f"no file matches {text!r}")
    elif Path(text).is_dir():
        raise DataError(
            f"data {text!r} is a directory: name its files with a glob, e.g. "
            f"{os.path.join(text, '*.parquet')!r}"
        )
    elif not Path(text).is_file():
        raise DataError(f"data file {text!r} does not exist")
    else:
        files = [text]
    suffixes = {Path(f).suffix.lower() for f in files}
    unknown = suffixes - FORMATS.keys()
    if unknown:
        raise DataError(
            f"data {text!r}: files ending in {sorted(unknown)} cannot be read; the formats "
            f"are Parquet and CSV ({', '.join(FORMATS)})"
        )
    if len({FORMATS[s] for s in suffixes}) > 1:
        raise DataError(f"data {text!r} mixes Parquet and CSV files: name one format")
    return files


def _relation(data: str | os.PathLike) -> Any:
    """A DuckDB relation over SQL text or over the files a path or glob names."""
    import duckdb

    try:
        if isinstance(data, str) and _is_sql(data):
            return duckdb.sql(data)
        files = _files(data)
        if FORMATS[Path(files[0]).suffix.lower()] == "read_parquet":
            return duckdb.connect().read_parquet(files)
        return duckdb.connect().read_csv(files, na_values=list(NA_VALUES))
    except duckdb.Error as exc:
        what = "SQL" if isinstance(data, str) and _is_sql(data) else f"data {os.fspath(data)!r}"
        raise DataError(f"{what} cannot be read by DuckDB: {exc}") from None


def open_frame(data: Any) -> Any:
    """``data`` as a narwhals DataFrame or LazyFrame, or a DataError saying what is accepted."""
    import narwhals.stable.v2 as nw

    if isinstance(data, str | os.PathLike):
        data = _relation(data)
    elif type(data).__module__.startswith("pyarrow") and hasattr(data, "to_batches"):
        if not hasattr(data, "column"):  # a pyarrow Dataset: read lazily by DuckDB
            import duckdb

            data = duckdb.connect().from_arrow(data)
    try:
        return nw.from_native(data)
    except TypeError:
        raise DataError(f"data must be {_ACCEPTED}; got {type(data).__name__}") from None


def available_memory() -> int | None:
    """Bytes of memory the system has available now, or None where it does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(
    rows: int, columns: int, what: str, available: int | None = None, why: str | None = None
) -> None:
    """Refuse, before reading them, rows that cannot be held in memory with their design.

    The estimate is ``MEMORY_FACTOR x 8 bytes`` per cell: the collected columns, the
    design's arrays and the model's working copies. Refused when it exceeds the memory
    available (``available``, by default the system's); the error gives the number of rows
    and ``why`` the model's rows are read at all (why it does not reduce to per-group sums).

    Examples
    --------
    >>> check_fits_in_memory(10**6, 3, "'big.parquet'", available=10**9)
    >>> check_fits_in_memory(10**8, 3, "'big.parquet'", available=10**9)
    Traceback (most recent call last):
    ...
    hierbayes.errors.DataError: data 'big.parquet' has 100,000,000 rows: ...
    """
    available = available_memory() if available is None else available
    need = rows * columns * 8 * MEMORY_FACTOR
    if available is None or need <= available:
        return
    raise DataError(
        f"data {what} has {rows:,} rows: its {columns} model columns need about "
        f"{need / 2**30:.1f} GiB in memory with the design, and {available / 2**30:.1f} GiB "
        "is available. Read fewer rows in the engine (a SQL WHERE, a sample, or group-level "
        "aggregates) or use a machine with more memory"
        + (f". The rows are read because {why}" if why else "")
    )


def is_dask(data: Any) -> bool:
    """A Dask DataFrame: computed by Dask itself (narwhals' Dask support is leaving it)."""
    return type(data).__module__.startswith("dask") and hasattr(data, "compute")


def column_names(data: Any) -> list[str]:
    """The column names of ``data`` (module docstring), read from its schema, not its rows.

    Examples
    --------
    >>> column_names(pd.DataFrame({"y": [1.0], "g": ["a"]}))
    ['y', 'g']
    """
    if isinstance(data, pd.DataFrame) or is_dask(data):
        return [str(c) for c in data.columns]
    return list(open_frame(data).collect_schema().names())


def schema(data: Any) -> dict[str, Any]:
    """Column name -> type of ``data``, from its schema, not its rows (:func:`is_number_type`
    reads either kind of type).

    Examples
    --------
    >>> {c: str(t) for c, t in schema(pd.DataFrame({"y": [1.0], "g": ["a"]})).items()}
    {'y': 'float64', 'g': 'str'}
    """
    if isinstance(data, pd.DataFrame) or is_dask(data):
        return {str(c): t for c, t in data.dtypes.items()}
    return dict(open_frame(data).collect_schema())


def bad_flag(column: str, numeric: bool) -> Any:
    """The narwhals expression, true where ``column`` is missing or (``numeric``) not finite."""
    import narwhals.stable.v2 as nw

    col = nw.col(column)
    return (~col.cast(nw.Float64).is_finite()).fill_null(True) if numeric else col.is_null()


def describe_source(data: Any) -> str:
    """How errors name ``data``: a path or SQL text quoted, else its type's name.

    Examples
    --------
    >>> describe_source("visits/*.parquet"), describe_source(pd.DataFrame())
    ("'visits/*.parquet'", 'DataFrame')
    """
    return repr(str(data)) if isinstance(data, str | os.PathLike) else type(data).__name__


def open_source(data: Any) -> Any:
    """``data`` opened once for the calls that follow: a path, glob or SQL text becomes its
    narwhals frame (a DuckDB relation); any other input is returned as it is."""
    return open_frame(data) if isinstance(data, str | os.PathLike) else data


def to_pandas(
    data: Any,
    columns: Sequence[str] | None = None,
    *,
    what: str | None = None,
    why: str | None = None,
) -> pd.DataFrame:
    """``data`` (module docstring) as a pandas frame of ``columns`` (all without them).

    A pandas frame is returned as it is. Any other input is read in its engine, ``columns``
    only (present in :func:`column_names`: the caller checks), and collected with a 0..N-1
    index, and named ``what`` in errors (:func:`describe_source`). No rows is a DataError;
    so are more rows than memory holds, with ``why`` they
    are read (:func:`check_fits_in_memory`).

    Examples
    --------
    >>> import duckdb
    >>> to_pandas(duckdb.sql("SELECT 1.5 AS y, 'a' AS g"), ["y"])
         y
    0  1.5
    """
    if isinstance(data, pd.DataFrame):
        return data
    what = describe_source(data) if what is None else what
    if is_dask(data):
        selected = data if columns is None else data[list(columns)]
        check_fits_in_memory(int(selected.shape[0].compute()), len(selected.columns), what, why=why)
        out = selected.compute()
    else:
        import narwhals.stable.v2 as nw

        frame = open_frame(data)
        if columns is not None:
            frame = frame.select(list(columns))
        rows = frame.select(nw.len())
        rows = rows.collect() if hasattr(rows, "collect") else rows
        check_fits_in_memory(int(rows.item()), len(frame.collect_schema()), what, why=why)
        if hasattr(frame, "collect"):
            frame = frame.collect()
        out = frame.to_pandas()
    out = out.reset_index(drop=True)
    if len(out) == 0:
        raise DataError(f"data {what} has no rows")
    return out


def bad_rows(data: Any, column: str, numeric: bool = True) -> np.ndarray:
    """Positions (0..N-1, the engine's order) of rows whose ``column`` is missing or, if
    ``numeric``, not finite (:func:`bad_flag`)."""
    return rows_where(data, [column], bad_flag(column, numeric))


def rows_where(data: Any, columns: Sequence[str], flag: Any) -> np.ndarray:
    """Positions (0..N-1, the engine's order) of the rows where the narwhals expression
    ``flag`` of ``columns`` is true: the rows an error names."""
    frame = data[list(columns)].compute() if is_dask(data) else data
    out = open_frame(frame).select(flag.fill_null(False).alias("flag"))
    out = out.collect() if hasattr(out, "collect") else out
    return np.flatnonzero(out["flag"].to_numpy())


def key_names(n: int) -> list[str]:
    """The names a grouped aggregation gives its ``n`` key columns, ``key0, key1, ...``: the
    grouping columns renamed, so that no data column's name can collide with an aggregate's
    (a grouping column called ``_y``, say)."""
    return [f"key{i}" for i in range(n)]


def by_partition(
    data: Any, part: Callable[[pd.DataFrame], pd.DataFrame], keys: list[str], how: dict
) -> pd.DataFrame:
    """A grouped aggregation of a Dask frame: ``part`` (a partition -> one row of partial
    results per combination of ``keys``) on each partition, on the worker that holds it, then
    the partial results combined per combination, column by column as ``how`` says
    (``"sum"``, ``"min"``, ``"max"``; "sum" for a column it does not name)."""
    import dask

    partial = pd.concat(dask.compute(*map(dask.delayed(part), data.to_delayed())))
    combine = {c: how.get(c, "sum") for c in partial.columns if c not in keys}
    return partial.groupby(keys, dropna=False, sort=False).agg(combine).reset_index()


def refuse_incomplete(data: Any, columns: Sequence[str], what: str) -> None:
    """A DataError naming the first of ``columns`` with a missing or non-finite value, and
    its rows (positions in the engine's order), counted in the engine in one pass."""
    import narwhals.stable.v2 as nw

    numbers = {c for c, t in schema(data).items() if is_number_type(t)}
    flags = [bad_flag(c, c in numbers).cast(nw.Int64).sum().alias(c) for c in columns]
    if is_dask(data):  # per partition, where each lives; then added up
        import dask

        def count(part: pd.DataFrame) -> pd.DataFrame:
            return open_frame(part).select(*flags).to_pandas()

        parts = dask.compute(*[dask.delayed(count)(p) for p in data[list(columns)].to_delayed()])
        counts = pd.concat(parts).sum()
    else:
        out = open_frame(data).select(*flags)
        counts = (out.collect() if hasattr(out, "collect") else out).to_pandas().iloc[0]
    bad = [c for c in columns if counts[c]]
    if bad:
        column = bad[0]
        rows = pd.Index(bad_rows(data, column, numeric=column in numbers))
        raise DataError(
            f"column {column!r} has missing or infinite values in {describe_rows(rows)} of "
            f"{what}. hierbayes never drops rows silently: filter or impute them in the engine "
            "(e.g. SQL WHERE ... IS NOT NULL), or read the rows and pass dropna=True"
        )
