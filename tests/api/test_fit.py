"""Workflow tier: sampling eight schools and a small regression, then reporting."""

import numpy as np
import pytest

import hierbayes as hb

from ..conftest import quiet_fit


def test_eight_schools_matches_posteriordb_reference(eight_fit):
    """posteriordb eight_schools_noncentered reference: E[mu] = 4.4, E[tau] = 3.6 (+/- 0.25)."""
    post = eight_fit.idata.posterior
    np.testing.assert_allclose(float(post["Intercept"].mean()), 4.4, atol=0.25)
    np.testing.assert_allclose(float(post["sd_school"].mean()), 3.6, atol=0.25)
    d = eight_fit.diagnostics
    assert d.divergences == 0
    assert d.max_rhat <= 1.01
    assert d.min_ess_bulk >= 400 and d.ok
    # the fixture ran under filterwarnings=error: a SamplingWarning would have failed it


def test_inference_data_groups_and_coords(eight_fit, eight):
    idata = eight_fit.idata
    for group in ("posterior", "sample_stats", "observed_data", "log_likelihood"):
        assert group in idata.groups()
    assert idata.log_likelihood["y"].shape == (4, 2000, 8)
    np.testing.assert_array_equal(idata.observed_data["y"], eight["y"])
    assert list(idata.posterior["school"].values) == list("ABCDEFGH")
    assert idata.attrs["random_seed"] == 20261122
    assert idata.attrs["parameterization"] == "non-centered"
    assert idata.attrs["formula"] == "y ~ 1 + (1 | school)"


def test_pooling_report_acceptance(eight_fit, eight):
    t = eight_fit.pooling().table
    y = eight["y"].to_numpy(float)
    np.testing.assert_array_equal(t["no_pooling"], y)
    np.testing.assert_allclose(t["complete_pooling"], 7.6856, atol=5e-5)
    # each school's partial-pooling mean lies between its own estimate and the pooled ones
    # (the precision-weighted mean, or the posterior mean of mu towards which it shrinks)
    mu = float(eight_fit.idata.posterior["Intercept"].mean())
    low = np.minimum.reduce([y, t["complete_pooling"], np.full(8, mu)])
    high = np.maximum.reduce([y, t["complete_pooling"], np.full(8, mu)])
    assert ((t["partial_pooling"] >= low) & (t["partial_pooling"] <= high)).all()
    assert ((t["reliability"] > 0) & (t["reliability"] < 1)).all()
    # smaller standard error, more reliable estimate
    order = np.argsort(t["se"].to_numpy())
    assert np.all(np.diff(t["reliability"].to_numpy()[order]) <= 1e-12)


def test_centered_reports_divergences_with_advice(eight_models):
    with pytest.warns(hb.SamplingWarning) as record:  # also R-hat, ESS and E-BFMI warnings
        fit = eight_models["centered"].fit(
            draws=1000, tune=1000, chains=4, cores=2, random_seed=2, progressbar=False
        )
    assert fit.diagnostics.divergences > 0
    divergence_warnings = [w for w in record if "divergent" in str(w.message)]
    assert len(divergence_warnings) == 1
    assert "parameterization='non-centered'" in str(divergence_warnings[0].message)
    assert "target_accept (now 0.95)" in str(divergence_warnings[0].message)
    assert divergence_warnings[0].filename == __file__  # points at the user's call
    assert not fit.diagnostics.ok


def test_both_parameterizations_expose_the_same_quantities(eight_fit, eight_models):
    centered = quiet_fit(eight_models["centered"], random_seed=4)
    names = lambda fit: set(fit.idata.posterior.data_vars) - {"z_school"}  # noqa: E731
    assert names(centered) == names(eight_fit) == {"Intercept", "sd_school", "b_school", "u_school"}
    for var in ("b_school", "u_school", "sd_school"):
        assert centered.idata.posterior[var].dims[2:] == eight_fit.idata.posterior[var].dims[2:]
    # b = Intercept + u in every draw, whichever was sampled
    for fit in (centered, eight_fit):
        p = fit.idata.posterior
        np.testing.assert_allclose(p["b_school"], p["Intercept"] + p["u_school"], atol=1e-9)


def test_same_seed_same_draws(eight_models):
    a = quiet_fit(eight_models["non-centered"], draws=100, tune=100, random_seed=7)
    b = quiet_fit(eight_models["non-centered"], draws=100, tune=100, random_seed=7)
    c = quiet_fit(eight_models["non-centered"], draws=100, tune=100, random_seed=8)
    np.testing.assert_array_equal(a.idata.posterior["b_school"], b.idata.posterior["b_school"])
    assert not np.array_equal(a.idata.posterior["b_school"], c.idata.posterior["b_school"])


def test_regression_with_estimated_sigma_recovers_truth(regression_data):
    """Truth: intercept 1.5, slope 0.7, group SD 0.8, residual SD 0.5 (30 groups)."""
    fit = quiet_fit(
        hb.Model("y ~ x + (1 | g)", regression_data), draws=500, tune=500, random_seed=3
    )
    p = fit.idata.posterior
    np.testing.assert_allclose(float(p["x"].mean()), 0.7, atol=0.05)
    np.testing.assert_allclose(float(p["sigma"].mean()), 0.5, atol=0.05)
    np.testing.assert_allclose(float(p["sd_g"].mean()), 0.8, atol=0.3)
    np.testing.assert_allclose(float(p["Intercept"].mean()), 1.5, atol=0.4)
    t = fit.pooling().table
    assert t["n"].sum() == len(regression_data)
    assert np.isfinite(t["se"]).all() and ((t["reliability"] > 0) & (t["reliability"] < 1)).all()
    assert fit.summary().table.index.tolist() == ["Intercept", "x", "sd_g[Intercept]", "sigma"]


def test_fit_repr_has_the_verdict(eight_fit):
    text = repr(eight_fit)
    assert "4 chains x 2000 draws" in text and "verdict             ok" in text


@pytest.mark.slow  # a graph of its own: about 34 s, mostly its cold C compile
def test_correlated_and_crossed_models_sample(regression_data):
    """Structure in the posterior: correlations, and one row per group of each factor."""
    df = regression_data.assign(h=np.arange(len(regression_data)) % 6)
    fit = quiet_fit(hb.Model("y ~ x + (x | g) + (1 | h)", df), draws=200, tune=300, random_seed=9)
    post = fit.idata.posterior
    assert post["corr_g"].shape[2:] == (2, 2) and post["b_h"].shape[2:] == (6, 1)
    np.testing.assert_allclose(post["corr_g"].sel(g_term="x", g_term2="x"), 1.0)
    assert np.all(np.abs(post["corr_g"].values) <= 1 + 1e-12)
    # h's true SD is 0 (a funnel): seeds 1-9 gave 0-2 divergences in these 400 draws (0-25
    # under the LKJCholeskyCov parameterisation this replaced); more points to a regression
    assert fit.diagnostics.divergences <= 4
    report = fit.pooling()  # two factors: no EB, one table for both
    assert set(report.table["factor"]) == {"g", "h"} and "empirical_bayes" not in report.table


def test_strict_fit_raises_with_every_problem(eight_models):
    with pytest.raises(hb.SamplingError, match="divergent transitions") as info:
        eight_models["centered"].fit(
            draws=200, tune=200, chains=2, cores=2, random_seed=2, progressbar=False, strict=True
        )
    assert "non-centered" in str(info.value)


def test_repr_speaks_of_sigma_only_where_there_is_one(regression_data):
    df = regression_data.assign(c=(regression_data["y"] > 1.5).astype(int))
    for family in ("bernoulli", "poisson"):
        model = hb.Model("c ~ x + (1 | g)", df, family=family)
        header = repr(model).splitlines()[1].strip()
        assert header == f"family {family}, {model.plan.describe()}, {len(df)} observations"
    header = repr(hb.Model("y ~ x + (1 | g)", df)).splitlines()[1]
    assert header.strip().endswith(f"{len(df)} observations, sigma estimated")
