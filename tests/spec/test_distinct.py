"""Discrete-response rows collapsed in their engine (hierbayes.spec.distinct, .intake): the
same log density as the rows at any point, the same default priors and plan; continuous
predictors read as rows, or refused with the count; bad values named by engine row."""

from __future__ import annotations

import dask.dataframe as dd
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

import hierbayes as hb
from hierbayes.errors import DataError, SpecError
from hierbayes.spec import sources
from hierbayes.spec.distinct import collapse


@pytest.fixture(scope="module")
def counts_data() -> pd.DataFrame:
    """4,000 rows of 40 groups, a three-level predictor k, the counts c drawn with an exposure t:
    Bernoulli, binomial and Poisson responses."""
    rng = np.random.default_rng(17)
    n, J = 4000, 40
    g, k = rng.integers(0, J, n), rng.integers(0, 3, n)
    t = rng.choice([1.0, 2.0, 4.0], n)
    eta = -0.3 + 0.5 * (k == 1) - 0.4 * (k == 2) + rng.normal(0, 0.6, J)[g]
    p = 1 / (1 + np.exp(-eta))
    return pd.DataFrame(
        {
            "y": (rng.random(n) < p).astype(int),
            "s": rng.binomial(3, p),
            "trials": 3,
            "c": rng.poisson(np.exp(eta) * t),
            "t": t,
            "k": [f"k{v}" for v in k],
            "g": [f"g{v:02d}" for v in g],
        }
    )


MODELS = {
    "bernoulli": ("y ~ k + (1 | g)", {"family": "bernoulli"}),
    "binomial": ("s ~ k + (1 | g)", {"family": "binomial", "trials": "trials"}),
    # without an offset: with one, Poisson rows sum into cells instead (test_summed.py)
    "poisson": ("c ~ k + (1 | g)", {"family": "poisson"}),
}


def log_density(model: hb.Model, point: dict) -> float:
    return float(model.build().compile_logp()(point))


@pytest.mark.parametrize("family", list(MODELS))
def test_distinct_rows_have_the_log_density_and_priors_of_the_rows(counts_data, family):
    """At the same point (group effects matched by label), the model of distinct rows and
    the model of the rows have the same joint log density: the counts are exact."""
    formula, options = MODELS[family]
    rows = hb.Model(formula, counts_data, **options)
    distinct = hb.Model(formula, pl.from_pandas(counts_data), **options)
    assert distinct.data is not None and distinct.design.multiplicity is not None
    assert distinct.design.n_rows == rows.design.n_obs == 4000
    assert distinct.design.n_obs <= 2000  # collapsed when at most half the rows are distinct
    assert distinct.priors == rows.priors  # defaults computed over the rows, counted
    assert distinct.plan.describe() == rows.plan.describe()
    (f,), (r,) = distinct.design.factors, rows.design.factors
    np.testing.assert_array_equal(f.counts, r.counts[r.levels.get_indexer(f.levels)])
    rng = np.random.default_rng(1)
    point = {
        k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in rows.build().initial_point().items()
    }
    for name, values in list(point.items()):
        if np.ndim(values) and len(values) == r.n_groups:  # a vector over the groups
            point[name] = values[r.levels.get_indexer(f.levels)]
            assert log_density(distinct, point) != 0.0
            expected = log_density(rows, {**point, name: values})
            np.testing.assert_allclose(log_density(distinct, point), expected, rtol=1e-10)


def test_every_engine_gives_the_same_distinct_rows(counts_data, tmp_path):
    counts_data.to_parquet(tmp_path / "c.parquet", index=False)
    columns = ["y", "k", "g"]
    reference, count = collapse(counts_data, columns)
    assert reference[count].sum() == len(counts_data)
    engines = {
        "polars": pl.from_pandas(counts_data).lazy(),
        "duckdb": duckdb.connect().from_df(counts_data),
        "parquet": sources.open_source(tmp_path / "c.parquet"),
        "dask": dd.from_pandas(counts_data, npartitions=3),
    }
    for name, data in engines.items():
        frame, _ = collapse(data, columns)
        pd.testing.assert_frame_equal(frame, reference, check_dtype=False, obj=name)


def test_continuous_predictors_are_read_as_rows_or_refused_with_the_count(counts_data, monkeypatch):
    data = pl.from_pandas(counts_data.assign(x=np.linspace(0, 1, len(counts_data))))
    model = hb.Model("y ~ x + (1 | g)", data, family="bernoulli")
    assert model.design.multiplicity is None and len(model.data) == 4000
    monkeypatch.setattr(sources, "available_memory", lambda: 10_000)
    with pytest.raises(DataError, match="4,000 rows.*4,000 of its 4,000 rows are distinct"):
        hb.Model("y ~ x + (1 | g)", data, family="bernoulli")
    with pytest.raises(DataError, match="4,000 rows.*a continuous predictor makes nearly"):
        hb.Model("y ~ x + (1 | g)", data, family="bernoulli", reduce=True)


def test_reduce_true_collapses_a_pandas_frame_and_refuses_what_cannot(counts_data):
    model = hb.Model("y ~ k + (1 | g)", counts_data, family="bernoulli", reduce=True)
    assert model.design.multiplicity is not None
    with pytest.raises(SpecError, match="nor do its rows collapse: the gamma family"):
        hb.Model("t ~ k + (1 | g)", counts_data, family="gamma", reduce=True)
    with pytest.raises(SpecError, match="weights= is a column of its own"):
        hb.Model("y ~ k + (1 | g)", counts_data, family="bernoulli", weights="t", reduce=True)


@pytest.mark.parametrize("engine", ["polars", "duckdb", "dask"])
def test_missing_values_are_named_by_their_rows_in_the_engine(counts_data, engine):
    bad = counts_data.astype({"k": object})
    bad.loc[[6, 301], "k"] = None
    data = {
        "polars": lambda: pl.from_pandas(bad),
        "duckdb": lambda: duckdb.connect().from_df(bad),
        "dask": lambda: dd.from_pandas(bad, npartitions=4),
    }[engine]()
    with pytest.raises(DataError, match=r"column 'k' has missing .* 2 rows \(6, 301\)"):
        hb.Model("y ~ k + (1 | g)", data, family="bernoulli")


def test_a_bad_response_says_the_rows_are_distinct_rows(counts_data):
    bad = counts_data.assign(y=lambda d: d["y"].where(d.index != 5, 2))
    with pytest.raises(DataError, match="not 0 or 1.*distinct rows of the data's 4,000.*reduce"):
        hb.Model("y ~ k + (1 | g)", pl.from_pandas(bad), family="bernoulli")


def test_what_needs_the_rows_says_so(counts_data):
    model = hb.Model("y ~ k + (1 | g)", pl.from_pandas(counts_data), family="bernoulli")
    with pytest.raises(SpecError, match="distinct rows of its 4,000 rows, with counts"):
        model.design.require_rows("Bayesian R²")
