"""The reporting layer on small fake InferenceData (no MCMC)."""

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierbayes as hb
from hierbayes.analysis.plots import plot_pooling
from hierbayes.analysis.report import TABLE_COLUMNS, pooling_report
from hierbayes.spec.design import build_design
from hierbayes.spec.families import GAUSSIAN
from hierbayes.spec.formula import parse


def fake_eight(eight, seed=0):
    design = build_design(parse("y ~ 1 + (1 | school)"), eight, se="sigma", family=GAUSSIAN)
    rng = np.random.default_rng(seed)
    mu = rng.normal(4.4, 3.3, size=(2, 300))
    tau = np.abs(rng.normal(0, 5, size=(2, 300, 1)))
    u = rng.normal(0, 1, size=(2, 300, 8, 1)) * tau[:, :, None, :]
    idata = az.from_dict(
        posterior={
            "Intercept": mu,
            "sd_school": tau,
            "u_school": u,
            "b_school": mu[:, :, None, None] + u,
        },
        coords={"school": list(eight["school"]), "school_term": ["Intercept"]},
        dims={
            "sd_school": ["school_term"],
            "u_school": ["school", "school_term"],
            "b_school": ["school", "school_term"],
        },
    )
    return idata, design


def test_table_against_direct_computation(eight):
    idata, design = fake_eight(eight)
    report = pooling_report(idata, design, hdi_prob=0.9)
    t = report.table
    assert list(t.columns) == TABLE_COLUMNS
    y, s = eight["y"].to_numpy(float), eight["sigma"].to_numpy(float)
    pooled = np.sum(y / s**2) / np.sum(1 / s**2)
    np.testing.assert_allclose(pooled, 7.6856, atol=1e-4)
    np.testing.assert_allclose(t["no_pooling"], y)
    np.testing.assert_allclose(t["se"], s)
    np.testing.assert_allclose(t["complete_pooling"], pooled)
    b = idata.posterior["b_school"].values[..., 0].reshape(-1, 8)
    np.testing.assert_allclose(t["partial_pooling"], b.mean(axis=0))
    np.testing.assert_allclose(t["partial_pooling_sd"], b.std(axis=0, ddof=1))
    hdi = az.hdi(idata.posterior["b_school"], hdi_prob=0.9)["b_school"].values[:, 0, :]
    np.testing.assert_allclose(t[["hdi_lower", "hdi_upper"]], hdi)
    np.testing.assert_allclose(t["shrinkage"], (y - b.mean(0)) / (y - pooled))
    tau2 = idata.posterior["sd_school"].values.reshape(-1, 1) ** 2
    np.testing.assert_allclose(t["reliability"], np.mean(tau2 / (tau2 + s**2), axis=0))
    assert t["n"].tolist() == [1] * 8
    assert t["group"].tolist() == list("ABCDEFGH")


def test_summary_row(eight):
    idata, design = fake_eight(eight, seed=1)
    report = pooling_report(idata, design)
    row = report.summary.iloc[0]
    tau = idata.posterior["sd_school"].values.ravel()
    np.testing.assert_allclose(row["sd_mean"], tau.mean())
    u = idata.posterior["u_school"].values[..., 0].reshape(-1, 8)
    expected = 1 - np.var(u.mean(0), ddof=1) / np.mean(np.var(u, axis=1, ddof=1))
    np.testing.assert_allclose(row["pooling_factor"], expected)
    assert row["groups"] == 8 and row["term"] == "Intercept"


def test_to_xarray(eight):
    idata, design = fake_eight(eight)
    report = pooling_report(idata, design)
    ds = report.to_xarray()
    assert isinstance(ds, xr.Dataset)
    np.testing.assert_allclose(ds["no_pooling"].sel(factor="school", term="Intercept"), eight["y"])
    assert ds.attrs["hdi_prob"] == 0.94


def test_plot_draws_every_group(eight):
    idata, design = fake_eight(eight)
    fig = pooling_report(idata, design).plot()
    (ax,) = fig.axes
    assert ax.get_title() == "school: Intercept"
    assert [t.get_text() for t in ax.get_yticklabels()] == list("ABCDEFGH")
    no_pool = next(line for line in ax.get_lines() if line.get_label() == "no pooling")
    np.testing.assert_allclose(sorted(no_pool.get_xdata()), sorted(eight["y"]))
    arrows = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == 8


def test_estimated_sigma_reliability_uses_sigma_draws():
    df = pd.DataFrame({"y": [1.0, 2.0, 2.5, 4.0, 5.0, 3.0, 6.0], "g": list("aabbbcc")})
    design = build_design(parse("y ~ 1 + (1 | g)"), df, se=None, family=GAUSSIAN)
    rng = np.random.default_rng(0)
    tau = np.abs(rng.normal(1, 0.3, size=(1, 400, 1)))
    sigma = np.abs(rng.normal(0.8, 0.1, size=(1, 400)))
    u = rng.normal(size=(1, 400, 3, 1))
    idata = az.from_dict(
        posterior={
            "Intercept": np.zeros((1, 400)),
            "sd_g": tau,
            "u_g": u,
            "b_g": u,
            "sigma": sigma,
        },
        coords={"g": ["a", "b", "c"], "g_term": ["Intercept"]},
        dims={"sd_g": ["g_term"], "u_g": ["g", "g_term"], "b_g": ["g", "g_term"]},
    )
    t = pooling_report(idata, design).table
    n = np.array([2, 3, 2])
    tau2, s2 = tau.reshape(-1, 1) ** 2, sigma.reshape(-1, 1) ** 2
    np.testing.assert_allclose(t["reliability"], np.mean(tau2 / (tau2 + s2 / n), axis=0))
    assert t["n"].tolist() == [2, 3, 2]
    np.testing.assert_allclose(t["no_pooling"], [1.5, 11.5 / 3, 4.5])
    np.testing.assert_allclose(t["complete_pooling"], df["y"].mean())


def test_bad_hdi_and_missing_variables(eight):
    idata, design = fake_eight(eight)
    with pytest.raises(hb.SpecError, match="hdi_prob must be in"):
        pooling_report(idata, design, hdi_prob=94)
    with pytest.raises(hb.SpecError, match="has no variable 'b_school'"):
        pooling_report(az.from_dict(posterior={"Intercept": np.zeros((1, 5))}), design)


def test_groups_without_their_own_fit_are_noted():
    """A varying slope: groups c and d have one row each, so their own regressions do not
    exist."""
    y = [1.0, 2.0, 2.5, 4.0, 5.0, 3.0, 6.0]
    df = pd.DataFrame({"y": y, "x": [0, 1, 0, 1, 2, 1.0, 3], "g": list("aabbbcd")})
    design = build_design(parse("y ~ x + (x | g)"), df, se=None, family=GAUSSIAN)
    rng = np.random.default_rng(1)
    u = rng.normal(size=(1, 50, 4, 2))
    idata = az.from_dict(
        posterior={
            "Intercept": np.zeros((1, 50)),
            "x": np.ones((1, 50)),
            "sd_g": np.ones((1, 50, 2)),
            "u_g": u,
            "b_g": u,
            "sigma": np.ones((1, 50)),
        },
        coords={"g": ["a", "b", "c", "d"], "g_term": ["Intercept", "x"]},
        dims={"sd_g": ["g_term"], "u_g": ["g", "g_term"], "b_g": ["g", "g_term"]},
    )
    report = pooling_report(idata, design)
    missing = report.table.loc[report.table["no_pooling"].isna(), ["group", "term"]]
    assert sorted(missing["group"].unique()) == ["c", "d"]
    assert report.notes == tuple(
        f"g / {term}: 2 group(s) have no no-pooling estimate (too few rows, or no variation in "
        "the term within the group): c, d; their no_pooling, se and shrinkage are NaN"
        for term in ("Intercept", "x")
    )


def _table(no_pooling, n):
    k = len(no_pooling)
    partial = 0.5 * np.asarray(no_pooling, dtype=float).clip(-1, 1)
    return pd.DataFrame(
        {
            "factor": "school",
            "group": [f"s{j}" for j in range(k)],
            "term": "standLRT",
            "n": n,
            "no_pooling": no_pooling,
            "complete_pooling": 0.0,
            "partial_pooling": partial,
            "hdi_lower": partial - 0.2,
            "hdi_upper": partial + 0.2,
            "reliability": np.asarray(n) / (np.asarray(n) + 5.0),
        }
    )


def test_shrinkage_plot_keeps_to_the_bulk_and_marks_a_far_estimate():
    """Like Exam's two-pupil school 48 (OLS slope -6.9 among slopes within +-1): the axis
    keeps to the others, the far estimate sits at the edge with its value."""
    rng = np.random.default_rng(2)
    no = np.append(rng.uniform(-1, 1, 30), -6.9)
    fig = plot_pooling(_table(no, np.append(rng.integers(10, 200, 30), 2)))
    (ax,) = fig.axes
    lo, hi = ax.get_xlim()
    assert lo > -1.5 and hi < 1.5
    labels = [t.get_text() for t in ax.texts if t.get_text()]
    assert labels == ["-6.9"]
    (edge,) = [line for line in ax.lines if line.get_marker() == "<"]
    np.testing.assert_allclose(edge.get_xdata(), [lo])
    # groups by size, the largest on top, the two-row group at the bottom
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[-1] == "s30"
    plt.close(fig)
    fig = plot_pooling(_table(no, np.append(rng.integers(10, 200, 30), 2)), order="table")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"s{j}" for j in range(31)]
    plt.close(fig)


def test_shrinkage_scatter_view():
    table = _table(np.array([-0.8, 0.1, 0.6]), [5, 50, 500])
    fig = plot_pooling(table, view="scatter")
    (ax,) = fig.axes
    (points,) = ax.collections
    np.testing.assert_allclose(points.get_offsets()[:, 1], table["partial_pooling"])
    assert points.get_sizes()[2] > points.get_sizes()[0]  # area grows with the rows
    assert {line.get_label() for line in ax.lines} == {"no pooling (y = x)", "complete pooling"}
    plt.close(fig)
    with pytest.raises(hb.SpecError, match="view must be one of"):
        plot_pooling(table, view="pie")
