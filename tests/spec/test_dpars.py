"""Distributional parameters (sigma="~ ...", phi=, alpha=): designs, priors, names and the
graphs they make, without sampling."""

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.backend.marginal import marginal_loglik, sigma_by_group, sufficient_stats

FAST = "FAST_COMPILE"


@pytest.fixture(scope="module")
def hetero() -> pd.DataFrame:
    """8 groups of 5 to 9 rows; each group has its own residual SD; w is a group-level
    column, x varies within groups."""
    rng = np.random.default_rng(21)
    sizes = rng.integers(5, 10, size=8)
    g = np.repeat(np.arange(8), sizes)
    x = rng.normal(size=g.size)
    w = rng.normal(size=8)[g]
    log_sigma = -0.5 + 0.3 * w + rng.normal(0, 0.4, 8)[g]
    y = 1.0 + 0.5 * x + rng.normal(0, 0.6, 8)[g] + np.exp(log_sigma) * rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "w": w, "g": [f"s{k}" for k in g]})


def test_names_priors_and_repr(hetero):
    m = hb.Model("y ~ x + (1 | g)", hetero, sigma="~ x + (1 | g)")
    d = m.design
    assert d.aux == () and not d.estimates_sigma  # sigma is no single number now
    (dp,) = d.dpars
    assert dp.fixed_names == ("sigma_Intercept", "sigma_x")
    assert [f.name for f in dp.factors] == ["sigma_g"]
    prior = m.priors["sigma_Intercept"]  # centred on log sd(y), 3 significant figures
    assert prior.sigma == 2.5 and prior.mu == pytest.approx(np.log(d.scale), rel=5e-3)
    assert m.priors["sigma_x"].sigma == pytest.approx(2.5 / hetero["x"].std(), rel=5e-3)
    assert m.priors["sd_sigma_g"] == hb.priors.HalfStudentT(3, 1)
    assert "sigma" not in m.priors
    assert "sigma ~ x + (1 | g)" in repr(m)
    names = set(m.build().named_vars)
    assert {"sigma_Intercept", "sigma_x", "sd_sigma_g", "u_sigma_g", "b_sigma_g"} <= names
    # a prior for the regression's own keys, and the general "sd" key reaches its SDs
    m2 = hb.Model(
        "y ~ x + (1 | g)",
        hetero,
        sigma="~ x + (1 | g)",
        priors={"sigma_x": "normal:0,0.5", "sd": "halfnormal:1"},
    )
    assert m2.priors["sigma_x"] == hb.priors.Normal(0, 0.5)
    assert m2.priors["sd_sigma_g"] == hb.priors.HalfNormal(1)


@pytest.mark.parametrize(
    ("family", "kwargs", "message"),
    [
        ("gaussian", {"phi": "~ x"}, "the gaussian family has no parameter 'phi'.*'sigma'"),
        ("poisson", {"alpha": "~ x"}, "parameters it can model with a formula: none"),
        ("gaussian", {"sigma": "x + (1 | g)"}, "one-sided formula"),
        ("gaussian", {"sigma": "~ nothere"}, "column 'nothere' is used by the model"),
        ("gaussian", {"sigma": "~ offset(x)"}, "offset\\(\\) belongs to the model's main"),
    ],
)
def test_refused_before_anything_compiles(hetero, family, kwargs, message):
    df = hetero.assign(c=np.arange(len(hetero)) % 4)
    response = "c" if family == "poisson" else "y"
    with pytest.raises((hb.SpecError, hb.DataError), match=message):
        hb.Model(f"{response} ~ x + (1 | g)", df, family=family, **kwargs)


def test_sigma_formula_with_known_se_is_refused(eight):
    with pytest.raises(hb.SpecError, match="standard errors are known"):
        hb.Model("y ~ 1 + (1 | school)", eight, se="sigma", sigma="~ 1")


def test_sigma_column_name_clash_is_refused(hetero):
    df = hetero.assign(sigma_x=np.random.default_rng(0).normal(size=len(hetero)))
    with pytest.raises(hb.SpecError, match="sigma_x"):
        hb.Model("y ~ x + sigma_x + (1 | g)", df, sigma="~ x")


def test_auto_marginal_only_when_sigma_varies_by_group_alone(hetero):
    by_group = hb.Model("y ~ x + (1 | g)", hetero, sigma="~ w + (1 | g)")
    assert by_group.plan.describe() == "auto: g marginal"
    assert sigma_by_group(by_group.design) is not None
    within = hb.Model("y ~ x + (1 | g)", hetero, sigma="~ x + (1 | g)")
    assert "marginal" not in within.plan.describe()
    with pytest.raises(hb.SpecError, match="sigma vary within the groups of 'g'"):
        hb.Model("y ~ x + (1 | g)", hetero, sigma="~ x", parameterization="marginal")


def dense_loglik(design, beta, T, sigma_j):
    """log N(y_j; X_j beta, Z_j T Z_j' + sigma_j^2 I) summed over groups, dense matrices."""
    f = design.factors[0]
    total = 0.0
    for j in range(f.n_groups):
        rows = f.codes == j
        cov = f.Z[rows] @ T @ f.Z[rows].T + sigma_j[j] ** 2 * np.eye(rows.sum())
        total += stats.multivariate_normal(design.X[rows] @ beta, cov).logpdf(design.y[rows])
    return total


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + (x | g)"])
def test_marginal_with_a_sigma_per_group_equals_the_dense_likelihood(hetero, formula):
    d = hb.Model(formula, hetero, sigma="~ w + (1 | g)", parameterization="marginal").design
    q = d.factors[0].Z.shape[1]
    L = np.array([[0.7, 0.0], [0.3, 0.5]])[:q, :q]
    beta = np.array([0.8, 0.4])
    sigma_j = np.random.default_rng(3).uniform(0.3, 1.5, d.factors[0].n_groups)
    value = marginal_loglik(
        sufficient_stats(d), pt.as_tensor(beta), pt.as_tensor(L), pt.as_tensor(sigma_j)
    ).eval()
    np.testing.assert_allclose(value, dense_loglik(d, beta, L @ L.T, sigma_j), rtol=1e-12)


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
def test_marginal_graph_equals_non_centered_integrated(hetero):
    """At the same sigma regression, the marginal graph's density is the dense likelihood
    of the sigma_j its own sigma_Intercept, sigma_w and u_sigma_g make."""
    m = hb.Model("y ~ x + (1 | g)", hetero, sigma="~ w + (1 | g)", parameterization="marginal")
    pm_model = m.build()
    assert {v.name for v in pm_model.free_RVs} == {
        "Intercept",
        "x",
        "sd_g",
        "sigma_Intercept",
        "sigma_w",
        "sd_sigma_g",
        "z_sigma_g",
    }
    point = pm_model.initial_point()
    rng = np.random.default_rng(5)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}
    logp_terms = pm_model.compile_fn(pm_model.logp(sum=False), mode=FAST)(point)
    names = [v.name for v in pm_model.free_RVs] + ["marginal_y"]
    loglik = dict(zip(names, logp_terms, strict=False))["marginal_y"]
    d = m.design
    f = d.factors[0]
    first = np.unique(f.codes, return_index=True)[1]
    sd_sigma = np.exp(point["sd_sigma_g_log__"])
    log_sigma = (
        point["sigma_Intercept"]
        + point["sigma_w"] * hetero["w"].to_numpy()[first]
        + sd_sigma * point["z_sigma_g"][:, 0]
    )
    T = np.exp(point["sd_g_log__"]) ** 2 * np.eye(1)
    expected = dense_loglik(d, np.array([point["Intercept"], point["x"]]), T, np.exp(log_sigma))
    np.testing.assert_allclose(loglik, expected, rtol=1e-10)


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize(
    ("family", "param"),
    [("student_t", "sigma"), ("lognormal", "sigma"), ("beta", "phi"), ("gamma", "alpha")],
)
def test_other_families_take_their_parameter_formula(hetero, family, param):
    df = hetero.copy()
    rng = np.random.default_rng(2)
    if family == "beta":
        df["y"] = rng.beta(2.0, 3.0, len(df))
    elif family in ("lognormal", "gamma"):
        df["y"] = np.exp(df["y"] / 3)
    m = hb.Model("y ~ x + (1 | g)", df, family=family, **{param: "~ w"})
    assert param not in m.design.aux
    pm_model = m.build()
    point = pm_model.initial_point()
    assert np.isfinite(pm_model.compile_logp(mode=FAST)(point))
    assert np.all(np.isfinite(pm_model.compile_dlogp(mode=FAST)(point)))
    assert f"{param}_w" in pm_model.named_vars
