"""The marginal parameterisation and the automatic choice: structural tests, no sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest
from scipy.stats import multivariate_normal

import hierbayes as hb
from hierbayes.backend.marginal import draw_group_effects, marginal_loglik, sufficient_stats
from hierbayes.backend.plan import plan, reliability

# structural checks, no sampling: no C compile (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("python_graphs")


@pytest.fixture(scope="module")
def level2_data() -> pd.DataFrame:
    """Unbalanced groups (2 to 6 rows), a level-2 predictor w and known SEs s."""
    rng = np.random.default_rng(5)
    sim = hb.datasets.simulate_hierarchical(6, [3, 4, 5, 2, 6, 4], seed=3)
    df = sim.data.copy()
    df["s"] = rng.uniform(0.5, 2.0, len(df))
    df["w"] = df["group"].map(
        dict(zip(sorted(df["group"].unique()), rng.normal(size=6), strict=True))
    )
    return df


def dense_loglik(design, beta, T, sigma):
    """log N(y_j; X_j beta, Z_j T Z_j' + R_j) summed over groups, with n_j x n_j matrices."""
    f = design.factors[0]
    total = 0.0
    for j in range(f.n_groups):
        rows = f.codes == j
        Z = f.Z[rows]
        R = np.diag(design.se[rows] ** 2) if sigma is None else sigma**2 * np.eye(rows.sum())
        cov = Z @ T @ Z.T + R
        total += multivariate_normal(design.X[rows] @ beta, cov).logpdf(design.y[rows])
    return total


@pytest.mark.parametrize("se", [None, "s"])
@pytest.mark.parametrize(
    "formula", ["y ~ x * w + (x | group)", "y ~ x + (x || group)", "y ~ 0 + x + (1 | group)"]
)
def test_marginal_loglik_equals_dense_gaussian(level2_data, formula, se):
    model = hb.Model(formula, level2_data, se=se, parameterization="marginal")
    d = model.design
    rng = np.random.default_rng(1)
    beta = rng.normal(size=len(d.fixed_names))
    q = d.factors[0].Z.shape[1]
    L = np.array([[0.7, 0.0], [0.3, 0.5]])[:q, :q]
    if not d.factors[0].correlated:
        L = np.diag(np.diag(L))
    sigma = None if se else 0.8
    value = marginal_loglik(
        sufficient_stats(d),
        pt.as_tensor(beta),
        pt.as_tensor(L),
        None if sigma is None else pt.as_tensor(sigma),
    ).eval()
    np.testing.assert_allclose(value, dense_loglik(d, beta, L @ L.T, sigma), rtol=1e-12)


def test_marginal_loglik_stable_as_tau_vanishes(level2_data):
    """With T -> 0 the marginal is the no-group-effects likelihood (no T^-1 is ever formed)."""
    d = hb.Model("y ~ x + (x | group)", level2_data, parameterization="marginal").design
    beta = np.array([0.3, 0.9])
    value = marginal_loglik(
        sufficient_stats(d), pt.as_tensor(beta), pt.as_tensor(np.zeros((2, 2))), pt.as_tensor(1.2)
    ).eval()
    expected = np.sum(-0.5 * np.log(2 * np.pi * 1.2**2) - 0.5 * ((d.y - d.X @ beta) / 1.2) ** 2)
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_marginal_graph_has_no_group_effects_and_finite_gradient(level2_data):
    model = hb.Model("y ~ x * w + (x | group)", level2_data, parameterization="marginal")
    pm_model = model.build()
    assert sorted(v.name for v in pm_model.free_RVs) == sorted(
        ["Intercept", "x", "w", "x:w", "sd_group", "cpc_group", "sigma"]
    )
    assert "b_group" not in pm_model.named_vars and "z_group" not in pm_model.named_vars
    point = pm_model.initial_point()
    assert np.isfinite(pm_model.compile_logp()(point))
    assert np.all(np.isfinite(pm_model.compile_dlogp()(point)))


def test_group_effect_draws_match_the_exact_conditional(level2_data):
    """Moments of 40000 draws of u_j against (T^-1 + Z'R^-1 Z)^-1 Z'R^-1 (y - X beta)."""
    d = hb.Model("y ~ x + (x | group)", level2_data, se="s", parameterization="marginal").design
    f = d.factors[0]
    beta = np.array([0.4, 1.1])
    L = np.array([[0.7, 0.0], [0.3, 0.5]])
    S = 40_000
    u = draw_group_effects(
        sufficient_stats(d),
        np.tile(beta, (S, 1)),
        np.tile(L, (S, 1, 1)),
        None,
        np.random.default_rng(2),
    )
    T_inv = np.linalg.inv(L @ L.T)
    for j in range(f.n_groups):
        rows = f.codes == j
        Z, Rinv = f.Z[rows], np.diag(d.se[rows] ** -2.0)
        cov = np.linalg.inv(T_inv + Z.T @ Rinv @ Z)
        mean = cov @ Z.T @ Rinv @ (d.y[rows] - d.X[rows] @ beta)
        # Monte Carlo SE of a mean is sd / 200 here; 5 of them bound the test
        np.testing.assert_allclose(u[:, j].mean(axis=0), mean, atol=5 * np.sqrt(cov.max()) / 200)
        np.testing.assert_allclose(np.cov(u[:, j].T), cov, atol=0.03 * cov.max())


def test_marginal_refused_where_it_does_not_exist(level2_data):
    df = level2_data.assign(k=lambda d: (d["y"] > 0).astype(int), h=np.arange(len(level2_data)) % 6)
    with pytest.raises(hb.SpecError, match="bernoulli family has no closed-form.*'auto'"):
        hb.Model("k ~ x + (1 | group)", df, family="bernoulli", parameterization="marginal")
    with pytest.raises(hb.SpecError, match=r"only with one grouping factor.*2 \(group, h\)"):
        hb.Model(
            "y ~ x + (1 | group) + (1 | h)", df, sigma="~ (1 | group)", parameterization="marginal"
        )


def test_auto_is_marginal_for_one_gaussian_factor(eight):
    model = hb.Model("y ~ 1 + (1 | school)", eight, se="sigma")
    assert model.parameterization == "auto"
    assert model.plan.describe() == "auto: school marginal"
    assert "auto: school marginal" in repr(model)


def test_auto_reliability_matches_the_formula():
    """Gaussian, known se 1, intercept only: I_j = n_j and tau^2 by moments of group means."""
    rng = np.random.default_rng(0)
    sizes = np.array([2, 4, 8, 16, 32, 64] * 5)
    g = np.repeat(np.arange(sizes.size), sizes)
    effects = rng.normal(0, 0.5, sizes.size)
    df = pd.DataFrame({"y": effects[g] + rng.normal(size=g.size), "g": g.astype(str), "s": 1.0})
    d = hb.Model("y ~ 1 + (1 | g)", df, se="s", parameterization="centered").design
    lam, tau2 = reliability(d, d.factors[0])
    f = d.factors[0]
    n = f.counts
    r = d.y - d.y.mean()
    bhat = np.bincount(f.codes, r) / n
    expected_tau2 = max(0.0, np.mean(bhat**2) - np.mean(1.0 / n))
    np.testing.assert_allclose(tau2, [expected_tau2], rtol=1e-12)
    np.testing.assert_allclose(lam[:, 0], expected_tau2 * n / (1 + expected_tau2 * n))


def test_auto_mixes_forms_by_group_for_glms():
    """Bernoulli groups of 4 to 400 rows: the big ones centered, the small ones not."""
    rng = np.random.default_rng(4)
    sizes = np.repeat([4, 400], 10)
    g = np.repeat(np.arange(20), sizes)
    eta = rng.normal(0, 1.0, 20)[g]
    df = pd.DataFrame({"k": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)})
    df["g"] = [f"g{v:02d}" for v in g]
    model = hb.Model("k ~ 1 + (1 | g)", df, family="bernoulli")
    centered = model.plan.graph["g"]
    assert centered[10:].all() and not centered[:10].any()
    assert model.plan.describe() == "auto: g mixed (10 centered, 10 non-centered)"
    pm_model = model.build()
    assert pm_model.named_vars_to_dims["b_g_centered"] == ("g_centered", "g_term")
    assert pm_model.named_vars_to_dims["z_g"] == ("g_noncentered", "g_term")
    assert pm_model.named_vars_to_dims["b_g"] == ("g", "g_term")
    assert list(pm_model.coords["g_centered"]) == [f"g{v:02d}" for v in range(10, 20)]
    point = pm_model.initial_point()
    assert np.isfinite(pm_model.compile_logp()(point))
    assert np.all(np.isfinite(pm_model.compile_dlogp()(point)))


def test_mixed_graph_puts_each_group_where_it_belongs():
    """u_g assembled from the centered and non-centered pieces, in group order."""
    df = pd.DataFrame({"y": np.arange(10.0), "g": list("aabbccddee")})
    model = hb.Model("y ~ 1 + (1 | g)", df, parameterization="centered")
    mask = {"g": np.array([True, False, True, False, False])}
    from hierbayes.backend.graph import build_model

    pm_model = build_model(model.design, model.priors, parameterization=mask)
    (u_of_values,) = pm_model.replace_rvs_by_values([pm_model["u_g"]])
    u = pm_model.compile_fn(u_of_values, inputs=pm_model.value_vars, on_unused_input="ignore")
    point = pm_model.initial_point()
    point["b_g_centered"] = np.array([[10.0], [30.0]])
    point["z_g"] = np.array([[1.0], [-1.0], [2.0]])
    point["Intercept"] = np.array(3.5)
    sd = np.exp(point["sd_g_log__"]).item()
    got = u(point)[:, 0]
    np.testing.assert_allclose(got, [10.0 - 3.5, sd, 30.0 - 3.5, -sd, 2 * sd])


def test_plan_recorded_for_requested_forms(eight):
    for p in ("centered", "non-centered", "marginal"):
        model = hb.Model("y ~ 1 + (1 | school)", eight, se="sigma", parameterization=p)
        assert model.plan.describe() == p
    assert plan(hb.Model("y ~ 1", eight).design, "auto").describe() == "auto"
