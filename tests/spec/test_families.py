"""GLM families: validation, graphs, baselines and recovery of known parameters."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

import hierbayes as hb

from ..conftest import quiet_fit

J, N_PER = 40, 30
TRUTH = {"Intercept": -0.3, "x": 0.8, "sd_g": 0.6}


def simulate(family: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), N_PER)
    x = rng.normal(size=g.size)
    eta = TRUTH["Intercept"] + TRUTH["x"] * x + rng.normal(0, TRUTH["sd_g"], J)[g]
    df = pd.DataFrame({"x": x, "g": g})
    if family == "bernoulli":
        df["y"] = rng.binomial(1, expit(eta))
    elif family == "binomial":
        df["size"] = rng.integers(1, 12, size=g.size)
        df["y"] = rng.binomial(df["size"], expit(eta))
    else:
        df["y"] = rng.poisson(np.exp(eta))
    return df


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_family_recovers_known_parameters(family):
    df = simulate(family, seed=21)
    trials = "size" if family == "binomial" else None
    fit = quiet_fit(
        hb.Model("y ~ x + (1 | g)", df, family=family, trials=trials),
        draws=500,
        tune=500,
        random_seed=1,
    )
    post = fit.idata.posterior
    for name, truth in TRUTH.items():
        draws = post[name].values.ravel()
        # the truth lies within 3 posterior SDs of the posterior mean
        assert abs(draws.mean() - truth) < 3 * draws.std(), (name, draws.mean(), draws.std())
    assert "sigma" not in post
    ll = fit.idata.log_likelihood["y"]
    assert ll.shape[-1] == len(df) and np.isfinite(ll.values).all()
    table = fit.pooling().table
    assert ((table["reliability"] > 0) & (table["reliability"] < 1)).all()
    # group-level no pooling is each group's own GLM: compare one group with a direct fit
    rows = df["g"] == 0
    if family == "poisson":
        gamma = _complete_pooling_poisson(df)
        offset = gamma[1] * df.loc[rows, "x"].to_numpy()
        own = np.log(df.loc[rows, "y"].sum() / np.exp(offset).sum())
        np.testing.assert_allclose(table["no_pooling"].iloc[0], own, rtol=1e-6)


def _complete_pooling_poisson(df):
    """Poisson regression of y on [1, x] by Newton's method, written out."""
    X = np.column_stack([np.ones(len(df)), df["x"]])
    y = df["y"].to_numpy(float)
    beta = np.zeros(2)
    for _ in range(50):
        mu = np.exp(X @ beta)
        beta = beta + np.linalg.solve(X.T @ (X * mu[:, None]), X.T @ (y - mu))
    return beta


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
def test_glm_logp_is_the_textbook_density():
    df = simulate("binomial", seed=3).iloc[: 3 * N_PER]
    with pytest.warns(hb.IdentifiabilityWarning, match="only 3 groups"):
        m = hb.Model(
            "y ~ x + (1 | g)", df, family="binomial", trials="size", parameterization="centered"
        )
    g = m.build()
    point = g.initial_point()
    point.update({"Intercept": 0.2, "x": -0.5, "b_g": np.array([[0.1], [0.4], [-0.3]])})
    logp = g.compile_fn(
        g.logp(vars=[g["y"]], sum=True),
        inputs=g.value_vars,
        on_unused_input="ignore",
        point_fn=True,
    )
    codes = df["g"].to_numpy()
    eta = np.array([0.1, 0.4, -0.3])[codes] - 0.5 * df["x"].to_numpy()
    expected = stats.binom.logpmf(df["y"], df["size"], expit(eta)).sum()
    np.testing.assert_allclose(logp(point), expected, rtol=1e-10)


@pytest.mark.parametrize(
    "family, change, message",
    [
        ("bernoulli", {"y": 2}, r"not 0 or 1 in 1 row \(5\)"),
        ("poisson", {"y": -1}, r"not non-negative integer counts in 1 row \(5\)"),
        ("poisson", {"y": 1.5}, "not non-negative integer counts"),
        ("binomial", {"y": 99}, r"'y' exceeds its number of trials in 1 row \(5\)"),
        ("binomial", {"size": 0}, r"trials column 'size' has values that are not positive"),
    ],
)
def test_bad_glm_responses(family, change, message):
    df = simulate(family, seed=1)
    for column, value in change.items():
        df[column] = df[column].astype(float)
        df.loc[5, column] = value
    trials = "size" if family == "binomial" else None
    with pytest.raises(hb.DataError, match=message):
        hb.Model("y ~ x + (1 | g)", df, family=family, trials=trials)


def test_trials_and_se_belong_to_their_families():
    df = simulate("binomial", seed=1)
    with pytest.raises(hb.SpecError, match="binomial family needs trials="):
        hb.Model("y ~ x + (1 | g)", df, family="binomial")
    with pytest.raises(hb.SpecError, match="trials= is for the binomial family, not poisson"):
        hb.Model("y ~ x + (1 | g)", df, family="poisson", trials="size")
    with pytest.raises(hb.SpecError, match="se= .* is for the gaussian family"):
        hb.Model("y ~ x + (1 | g)", df, family="poisson", se="size")


def test_glm_default_priors_are_on_the_link_scale():
    df = simulate("poisson", seed=2)
    m = hb.Model("y ~ x + (1 | g)", df, family="poisson")
    np.testing.assert_allclose(m.priors["Intercept"].mu, np.log(df["y"].mean()), rtol=5e-3)
    assert m.priors["Intercept"].sigma == 2.5
    assert m.priors["sd_g"] == hb.priors.HalfStudentT(3, 1)
    assert "sigma" not in m.priors
