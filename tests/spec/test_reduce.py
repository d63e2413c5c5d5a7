"""Per-group sums computed in the engine (hierbayes.spec.reduce): every input gives the
statistics the rows give, within 1e-10; what does not reduce is read as rows, or refused
with the reason; bad values name their column and rows."""

from __future__ import annotations

import dask.dataframe as dd
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

import hierbayes as hb
from hierbayes.backend.marginal import sufficient_stats
from hierbayes.errors import DataError, SpecError
from hierbayes.spec.families import GAUSSIAN, get
from hierbayes.spec.formula import parse
from hierbayes.spec.reduce import reduced_design, unreducible
from tests.conftest import write_files
from tests.spec.test_sources import inputs

STATS = ("ZtZ", "ZtX", "Zty", "XtX", "Xty", "yty", "n_obs")


@pytest.fixture(scope="module")
def slopes_data() -> pd.DataFrame:
    """Varying intercepts and slopes, a group-level predictor w; groups in sorted order."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 40, size=25)
    g = np.repeat(np.arange(25), sizes)
    x = rng.normal(size=g.size)
    w = rng.normal(size=25)
    y = 2.0 + 0.5 * x + 0.3 * w[g] + rng.normal(0, 0.7, 25)[g] + rng.normal(0, 0.2, 25)[g] * x
    y = y + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "w": w[g], "g": [f"s{k:02d}" for k in g]})


@pytest.fixture(scope="module")
def files(slopes_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("reduce")
    write_files(slopes_data, root)
    return root


def assert_same_statistics(reduced, rows, label: str) -> None:
    a, b = sufficient_stats(reduced), sufficient_stats(rows)
    for name in STATS:
        np.testing.assert_allclose(
            getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-10, err_msg=f"{label} {name}"
        )
    (f,), (r,) = reduced.factors, rows.factors
    assert list(f.levels) == list(r.levels), label
    assert (f.terms, f.blocks) == (r.terms, r.blocks), label
    np.testing.assert_array_equal(f.counts, r.counts, err_msg=label)
    np.testing.assert_allclose(f.W, r.W, rtol=0, atol=1e-12, err_msg=label)
    np.testing.assert_array_equal(f.level2, r.level2, err_msg=label)
    assert reduced.fixed_names == rows.fixed_names, label


def test_every_input_gives_the_statistics_of_the_rows(slopes_data, files):
    formula = "y ~ x + w + (x | g)"
    rows = hb.Model(formula, slopes_data).design
    for name, data in inputs(slopes_data, files).items():
        model = hb.Model(formula, data)
        assert model.data is None and model.design.sums is not None, name
        assert_same_statistics(model.design, rows, name)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (x | g)",
        "y ~ x + w + (x || g)",
        "y ~ 1 + (x | g)",
        "y ~ 0 + x + (1 | g)",
        "y ~ x + (1 | g) + (0 + x | g)",
        "y ~ w + (1 | g)",
    ],
)
def test_formulas_give_the_statistics_and_level2_map_of_the_rows(slopes_data, formula):
    """Group-level predictors (w) are found from each group's minimum and maximum, and their
    level-2 map W is the rows' (level2_map)."""
    rows = hb.Model(formula, slopes_data).design
    reduced = hb.Model(formula, slopes_data, reduce=True).design
    assert_same_statistics(reduced, rows, formula)
    assert (
        hb.Model(formula, slopes_data, reduce=True).priors == hb.Model(formula, slopes_data).priors
    )  # default priors from the sums: the rows' means and SDs


@pytest.mark.parametrize(
    ("formula", "keys"),
    [
        ("y ~ x + w + (1 | b/c)", ["b", "c"]),
        ("y ~ x + w + (x | b) + (1 | d)", ["b", "d"]),
        ("y ~ x + (1 | b/c) + (1 | d)", ["b", "c", "d"]),
        ("y ~ x + (1 | b:c)", ["b", "c"]),
    ],
)
def test_nested_and_crossed_factors_give_the_factors_of_the_rows(factors_data, formula, keys):
    """Sums per cell (distinct values of the grouping columns): each factor's levels, sizes,
    level-2 map and owned columns are the rows' (w is a school-level predictor, owned by the
    outermost factor)."""
    rows = hb.Model(formula, factors_data).design
    reduced = hb.Model(formula, duckdb.connect().from_df(factors_data)).design
    assert reduced.sums is not None and reduced.n_obs == rows.n_obs
    assert len(reduced.sums.gram) == factors_data.groupby(keys).ngroups
    for f, r in zip(reduced.factors, rows.factors, strict=True):
        assert (f.name, list(f.levels), f.terms, f.blocks) == (
            r.name,
            list(r.levels),
            r.terms,
            r.blocks,
        )
        np.testing.assert_array_equal(f.counts, r.counts, err_msg=f.name)
        np.testing.assert_allclose(f.W, r.W, rtol=0, atol=1e-12, err_msg=f.name)
        np.testing.assert_array_equal(f.level2, r.level2, err_msg=f.name)
        np.testing.assert_array_equal(f.owns, r.owns, err_msg=f.name)
    assert (
        hb.Model(formula, factors_data, reduce=True).priors
        == hb.Model(formula, factors_data).priors
    )


def test_a_missing_value_in_a_second_grouping_column_is_named(factors_data):
    bad = factors_data.assign(d=factors_data["d"].astype(float))
    bad.loc[[5, 70], "d"] = np.nan
    with pytest.raises(
        DataError, match=r"grouping column 'd' has missing values in 2 rows \(5, 70\)"
    ):
        hb.Model("y ~ x + (1 | b) + (1 | d)", duckdb.connect().from_df(bad))


@pytest.mark.parametrize(
    ("formula", "options", "reason"),
    [
        ("y ~ log(x) + (1 | g)", {}, "population-level term log(x) is not a column"),
        ("y ~ C(k) + (1 | g)", {}, "term C(k) is not a column"),
        ("y ~ x + (np.exp(x) | g)", {}, "group-level term np.exp(x)"),
        ("y ~ x + (1 | x)", {}, "column 'x' is both a grouping column and a number"),
        ("y ~ x + (1 | g) + (1 | g:x)", {}, "column 'x' is both a grouping column"),
        ("y ~ x", {}, "the model has no grouping factor"),
        ("y ~ x + (1 | g) + offset(z)", {}, "offset(...)"),
        ("y ~ x + (1 | g)", {"se": "s"}, "se= is not in the per-group sums"),
        ("y ~ x + (1 | g)", {"weights": "v"}, "weights= is not"),
        ("y ~ x + (1 | g)", {"sigma": "~ x"}, "sigma= is not"),
    ],
)
def test_what_does_not_reduce_says_why(formula, options, reason):
    assert reason in unreducible(parse(formula), GAUSSIAN, **options)


def test_other_families_and_links_do_not_reduce():
    assert "bernoulli" in unreducible(parse("y ~ x + (1 | g)"), get("bernoulli", None))
    assert "log link" in unreducible(parse("y ~ x + (1 | g)"), get("gaussian", "log"))


def test_an_engine_model_that_does_not_reduce_is_read_as_rows(slopes_data):
    """By default: a categorical term, or a text column the formula makes a category."""
    data = pl.from_pandas(slopes_data.assign(k=np.arange(len(slopes_data)) % 3))
    model = hb.Model("y ~ x + C(k) + (1 | g)", data)
    assert model.design.sums is None and len(model.data) == len(slopes_data)
    text = pl.from_pandas(slopes_data.assign(k=[f"k{i % 3}" for i in range(len(slopes_data))]))
    model = hb.Model("y ~ x + k + (1 | g)", text)
    assert model.design.sums is None
    assert model.design.fixed_names == ("Intercept", "x", "k[k1]", "k[k2]")
    with pytest.raises(SpecError, match="reduce=True: .*'k' holds String, not numbers"):
        hb.Model("y ~ x + k + (1 | g)", text, reduce=True)


def test_reduce_true_refuses_what_the_sums_cannot_give(slopes_data):
    with pytest.raises(SpecError, match="reduce=True: .*log\\(x\\) is not a column"):
        hb.Model("y ~ log(x) + (1 | g)", slopes_data, reduce=True)
    with pytest.raises(SpecError, match="dropna=True drops rows"):
        hb.Model("y ~ x + (1 | g)", slopes_data, reduce=True, dropna=True)
    with pytest.raises(SpecError, match="parameterization='centered' samples"):
        hb.Model("y ~ x + (1 | g)", slopes_data, reduce=True, parameterization="centered")
    # dropna=True on an engine reads the rows (and drops them with a warning), as before
    assert hb.Model("y ~ x + (1 | g)", pl.from_pandas(slopes_data), dropna=True).data is not None


def with_bad(df: pd.DataFrame, column: str, rows: list[int], value) -> pd.DataFrame:
    out = df.copy()
    out[column] = out[column].astype(object if value is None else out[column].dtype)
    out.loc[rows, column] = value
    if value is None and column != "g":
        out[column] = out[column].astype(float)
    return out


@pytest.mark.parametrize("engine", ["polars", "duckdb", "dask", "parquet"])
@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("x", None, r"column 'x' has missing values .* 2 rows \(4, 77\)"),
        ("y", np.inf, r"column 'y' has missing values \(NaN/None\) or infinite values in 2 rows"),
        ("x", np.nan, r"column 'x' has missing values .* 2 rows \(4, 77\)"),
        ("g", None, r"grouping column 'g' has missing values in 2 rows \(4, 77\)"),
    ],
)
def test_bad_values_name_their_column_and_rows(
    slopes_data, tmp_path, engine, column, value, message
):
    bad = with_bad(slopes_data, column, [4, 77], value)
    if engine == "polars":
        data = pl.from_pandas(bad, nan_to_null=False)
    elif engine == "duckdb":
        data = duckdb.connect().from_df(bad)
    elif engine == "dask":
        data = dd.from_pandas(bad, npartitions=3)
    else:
        bad.to_parquet(tmp_path / "bad.parquet", index=False)
        data = tmp_path / "bad.parquet"
    with pytest.raises(DataError, match=message):
        hb.Model("y ~ x + (1 | g)", data, reduce=True)


def test_degenerate_data_are_refused_from_the_sums(slopes_data):
    one = pl.from_pandas(slopes_data.assign(g="only"))
    with pytest.raises(DataError, match="grouping column 'g' has 1 level"):
        hb.Model("y ~ x + (1 | g)", one)
    constant = pl.from_pandas(slopes_data.assign(x=2.5))
    with pytest.raises(DataError, match="predictor 'x' is constant"):
        hb.Model("y ~ x + (1 | g)", constant)
    collinear = pl.from_pandas(slopes_data.assign(z=lambda d: 2 * d["x"] - 1))
    with pytest.raises(DataError, match="'z' is a linear combination of \\['Intercept', 'x'\\]"):
        hb.Model("y ~ x + z + (1 | g)", collinear)
    flat = pl.from_pandas(slopes_data.assign(y=1.0))
    with pytest.raises(DataError, match="response column 'y' is constant"):
        hb.Model("y ~ x + (1 | g)", flat)
    huge = pl.from_pandas(slopes_data.assign(x=lambda d: d["x"] * 1e200))
    with pytest.raises(DataError, match="too large to compute with"):
        hb.Model("y ~ x + (1 | g)", huge)
    with pytest.raises(DataError, match="Did you mean 'x'"):
        reduced_design(parse("y ~ xx + (1 | g)"), pl.from_pandas(slopes_data), GAUSSIAN)
    empty = duckdb.sql("SELECT 1.0 AS y, 1.0 AS x, 'a' AS g WHERE false")
    with pytest.raises(DataError, match="has no rows"):
        hb.Model("y ~ x + (1 | g)", empty)


def test_the_users_frame_is_not_changed(slopes_data):
    before = slopes_data.copy()
    frame = pl.from_pandas(slopes_data)
    hb.Model("y ~ x + (x | g)", frame)
    hb.Model("y ~ x + (x | g)", slopes_data, reduce=True)
    pd.testing.assert_frame_equal(slopes_data, before)
    pd.testing.assert_frame_equal(frame.to_pandas(), before)


@pytest.mark.slow  # starts a Dask cluster of two worker processes (5-20 s)
def test_the_sums_of_a_dask_frame_are_computed_on_the_workers(slopes_data):
    """Each partition's sums are a task on a worker; the client adds J rows per partition."""
    from distributed import Client, LocalCluster, get_task_stream

    rows = hb.Model("y ~ x + (x | g)", slopes_data).design
    frame = dd.from_pandas(slopes_data, npartitions=4)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        with get_task_stream(client) as stream:
            design = hb.Model("y ~ x + (x | g)", frame).design
        workers = {task["worker"] for task in stream.data}
        assert workers <= set(client.scheduler_info()["workers"]) and len(workers) == 2
        assert sum("_partition_sums" in task["key"] for task in stream.data) == 4
    assert_same_statistics(design, rows, "dask cluster")
