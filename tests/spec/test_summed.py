"""Poisson rows summed per cell with their exposure (hierbayes.spec.summed, .intake): the
rows' log density less a constant computed from the rows, the rows' priors and plan, the
same cells from every engine and every way of writing the exposure; what does not sum is
read otherwise; bad counts and exposures named by engine row."""

from __future__ import annotations

import re

import dask.dataframe as dd
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.special import gammaln

import hierbayes as hb
from hierbayes.errors import DataError, SpecError
from hierbayes.spec import sources
from hierbayes.spec.summed import Exposure, exposure, sum_cells

FORMULA = "c ~ k + offset(np.log(t)) + (1 | g)"


@pytest.fixture(scope="module")
def visits() -> pd.DataFrame:
    """4,000 rows of 40 groups and a three-level predictor k, each with its own continuous
    exposure t: hardly two rows are alike, but there are 120 cells (k, g)."""
    rng = np.random.default_rng(31)
    n, J = 4000, 40
    g, k = rng.integers(0, J, n), rng.integers(0, 3, n)
    t = rng.gamma(2.0, 1.0, n)
    eta = -0.3 + 0.5 * (k == 1) - 0.4 * (k == 2) + rng.normal(0, 0.6, J)[g]
    return pd.DataFrame(
        {
            "c": rng.poisson(np.exp(eta) * t),
            "t": t,
            "logt": np.log(t),
            "x": rng.normal(size=n),
            "k": [f"k{v}" for v in k],
            "g": [f"g{v:02d}" for v in g],
        }
    )


def row_constant(df: pd.DataFrame) -> float:
    """sum_c K_c (module docstring of hierbayes.spec.summed), from the rows by pandas."""
    cells = df.assign(o=np.log(df["t"])).groupby(["k", "g"])
    y, e = cells["c"].sum(), cells["t"].sum()
    rows = (df["c"] * np.log(df["t"]) - gammaln(df["c"] + 1.0)).sum()
    return float(rows - (y * np.log(e)).sum() + gammaln(y + 1.0).sum())


def test_cells_have_the_rows_log_density_less_a_constant(visits):
    """At any point (group effects matched by label), the rows' joint log density is the
    cells' plus sum_c K_c, free of the parameters: the posterior is the rows'."""
    options = {"family": "poisson", "parameterization": "non-centered"}
    rows = hb.Model(FORMULA, visits, **options)
    cells = hb.Model(FORMULA, pl.from_pandas(visits), **options)
    d = cells.design
    assert d.summed_offsets is not None and d.weights is None
    assert (d.n_obs, d.n_rows) == (120, 4000)
    assert cells.priors == rows.priors  # the mean offset and response over the rows
    (f,), (r,) = d.factors, rows.design.factors
    np.testing.assert_array_equal(f.counts, r.counts[r.levels.get_indexer(f.levels)])
    logp_rows, logp_cells = (m.build().compile_logp() for m in (rows, cells))
    rng = np.random.default_rng(2)
    start = rows.build().initial_point()
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}
        by_label = {
            k: v[r.levels.get_indexer(f.levels)] if np.shape(v)[:1] == (r.n_groups,) else v
            for k, v in point.items()
        }
        np.testing.assert_allclose(
            logp_rows(point) - logp_cells(by_label), row_constant(visits), rtol=1e-10
        )


def test_auto_plans_the_cells_as_the_rows(visits):
    rows = hb.Model(FORMULA, visits, family="poisson")
    cells = hb.Model(FORMULA, pl.from_pandas(visits), family="poisson")
    assert cells.plan.describe() == rows.plan.describe()


def test_every_engine_gives_the_cells_pandas_gives(visits, tmp_path):
    visits.to_parquet(tmp_path / "v.parquet", index=False)
    cells = visits.assign(o=np.log(visits["t"])).groupby(["k", "g"])
    reference = pd.DataFrame(
        {
            "c": cells["c"].sum().astype(float),
            "t": cells["t"].sum(),
            "rows": cells.size(),
            "offsets": cells["o"].sum(),
        }
    ).reset_index()
    engines = {
        "pandas": visits,
        "polars": pl.from_pandas(visits).lazy(),
        "duckdb": duckdb.connect().from_df(visits),
        "parquet": sources.open_source(tmp_path / "v.parquet"),
        "dask": dd.from_pandas(visits, npartitions=3),
    }
    for name, data in engines.items():
        got = sum_cells(data, ["k", "g"], "c", Exposure("t", logged=True))
        assert (got.count, got.offsets) == ("rows", "offsets")
        pd.testing.assert_frame_equal(got.frame, reference, check_dtype=False, rtol=1e-10, obj=name)


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_columns_named_like_the_cells_own_keep_their_values(visits, engine):
    """A grouping column named like an aggregate (_y), a response named like the count
    column (rows) and an exposure named like the offsets column (offsets) are not
    overwritten: the cells' own columns take other names."""
    named = visits.rename(columns={"k": "_y", "c": "rows", "t": "offsets"})
    data = named if engine == "pandas" else dd.from_pandas(named, npartitions=3)
    got = sum_cells(data, ["_y", "g"], "rows", Exposure("offsets", logged=True))
    assert (got.count, got.offsets) == ("_rows", "_offsets")
    cells = named.groupby(["_y", "g"])
    np.testing.assert_array_equal(got.frame["_y"], cells.size().index.get_level_values("_y"))
    np.testing.assert_allclose(got.frame["rows"], cells["rows"].sum(), rtol=0)
    np.testing.assert_allclose(got.frame["offsets"], cells["offsets"].sum(), rtol=1e-12)
    np.testing.assert_array_equal(got.frame["_rows"], cells.size())


def test_every_way_of_writing_the_exposure_gives_one_design(visits):
    data = pl.from_pandas(visits)
    ways = {
        "np.log": hb.Model(FORMULA, data, family="poisson"),
        "log": hb.Model("c ~ k + offset(log(t)) + (1 | g)", data, family="poisson"),
        "offset(logt)": hb.Model("c ~ k + offset(logt) + (1 | g)", data, family="poisson"),
        "offset=": hb.Model("c ~ k + (1 | g)", data, family="poisson", offset="logt"),
    }
    first = ways["np.log"].design
    for name, model in ways.items():
        d = model.design
        for a, b in [(d.y, first.y), (d.X, first.X), (d.offset, first.offset)]:
            np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(d.summed_offsets, first.summed_offsets, rtol=1e-12)
        assert model.priors == ways["np.log"].priors, name


@pytest.mark.parametrize(
    ("formula", "options", "why"),
    [
        ("c ~ k + offset(np.log(2 * t)) + (1 | g)", {}, "is neither a column nor the log"),
        ("c ~ k + t + offset(np.log(t)) + (1 | g)", {}, "exposure column 't' is read by"),
        ("c ~ k + offset(np.log(t)) + (1 | g)", {"family": "negativebinomial"}, "does not add"),
        ("c ~ k + (1 | g)", {}, "it has no offset"),
        ("c ~ k + offset(np.log(t)) + (1 | g)", {"offset": "logt"}, "more than one offset"),
    ],
)
def test_what_does_not_sum_says_why_and_is_read_otherwise(visits, formula, options, why):
    """Such rows are read, or with reduce=True collapsed into distinct rows (exact too, but
    with a continuous exposure as many as the rows)."""
    options = {"family": "poisson", **options}
    model = hb.Model(formula, pl.from_pandas(visits), **options)
    types = sources.schema(visits)
    reason = exposure(
        model.formula, model.family, model.namespace, {"offset": options.get("offset")}, types
    )
    assert isinstance(reason, str) and why in reason, reason
    if why != "it has no offset":  # without an offset the rows repeat: distinct rows
        assert model.design.reduced is None and len(model.data) == 4000
    forced = hb.Model(formula, visits, reduce=True, **options).design
    assert forced.summed_offsets is None and forced.multiplicity is not None


def test_stateful_transforms_keep_rows_from_collapsing(visits):
    """scale(x) learns its mean and SD from the rows it sees: distinct rows or cells would
    give it other values, and the coefficient another meaning, so the rows are read."""
    df = visits.assign(x=np.where(visits["x"] > 1, 5.0, np.where(visits["x"] > 0, 1.0, 0.0)))
    model = hb.Model("c ~ scale(x) + (1 | g)", pl.from_pandas(df), family="poisson")
    assert model.design.reduced is None
    np.testing.assert_allclose(model.design.X[:, 1].mean(), 0.0, atol=1e-12)
    for formula in ("c ~ scale(x) + (1 | g)", "c ~ scale(x) + offset(np.log(t)) + (1 | g)"):
        with pytest.raises(SpecError, match=r"nor do its rows collapse: scale\(...\) learns"):
            hb.Model(formula, df, family="poisson", reduce=True)


def test_too_many_cells_are_read_as_rows_or_refused_with_the_count(visits, monkeypatch):
    model = hb.Model(
        "c ~ x + offset(np.log(t)) + (1 | g)", pl.from_pandas(visits), family="poisson"
    )
    assert model.design.reduced is None and len(model.data) == 4000
    monkeypatch.setattr(sources, "available_memory", lambda: 10_000)
    with pytest.raises(DataError, match="4,000 rows.*rows fall in 4,000 cells.*too many to sum"):
        hb.Model("c ~ x + offset(np.log(t)) + (1 | g)", pl.from_pandas(visits), family="poisson")


ENGINES = {
    "polars": pl.from_pandas,
    "duckdb": lambda df: duckdb.connect().from_df(df),
    "dask": lambda df: dd.from_pandas(df, npartitions=4),
}


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        (
            "c",
            {6: -1, 7: 9},
            r"'c' has values that are not non-negative integer counts in 1 row \(6\)",
        ),
        ("c", {301: 1.5}, r"'c' has values that are not non-negative .* 1 row \(301\)"),
        ("t", {12: 0.0, 40: -1.0}, r"exposure column 't' is not positive in 2 rows \(12, 40\)"),
        ("t", {5: np.nan}, r"column 't' has missing .* 1 row \(5\)"),
    ],
)
def test_bad_counts_and_exposures_are_named_by_row_in_the_engine(
    visits, engine, column, values, match
):
    """A negative count is refused though its cell's sum is not negative (row 7 makes up for
    row 6 when both are in one cell); so is a fraction, an exposure <= 0, a missing one."""
    bad = visits.copy()
    bad.loc[[7], ["k", "g"]] = bad.loc[6, ["k", "g"]].to_numpy()
    bad = bad.astype({"c": float})
    for row, value in values.items():
        bad.loc[row, column] = value
    with pytest.raises(DataError, match=match):
        hb.Model(FORMULA, ENGINES[engine](bad), family="poisson")


@pytest.mark.parametrize("engine", list(ENGINES))
def test_text_exposures_and_empty_data_get_the_errors_of_rows(visits, engine):
    """A text exposure is not summed: the rows are read, and the error is the one a pandas
    frame of those rows gets; no rows at all is said so."""
    text = visits.assign(t=visits["t"].map("{:.3f}".format))
    with pytest.raises(SpecError) as expected:
        hb.Model(FORMULA, text, family="poisson")
    assert "offset(np.log(t))" in str(expected.value)
    with pytest.raises(SpecError, match=re.escape(str(expected.value))):
        hb.Model(FORMULA, ENGINES[engine](text), family="poisson")
    with pytest.raises(DataError, match="has no rows"):
        hb.Model(FORMULA, ENGINES[engine](visits.iloc[:0]), family="poisson")
