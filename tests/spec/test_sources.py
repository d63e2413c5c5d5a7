"""Data from other engines (hierbayes.spec.sources): every input type gives the design the
pandas frame gives, bit for bit, and hostile input a DataError naming what is wrong."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

import hierbayes as hb
from hierbayes.errors import DataError
from hierbayes.spec import sources
from hierbayes.spec.sources import column_names, to_pandas
from tests.conftest import assert_same_draws, quiet_fit, write_files

FORMULA = "y ~ x + (1 | g)"


@pytest.fixture(scope="module")
def files(regression_data, tmp_path_factory):
    """The regression data with an unused text column, as Parquet (whole and in two parts)
    and CSV."""
    root = tmp_path_factory.mktemp("sources")
    write_files(regression_data.assign(note="unused"), root)
    return root


def inputs(df: pd.DataFrame, root) -> dict[str, object]:
    """The same rows in every engine and form that hb.Model takes."""
    return {
        "polars": pl.from_pandas(df),
        "polars lazy": pl.from_pandas(df).lazy(),
        "pyarrow table": pa.Table.from_pandas(df, preserve_index=False),
        "pyarrow dataset": pads.dataset(root / "all.parquet"),
        "duckdb relation": duckdb.connect().from_df(df),
        "sql": f"SELECT * FROM '{root / 'all.parquet'}'",
        "parquet path": root / "all.parquet",
        "parquet glob": str(root / "part-*.parquet"),
        "csv path": str(root / "all.csv"),
        "dask": dd.from_pandas(df, npartitions=3),
    }


def test_every_input_gives_the_pandas_design(regression_data, files):
    """Read as rows (reduce=False; by default this model reduces to per-group sums, which
    tests/spec/test_reduce.py compares)."""
    reference = hb.Model(FORMULA, regression_data).design
    for name, data in inputs(regression_data, files).items():
        model = hb.Model(FORMULA, data, reduce=False)
        design = model.design
        assert list(model.data.columns) == ["y", "x", "g"], name  # the model's columns only
        np.testing.assert_allclose(design.y, reference.y, rtol=0, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(design.X, reference.X, rtol=0, atol=1e-10, err_msg=name)
        (factor,), (ref_factor,) = design.factors, reference.factors
        np.testing.assert_array_equal(factor.codes, ref_factor.codes, err_msg=name)
        assert list(factor.levels) == list(ref_factor.levels), name


def test_a_parquet_file_gives_the_pandas_posterior(regression_data, regression_fit, files):
    """Same design, same seed, same settings as the session's pandas fit: the same draws."""
    fit = quiet_fit(hb.Model(FORMULA, files / "all.parquet"), draws=500, tune=500, random_seed=3)
    assert_same_draws(fit, regression_fit, ("Intercept", "x", "sd_g", "sigma", "b_g"), 1e-10)
    new = regression_data.head(7)
    np.testing.assert_allclose(
        regression_fit.predict(pl.from_pandas(new)).values,
        regression_fit.predict(new).values,
        rtol=0,
        atol=1e-12,
    )


def test_column_names_come_from_the_schema(regression_data, files):
    for name, data in inputs(regression_data.assign(note="unused"), files).items():
        assert column_names(data) == ["y", "x", "g", "note"], name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "absent.parquet", "does not exist"),
        (lambda root: str(root / "nothing-*.parquet"), "no file matches"),
        (lambda root: root, "is a directory: name its files with a glob"),
        (lambda root: str(root / "*"), "mixes Parquet and CSV files"),
        (lambda root: "SELECT * FROM no_such_table", "SQL cannot be read by DuckDB"),
        (lambda root: [1.0, 2.0], "data must be a pandas DataFrame; a path or glob"),
        (lambda root: pl.DataFrame({"y": [1.0], "x": [1.0], "g": ["a"]}).clear(), "no rows"),
        (lambda root: duckdb.sql("SELECT 1.0 AS y, 1.0 AS x, 'a' AS g WHERE false"), "no rows"),
    ],
    ids=[
        "missing",
        "glob-none",
        "directory",
        "two-formats",
        "bad-sql",
        "list",
        "empty",
        "empty-sql",
    ],
)
def test_unreadable_inputs_are_a_data_error(files, make, message):
    with pytest.raises(DataError, match=message):
        hb.Model(FORMULA, make(files))


def test_a_wrong_suffix_names_the_formats(tmp_path):
    (tmp_path / "data.xlsx").write_text("not read")
    with pytest.raises(DataError, match=r"\['.xlsx'\] cannot be read; the formats are Parquet"):
        hb.Model(FORMULA, tmp_path / "data.xlsx")


def test_nulls_and_wrong_types_name_the_column_and_rows(regression_data):
    """A null in polars (or DuckDB) arrives as NaN at the same row position, and the design's
    own checks name it; so does a text column where numbers are needed."""
    nulls = pl.from_pandas(regression_data).with_columns(
        pl.when(pl.int_range(pl.len()).is_in([4, 9])).then(None).otherwise(pl.col("x")).alias("x")
    )
    with pytest.raises(DataError, match=r"'x' has missing values .* 2 rows \(4, 9\)"):
        hb.Model(FORMULA, nulls)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = hb.Model(FORMULA, nulls, dropna=True)
    assert list(model.dropped) == [4, 9] and len(model.data) == len(regression_data) - 2
    assert any("dropped 2 of 413 rows" in str(w.message) for w in caught)
    text = duckdb.connect().from_df(regression_data).project("CAST(y AS VARCHAR) AS y, x, g")
    with pytest.raises(DataError, match="response column 'y' has dtype str"):
        hb.Model(FORMULA, text)
    with pytest.raises(DataError, match="'xx'"):  # the closest column, as for pandas
        hb.Model("y ~ xx + (1 | g)", pl.from_pandas(regression_data))


def test_the_users_frames_are_not_changed(regression_data, files):
    before = regression_data.copy()
    frame = pl.from_pandas(regression_data)
    hb.Model(FORMULA, frame)
    hb.Model(FORMULA, regression_data)
    pd.testing.assert_frame_equal(regression_data, before)
    pd.testing.assert_frame_equal(frame.to_pandas(), before)
    assert to_pandas(regression_data) is regression_data  # pandas is used as it is


def test_rows_beyond_the_memory_available_are_refused_before_reading(monkeypatch):
    """Counted in the engine (DuckDB, polars, Dask alike), refused with the number of rows
    and why they are read (this formula's exp(x) does not reduce to per-group sums)."""
    monkeypatch.setattr(sources, "available_memory", lambda: 2**20)  # 1 MiB
    sql = "SELECT random() AS y, random() AS x, (range % 100)::VARCHAR AS g FROM range(100000)"
    small = pd.DataFrame({"y": [1.0, 2.0], "x": [0.0, 1.0], "g": ["a", "b"]})
    for data in (sql, pl.from_pandas(small).lazy(), dd.from_pandas(small, npartitions=1)):
        rows = "100,000" if data is sql else "2"
        monkeypatch.setattr(sources, "MEMORY_FACTOR", 4 if data is sql else 10**5)
        with pytest.raises(
            DataError, match=rf"has {rows} rows: its 3 model columns need about.* np.exp\(x\)"
        ):
            hb.Model("y ~ np.exp(x) + (1 | g)", data)


def test_a_csv_reads_missing_values_as_pandas_does(regression_data, tmp_path):
    """'NA', 'NaN' and empty fields are missing values, as for pd.read_csv, not text that
    would turn a numeric column into categories."""
    text = regression_data.round(6).astype({"x": object})
    text.loc[[3, 8], "x"] = "NA"
    text.loc[11, "x"] = ""
    text.loc[12, "x"] = "NaN"
    text.to_csv(tmp_path / "na.csv", index=False)
    with pytest.raises(DataError, match=r"'x' has missing values .* 4 rows \(3, 8, 11, 12\)"):
        hb.Model(FORMULA, tmp_path / "na.csv")
    expected = pd.read_csv(tmp_path / "na.csv")
    read = to_pandas(tmp_path / "na.csv")
    pd.testing.assert_frame_equal(read, expected, check_dtype=False)


@pytest.mark.slow  # starts a Dask cluster of two worker processes (5-20 s)
def test_a_dask_frame_is_computed_on_the_active_cluster(regression_data):
    """With a Client, the model's columns are computed by the cluster's workers (the tasks
    show in its task stream), and the design is the pandas one; a null names its row."""
    from distributed import Client, LocalCluster, get_task_stream

    reference = hb.Model(FORMULA, regression_data).design
    frame = dd.from_pandas(regression_data, npartitions=4)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        with get_task_stream(client) as stream:
            design = hb.Model(FORMULA, frame, reduce=False).design
        assert {task["worker"] for task in stream.data} <= set(client.scheduler_info()["workers"])
        assert len(stream.data) >= 4  # a task per partition at least
        with_null = regression_data.assign(x=regression_data["x"].mask(regression_data.index == 17))
        nulls = dd.from_pandas(with_null, npartitions=4)
        with pytest.raises(DataError, match=r"'x' has missing values .* 1 row \(17\)"):
            hb.Model(FORMULA, nulls, reduce=False)
    np.testing.assert_allclose(design.X, reference.X, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(design.factors[0].codes, reference.factors[0].codes)
