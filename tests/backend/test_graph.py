"""Structural tier: the PyMC graphs, without sampling."""

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

import hierbayes as hb

from ..conftest import EIGHT_PRIORS

# structural checks, no sampling: no C compile (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("python_graphs")


@pytest.fixture(scope="module")
def graphs(eight_models):
    return {p: m.build() for p, m in eight_models.items()}


@pytest.mark.parametrize("par, sampled", [("non-centered", "z_school"), ("centered", "b_school")])
def test_free_variables_and_coords(graphs, eight, par, sampled):
    g = graphs[par]
    assert sorted(v.name for v in g.free_RVs) == sorted(["Intercept", "sd_school", sampled])
    assert g.coords["school"] == tuple(eight["school"])
    assert g.coords["school_term"] == ("Intercept",)
    assert g.named_vars_to_dims["b_school"] == ("school", "school_term")
    assert g.named_vars_to_dims["u_school"] == ("school", "school_term")
    assert g.named_vars_to_dims["y"] == ("obs",)
    assert {"b_school", "u_school", "sd_school", "Intercept"} <= set(g.named_vars)


@pytest.mark.parametrize("par", ["non-centered", "centered"])
def test_logp_and_gradient_finite_at_initial_point(graphs, par):
    g = graphs[par]
    point = g.initial_point()
    assert np.isfinite(g.compile_logp()(point))
    assert np.all(np.isfinite(g.compile_dlogp()(point)))


def test_centered_logp_is_the_textbook_density(graphs, eight):
    """At a chosen point, the centered graph's log density equals the hand-written one."""
    g = graphs["centered"]
    mu, tau = 3.0, 2.0
    theta = np.linspace(-4, 10, 8)
    y, se = eight["y"].to_numpy(float), eight["sigma"].to_numpy(float)
    expected = (
        stats.norm.logpdf(mu, 0, 5)
        + stats.halfcauchy.logpdf(tau, scale=5)
        + np.log(tau)  # log-transform Jacobian
        + stats.norm.logpdf(theta, mu, tau).sum()
        + stats.norm.logpdf(y, theta, se).sum()
    )
    point = {"Intercept": mu, "sd_school_log__": np.log([tau]), "b_school": theta[:, None]}
    np.testing.assert_allclose(g.compile_logp()(point), expected, rtol=1e-8)


def test_noncentered_logp_is_the_textbook_density(graphs, eight):
    g = graphs["non-centered"]
    mu, tau = 3.0, 2.0
    z = np.linspace(-1.5, 1.5, 8)
    y, se = eight["y"].to_numpy(float), eight["sigma"].to_numpy(float)
    expected = (
        stats.norm.logpdf(mu, 0, 5)
        + stats.halfcauchy.logpdf(tau, scale=5)
        + np.log(tau)
        + stats.norm.logpdf(z).sum()
        + stats.norm.logpdf(y, mu + tau * z, se).sum()
    )
    point = {"Intercept": mu, "sd_school_log__": np.log([tau]), "z_school": z[:, None]}
    np.testing.assert_allclose(g.compile_logp()(point), expected, rtol=1e-8)


def test_estimated_sigma_slopes_and_crossed_factors(regression_data):
    df = regression_data.assign(h=np.arange(len(regression_data)) % 4)
    with pytest.warns(hb.IdentifiabilityWarning, match="'h' has only 4 groups"):
        m = hb.Model("y ~ x + (x || g) + (1 | h)", df, parameterization="centered")
    g = m.build()
    assert {"sigma", "x", "Intercept", "sd_g", "b_g", "u_g", "sd_h", "b_h"} <= set(g.named_vars)
    assert g.coords["g_term"] == ("Intercept", "x")
    assert g.coords["h_term"] == ("Intercept",)
    point = g.initial_point()
    assert np.isfinite(g.compile_logp()(point))
    assert np.all(np.isfinite(g.compile_dlogp()(point)))
    # the Intercept is owned by the first factor only: h's group coefficients are deviations
    g_design, h_design = m.design.factors
    assert g_design.owns.tolist() == [True, True] and h_design.owns.tolist() == [False, False]
    assert h_design.level2.tolist() == [True, False]


@pytest.mark.parametrize("par", ["non-centered", "centered"])
def test_correlated_effects_graph(regression_data, par):
    m = hb.Model(
        "y ~ x + (x | g)", regression_data, parameterization=par, priors={"corr": hb.priors.LKJ(3)}
    )
    assert m.priors["corr_g"] == hb.priors.LKJ(3)
    g = m.build()
    assert g.named_vars_to_dims["corr_g"] == ("g_term", "g_term2")
    assert g.named_vars_to_dims["sd_g"] == ("g_term",)
    assert {"sd_g", "cpc_g"} <= {v.name for v in g.free_RVs}  # SDs and correlations apart
    point = g.initial_point()
    assert np.isfinite(g.compile_logp()(point))
    assert np.all(np.isfinite(g.compile_dlogp()(point)))
    sd, corr, u, b = pm.draw([g["sd_g"], g["corr_g"], g["u_g"], g["b_g"]], random_seed=1)
    np.testing.assert_allclose(np.diag(corr), 1.0, rtol=1e-12)
    np.testing.assert_allclose(corr, corr.T)
    assert np.all(np.linalg.eigvalsh(corr) > 0) and np.all(sd > 0)
    assert u.shape == b.shape == (30, 2)


def test_non_centered_correlated_effects_are_z_times_cholesky(regression_data):
    g = hb.Model("y ~ x + (x | g)", regression_data, parameterization="non-centered").build()
    fn = g.compile_fn(
        [g["u_g"], g["z_g"], g["sd_g"], g["corr_g"]],
        inputs=g.value_vars,
        on_unused_input="ignore",
        point_fn=True,
    )
    point = g.initial_point()
    point["z_g"] = np.random.default_rng(0).normal(size=(30, 2))
    u, z, sd, corr = fn(point)
    L = np.linalg.cholesky(np.diag(sd) @ corr @ np.diag(sd))
    np.testing.assert_allclose(u, z @ L.T, rtol=1e-10)


def test_correlated_effects_refuse_mixed_blocks_and_variance_priors(regression_data):
    df = regression_data.assign(w=regression_data["x"] ** 2)
    with pytest.raises(hb.SpecError, match="mix correlated and uncorrelated blocks"):
        hb.Model("y ~ x + w + (x | g) + (0 + w | g)", df)  # refused before any repr or graph
    with pytest.warns(hb.PriorWarning, match="InverseGamma prior on a variance"):
        m = hb.Model("y ~ x + (x | g)", df, priors={"sd": hb.priors.InverseGamma(1, 1)})
    assert "sd_g_variance" in m.build().named_vars  # the SDs of correlated effects too
    with pytest.raises(hb.SpecError, match="does not suit a correlation matrix: use LKJ"):
        hb.Model("y ~ x + (x | g)", df, priors={"corr_g": hb.priors.HalfNormal(1)})
    with pytest.raises(hb.SpecError, match="unknown prior key 'corr'"):
        hb.Model("y ~ x + (x || g)", df, priors={"corr": hb.priors.LKJ(2)})


def test_group_level_predictor_enters_the_centered_mean(regression_data):
    """b_j ~ Normal(Intercept + schavg * w_j, sd): the level-2 model in the centered graph."""
    w_group = np.linspace(-1, 1, 30)
    df = regression_data.assign(w=w_group[regression_data["g"].str[1:].astype(int)])
    m = hb.Model("y ~ x + w + (1 | g)", df, parameterization="centered")
    f = m.design.factors[0]
    assert f.level2.tolist() == [True, False, True] and f.owns.tolist() == [True, False, True]
    g = m.build()
    point = g.initial_point()
    point.update({"Intercept": 0.3, "w": 2.0})
    logp_b = g.compile_fn(
        g.logp(vars=[g["b_g"]], sum=False)[0],
        inputs=g.value_vars,
        on_unused_input="ignore",
        point_fn=True,
    )
    sd = float(np.exp(point["sd_g_log__"][0]))
    b = point["b_g"][:, 0]
    levels = np.array([int(s[1:]) for s in f.levels])
    expected = stats.norm.logpdf(b, 0.3 + 2.0 * w_group[levels], sd)
    np.testing.assert_allclose(logp_b(point)[:, 0], expected, rtol=1e-10)


def test_nested_factor_levels(regression_data):
    six = regression_data["g"].str[1:].astype(int) // 5
    df = regression_data.assign(a=six, b=np.arange(len(regression_data)) % 2)
    m = hb.Model("y ~ 1 + (1 | a/b)", df)
    names = [f.name for f in m.design.factors]
    assert names == ["a", "a:b"]
    assert m.design.factors[1].n_groups == 2 * m.design.factors[0].n_groups


def test_default_priors_scale_with_the_data(regression_data):
    m = hb.Model("y ~ x + (1 | g)", regression_data)
    s = regression_data["y"].std()
    sx = regression_data["x"].std()
    np.testing.assert_allclose(m.priors["Intercept"].mu, regression_data["y"].mean(), rtol=5e-3)
    np.testing.assert_allclose(m.priors["Intercept"].sigma, 2.5 * s, rtol=5e-3)
    np.testing.assert_allclose(m.priors["x"].sigma, 2.5 * s / sx, rtol=5e-3)
    np.testing.assert_allclose(m.priors["sd_g"].sigma, s, rtol=5e-3)
    np.testing.assert_allclose(m.priors["sigma"].sigma, s, rtol=5e-3)
    text = repr(m)
    assert f"sd_g: {m.priors['sd_g']}" in text and "sigma: HalfStudentT(nu=3" in text


def test_specific_sd_key_beats_general(regression_data):
    m = hb.Model(
        "y ~ x + (1 | g)", regression_data, priors={"sd": "halfnormal:1", "sd_g": "halfcauchy:2"}
    )
    assert m.priors["sd_g"] == hb.priors.HalfCauchy(2)


def test_prior_predictive_uses_the_same_graph(eight_models):
    prior = eight_models["non-centered"].prior_predictive(draws=4000, random_seed=3)
    mu = prior.prior["Intercept"].values.ravel()
    np.testing.assert_allclose([mu.mean(), mu.std()], [0, 5], atol=0.25)
    assert prior.prior_predictive["y"].shape == (1, 4000, 8)


def test_build_returns_a_new_plain_pymc_model(eight_models):
    m = eight_models["centered"]
    assert isinstance(m.build(), pm.Model)
    assert m.build() is not m.build()
    assert EIGHT_PRIORS["sd"] == m.priors["sd_school"]


def test_design_memory_is_linear_in_rows_and_groups():
    """10^6 rows in 10^4 groups: every design array is O(N q + J q p), never N x J."""
    rng = np.random.default_rng(0)
    n, J = 10**6, 10**4
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"y": x + rng.normal(size=J)[g] + rng.normal(size=n), "x": x, "g": g})
    design = hb.Model("y ~ x + (x | g)", df).design
    (f,) = design.factors
    arrays = [design.y, design.X, f.codes, f.Z, f.W]
    assert max(a.nbytes for a in arrays) <= 16 * n  # the largest is X or Z, (N, 2) floats
    assert sum(a.nbytes for a in arrays) < 100e6
    assert f.n_groups == J


def test_cross_level_interaction_is_the_level_two_model():
    """normexam ~ standLRT * schavg + (standLRT | school): beta_j = W_j gamma + u_j."""
    exam = hb.datasets.load("exam")
    m = hb.Model("normexam ~ standLRT * schavg + (standLRT | school)", exam)
    (f,) = m.design.factors
    assert m.design.fixed_names == ("Intercept", "standLRT", "schavg", "standLRT:schavg")
    assert f.level2.all() and f.owns.all()
    schavg = exam.groupby("school")["schavg"].first().loc[list(f.levels)].to_numpy()
    np.testing.assert_allclose(
        f.W[:, 0, :], np.column_stack([np.ones(65), np.zeros(65), schavg, np.zeros(65)])
    )
    np.testing.assert_allclose(
        f.W[:, 1, :], np.column_stack([np.zeros(65), np.ones(65), np.zeros(65), schavg])
    )


@pytest.mark.parametrize(
    "formula, fixed, terms",
    [
        ("y ~ 0 + (1 | g)", (), ("Intercept",)),
        ("y ~ x + (x - 1 | g)", ("Intercept", "x"), ("x",)),
        ("y ~ x + (0 + x | g)", ("Intercept", "x"), ("x",)),
        ("y ~ x", ("Intercept", "x"), None),
    ],
)
def test_intercept_handling_as_in_lme4(regression_data, formula, fixed, terms):
    m = hb.Model(formula, regression_data)
    assert m.design.fixed_names == fixed
    assert (m.design.factors[0].terms if terms else m.design.factors) == (terms or ())
    g = m.build()
    assert np.isfinite(g.compile_logp()(g.initial_point()))
