"""Each family's complete-pooling fit against statsmodels' maximum likelihood, no sampling.

The complete-pooling fit is the MLE of hierbayes' own log-density
(:meth:`Family.log_density`, which equals PyMC's logp: test_family_densities), so agreement
with statsmodels' MLE on the same data checks the likelihood each family defines. Sampled
posteriors against the same references are in the slow tier (tests/test_statistical_families).
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit
from statsmodels.miscmodels.ordinal_model import OrderedModel
from statsmodels.othermod.betareg import BetaModel

import hierbayes as hb
from hierbayes.spec.baselines import complete_pooling_fit

N = 3000


def frame(seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=N), "z": rng.uniform(-1, 1, size=N)})
    return df, 0.4 + 0.6 * df["x"].to_numpy() - 0.5 * df["z"].to_numpy()


def ours(df, family, formula="y ~ x + z", **kwargs):
    return complete_pooling_fit(hb.Model(formula, df, family=family, **kwargs).design)


def X(df):
    return sm.add_constant(df[["x", "z"]].to_numpy())


def test_negativebinomial_matches_statsmodels_nb2():
    df, eta = frame()
    rng = np.random.default_rng(1)
    df["y"] = rng.negative_binomial(1.5, 1.5 / (1.5 + np.exp(eta)))
    ref = sm.NegativeBinomial(df["y"], X(df), loglike_method="nb2").fit(disp=0)
    coef, aux = ours(df, "negativebinomial")
    np.testing.assert_allclose(coef, np.asarray(ref.params)[:3], rtol=1e-4, atol=1e-5)
    # statsmodels' NB2 alpha is the inverse of PyMC's (variance mu + alpha mu^2)
    np.testing.assert_allclose(1.0 / aux["alpha"], np.asarray(ref.params)[3], rtol=1e-4)


def test_gamma_matches_statsmodels_glm():
    df, eta = frame()
    df["y"] = np.random.default_rng(2).gamma(4.0, np.exp(eta) / 4.0)
    ref = sm.GLM(df["y"], X(df), family=sm.families.Gamma(sm.families.links.Log())).fit()
    coef, aux = ours(df, "gamma")
    np.testing.assert_allclose(coef, ref.params, rtol=1e-4, atol=1e-5)
    # statsmodels' scale is the Pearson moment estimate of 1 / shape; ours is the MLE
    np.testing.assert_allclose(aux["alpha"], 1.0 / ref.scale, rtol=0.05)


def test_beta_matches_statsmodels_betamodel():
    df, eta = frame()
    mu = expit(eta)
    df["y"] = np.random.default_rng(3).beta(mu * 12.0, (1 - mu) * 12.0)
    ref = BetaModel(df["y"], X(df)).fit(disp=0)
    coef, aux = ours(df, "beta")
    np.testing.assert_allclose(coef, np.asarray(ref.params)[:3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.log(aux["phi"]), np.asarray(ref.params)[3], rtol=1e-4)


def test_zero_inflated_poisson_matches_statsmodels():
    df, eta = frame()
    rng = np.random.default_rng(4)
    df["y"] = np.where(rng.uniform(size=N) < 0.25, 0, rng.poisson(np.exp(eta)))
    ref = sm.ZeroInflatedPoisson(df["y"], X(df), exog_infl=np.ones((N, 1))).fit(disp=0)
    coef, aux = ours(df, "zero_inflated_poisson")
    np.testing.assert_allclose(coef, np.asarray(ref.params)[1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(aux["zi"], expit(np.asarray(ref.params)[0]), rtol=1e-4)


def test_zero_inflated_negativebinomial_matches_statsmodels():
    df, eta = frame()
    rng = np.random.default_rng(5)
    counts = rng.poisson(rng.gamma(2.0, np.exp(eta) / 2.0))
    df["y"] = np.where(rng.uniform(size=N) < 0.25, 0, counts)
    ref = sm.ZeroInflatedNegativeBinomialP(df["y"], X(df), exog_infl=np.ones((N, 1)), p=2).fit(
        method="bfgs", maxiter=500, disp=0
    )
    coef, aux = ours(df, "zero_inflated_negativebinomial")
    np.testing.assert_allclose(coef, np.asarray(ref.params)[1:4], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(aux["zi"], expit(np.asarray(ref.params)[0]), rtol=1e-3)
    np.testing.assert_allclose(1.0 / aux["alpha"], np.asarray(ref.params)[4], rtol=1e-3)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_cumulative_matches_statsmodels_orderedmodel(link):
    df, eta = frame()
    rng = np.random.default_rng(6)
    noise = rng.logistic(size=N) if link == "logit" else rng.normal(size=N)
    df["y"] = np.digitize(eta + noise, [-0.5, 0.6, 1.8]) + 1  # levels 1..4
    ref = OrderedModel(df["y"], df[["x", "z"]], distr=link).fit(method="bfgs", disp=0)
    coef, aux = ours(df, "cumulative", link=link)
    np.testing.assert_allclose(coef, np.asarray(ref.params)[:2], rtol=1e-4, atol=1e-5)
    thresholds = ref.model.transform_threshold_params(ref.params)[1:-1]
    np.testing.assert_allclose(aux["cutpoints"], thresholds, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("link", "sm_link"),
    [("probit", sm.families.links.Probit()), ("cloglog", sm.families.links.CLogLog())],
)
@pytest.mark.parametrize("family", ["bernoulli", "binomial"])
def test_binary_links_match_statsmodels_glm(family, link, sm_link):
    df, eta = frame()
    rng = np.random.default_rng(7)
    p = hb.spec.links.get(link).inverse(0.5 * eta - 0.3)
    df["n"] = rng.integers(1, 6, size=N) if family == "binomial" else 1
    df["y"] = rng.binomial(df["n"], p)
    endog = np.column_stack([df["y"], df["n"] - df["y"]]) if family == "binomial" else df["y"]
    ref = sm.GLM(endog, X(df), family=sm.families.Binomial(sm_link)).fit(tol=1e-12)
    trials = {"trials": "n"} if family == "binomial" else {}
    coef, _ = ours(df, family, link=link, **trials)
    np.testing.assert_allclose(coef, ref.params, rtol=1e-6, atol=1e-7)


def test_lognormal_is_least_squares_on_log_y():
    df, eta = frame()
    df["y"] = np.exp(eta + 0.5 * np.random.default_rng(8).normal(size=N))
    ref = sm.OLS(np.log(df["y"]), X(df)).fit()
    coef, aux = ours(df, "lognormal")
    np.testing.assert_allclose(coef, ref.params, rtol=1e-10)
    np.testing.assert_allclose(aux["sigma"], np.sqrt(ref.scale), rtol=1e-10)


def test_gaussian_log_link_matches_statsmodels_glm():
    df, eta = frame()
    df["y"] = np.exp(0.5 * eta) + 0.3 * np.random.default_rng(9).normal(size=N)
    ref = sm.GLM(df["y"], X(df), family=sm.families.Gaussian(sm.families.links.Log())).fit(
        tol=1e-12
    )
    coef, _ = ours(df, "gaussian", link="log")
    np.testing.assert_allclose(coef, ref.params, rtol=1e-6, atol=1e-7)
