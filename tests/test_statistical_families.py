"""Statistical tier (slow) for the families beyond gaussian/bernoulli/binomial/poisson.

1. Posteriors of models without groups against statsmodels' maximum likelihood on the same
   data: with 2,000 rows and weak priors the posterior median sits within 0.2 posterior SD of
   the MLE and the posterior SD within 15% of the MLE's standard error (20% for ZIP's zi).
2. Hierarchical models on simulated data with known truth: every true value inside the 99%
   posterior interval.
3. SBC of each family: ``y ~ x + (1 | g)``, 8 groups of 10 rows, explicit priors under which
   every simulated data set suits the family, 40 simulations per family (the settings of
   tests/api/test_sbc.py: 1 chain of 300 + 300 draws thinned to L = 50, two at a time).
4. The ordinal package's ``clmm`` fit of R's wine data, reproduced by the cumulative family.
5. ``hb.Model`` builds on ordinary gamma, negative binomial and beta data far from eta = 0,
   and its complete-pooling fit is statsmodels' MLE (the IRLS halves overshooting steps).

Run with ``python -m pytest -m slow``; the figures print with ``-s``.
"""

import zlib

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit
from statsmodels.miscmodels.ordinal_model import OrderedModel
from statsmodels.miscmodels.tmodel import TLinearModel
from statsmodels.othermod.betareg import BetaModel

import hierbayes as hb
from hierbayes.spec.baselines import complete_pooling_fit

from .api.test_sbc import run_and_report
from .conftest import quiet_fit

pytestmark = pytest.mark.slow

N = 2000


def _frame(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    return rng, pd.DataFrame({"x": x}), 0.4 + 0.6 * x


def _reference(family):
    """(data, statsmodels MLE as {name: (estimate, se)}) for one family."""
    # a seed per family that does not change between runs (str hashes do: PYTHONHASHSEED)
    rng, df, eta = _frame(zlib.crc32(family.encode()) % 1000)
    X = sm.add_constant(df[["x"]].to_numpy())
    if family == "negativebinomial":
        df["y"] = rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(eta)))
        r = sm.NegativeBinomial(df["y"], X, loglike_method="nb2").fit(disp=0)
        names = ["Intercept", "x", "1/alpha"]
    elif family == "gamma":
        df["y"] = rng.gamma(3.0, np.exp(eta) / 3.0)
        r = sm.GLM(df["y"], X, family=sm.families.Gamma(sm.families.links.Log())).fit()
        names = ["Intercept", "x"]
    elif family == "beta":
        mu = expit(eta)
        df["y"] = rng.beta(mu * 10.0, (1 - mu) * 10.0)
        r = BetaModel(df["y"], X).fit(disp=0)
        names = ["Intercept", "x", "log phi"]
    elif family == "zero_inflated_poisson":
        df["y"] = np.where(rng.uniform(size=N) < 0.3, 0, rng.poisson(np.exp(eta)))
        r = sm.ZeroInflatedPoisson(df["y"], X, exog_infl=np.ones((N, 1))).fit(disp=0)
        names = ["logit zi", "Intercept", "x"]
    elif family == "cumulative":
        df["y"] = np.digitize(eta + rng.logistic(size=N), [-0.5, 0.6, 1.8])
        r = OrderedModel(df["y"], df[["x"]], distr="logit").fit(method="bfgs", disp=0)
        names = ["x", "cut0", "logdiff1", "logdiff2"]
    elif family == "student_t":
        df["y"] = eta + 0.5 * rng.standard_t(4.0, size=N)
        r = TLinearModel(df["y"].to_numpy(), X).fit(disp=0)
        names = ["Intercept", "x", "nu", "sigma"]
    return df, dict(zip(names, zip(r.params, r.bse, strict=True), strict=True))


def _ours(post, name):
    """The posterior draws of the quantity statsmodels reports under ``name``."""
    flat = {k: post[k].values.reshape(-1, *post[k].shape[2:]) for k in post.data_vars}
    if name == "1/alpha":
        return 1.0 / flat["alpha"]
    if name == "log phi":
        return np.log(flat["phi"])
    if name == "logit zi":
        return np.log(flat["zi"] / (1 - flat["zi"]))
    if name.startswith("cut") or name.startswith("logdiff"):
        c = flat["cutpoints"]
        return c[:, 0] if name == "cut0" else np.log(np.diff(c, axis=1)[:, int(name[-1]) - 1])
    return flat[name]


@pytest.mark.parametrize(
    "family",
    ["negativebinomial", "gamma", "beta", "zero_inflated_poisson", "cumulative", "student_t"],
)
def test_posterior_matches_statsmodels_mle(family):
    df, ref = _reference(family)
    fit = quiet_fit(hb.Model("y ~ x", df, family=family), draws=1000, tune=500, random_seed=3)
    for name, (estimate, se) in ref.items():
        draws = _ours(fit.idata.posterior, name)
        print(
            f"{family} {name}: statsmodels {estimate:.4f} ({se:.4f}), "
            f"hierbayes median {np.median(draws):.4f} (sd {draws.std():.4f})"
        )
        # the median: nu's posterior is skewed, its mean 0.23 SD above the MLE
        assert abs(np.median(draws) - estimate) < 0.2 * draws.std(), name
        # the zero-inflation weight is weakly identified (a zero is structural or Poisson):
        # its asymptotic se understates the posterior SD (0.080 against 0.069 here)
        rtol = 0.2 if name == "logit zi" else 0.15
        np.testing.assert_allclose(draws.std(), se, rtol=rtol, err_msg=name)


TRUTH = {"Intercept": 0.3, "x": 0.5, "sd_g": 0.5}
AUX_TRUTH = {
    "student_t": {"sigma": 0.5, "nu": 4.0},
    "lognormal": {"sigma": 0.4},
    "gamma": {"alpha": 3.0},
    "beta": {"phi": 8.0},
    "negativebinomial": {"alpha": 2.0},
    "zero_inflated_poisson": {"zi": 0.3},
    "zero_inflated_negativebinomial": {"alpha": 2.0, "zi": 0.3},
    "cumulative": {"cutpoints": np.array([-0.5, 0.5, 1.5]) - TRUTH["Intercept"]},
}


def simulate(family, seed, J=30, n=30):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), n)
    x = rng.normal(size=g.size)
    u = rng.normal(0, TRUTH["sd_g"], J)
    eta = TRUTH["Intercept"] + TRUTH["x"] * x + u[g]
    a = AUX_TRUTH[family]
    mu = np.exp(eta)
    y = {
        "student_t": lambda: eta + a["sigma"] * rng.standard_t(a["nu"], size=g.size),
        "lognormal": lambda: np.exp(eta + a["sigma"] * rng.normal(size=g.size)),
        "gamma": lambda: rng.gamma(a["alpha"], mu / a["alpha"]),
        "beta": lambda: rng.beta(expit(eta) * a["phi"], (1 - expit(eta)) * a["phi"]),
        "negativebinomial": lambda: rng.poisson(rng.gamma(a["alpha"], mu / a["alpha"])),
        "zero_inflated_poisson": lambda: np.where(
            rng.uniform(size=g.size) < a["zi"], 0, rng.poisson(mu)
        ),
        "zero_inflated_negativebinomial": lambda: np.where(
            rng.uniform(size=g.size) < a["zi"],
            0,
            rng.poisson(rng.gamma(a["alpha"], mu / a["alpha"])),
        ),
        "cumulative": lambda: np.digitize(eta + rng.logistic(size=g.size), [-0.5, 0.5, 1.5]),
    }[family]()
    return pd.DataFrame({"y": y, "x": x, "g": g}), u


@pytest.mark.parametrize("family", sorted(AUX_TRUTH))
def test_hierarchical_recovery_of_known_truth(family):
    df, _ = simulate(family, seed=12)
    fit = quiet_fit(
        hb.Model("y ~ x + (1 | g)", df, family=family), draws=500, tune=500, random_seed=2
    )
    post = fit.idata.posterior
    truth = {**TRUTH, **AUX_TRUTH[family]}
    if family == "cumulative":
        del truth["Intercept"]  # the cutpoints take its place
    for name, value in truth.items():
        draws = post[name].values.reshape(-1, *post[name].shape[2:])
        low, high = np.quantile(draws, [0.005, 0.995], axis=0)
        print(f"{family} {name}: truth {value}, posterior mean {draws.mean(axis=0).round(3)}")
        assert np.all((low <= value) & (value <= high)), (name, low, high)
    assert fit.diagnostics.divergences <= 2


# ---------------------------------------------------------------------------------------------
# 3. SBC. The design is fixed (x and g); the response is a placeholder the simulations replace.
# Priors are explicit (SBC keeps the priors the model resolved, and the defaults are scaled by
# the placeholder) and tight enough that every simulated data set suits the family: no beta
# response rounds to 0 or 1, every ordinal level gets rows (sbc refuses the run otherwise).
# On 2 idle cores a family's 40 simulations take 50-90 s (most of it compiling each fit).

P = hb.priors
SBC_N = 40
SBC_SEED = 3
SBC_COMMON = {"Intercept": P.Normal(0, 1), "x": P.Normal(0, 0.5), "sd": P.HalfNormal(0.5)}
SBC_COUNTS = {**SBC_COMMON, "Intercept": P.Normal(1, 0.5)}  # a mean count of about e
SBC_PRIORS = {
    "student_t": {**SBC_COMMON, "sigma": P.HalfNormal(1), "nu": P.Gamma(5, 0.5)},
    "lognormal": {**SBC_COMMON, "sigma": P.HalfNormal(0.5)},
    "gamma": {**SBC_COMMON, "alpha": P.Gamma(5, 1)},
    "beta": {
        "Intercept": P.Normal(0, 0.5),
        "x": P.Normal(0, 0.4),
        "sd": P.HalfNormal(0.4),
        "phi": P.Gamma(16, 1),
    },
    "negativebinomial": {**SBC_COUNTS, "alpha": P.Gamma(5, 1)},
    "zero_inflated_poisson": {**SBC_COUNTS, "zi": P.Beta(2, 4)},
    "zero_inflated_negativebinomial": {**SBC_COUNTS, "alpha": P.Gamma(5, 1), "zi": P.Beta(2, 4)},
    # cutpoints well apart (on the predictors' mean): every level gets rows in every simulation
    "cumulative": {
        "x": P.Normal(0, 0.5),
        "sd": P.HalfNormal(0.5),
        "cutpoints": P.OrderedNormal((-1.5, 0.0, 1.5), 0.3),
    },
}


def sbc_frame(family, J=8, n=10):
    rng = np.random.default_rng(2026)
    placeholder = {
        "student_t": np.linspace(-1, 1, J * n),
        "lognormal": np.linspace(0.5, 2, J * n),
        "gamma": np.linspace(0.5, 2, J * n),
        "beta": np.linspace(0.1, 0.9, J * n),
    }.get(family, np.tile([0, 1, 2, 3], J * n // 4))  # counts, or 4 ordinal levels
    return pd.DataFrame(
        {
            "y": placeholder,
            "x": np.round(rng.normal(size=J * n), 2),
            "g": np.repeat([f"g{j}" for j in range(J)], n),
        }
    )


@pytest.mark.parametrize("family", sorted(SBC_PRIORS))
def test_sbc_of_each_family_is_calibrated(family):
    model = hb.Model("y ~ x + (1 | g)", sbc_frame(family), family=family, priors=SBC_PRIORS[family])
    result, u = run_and_report(family, model, SBC_N, seed=SBC_SEED)
    assert result.n_simulations == SBC_N
    assert u.passed, u


# ---------------------------------------------------------------------------------------------
# 4. R's wine data (ordinal::wine): clmm(rating ~ temp + contact + (1 | judge)), logit link,
# Laplace approximation (data/README.md), against the posterior under the default priors. The
# posterior is not the ML estimate: with 72 rows they may differ by up to about 1 posterior SD;
# here they differ by less than 0.2 SD, and the test allows 0.5. The judge SD's posterior is
# skewed: its median is compared (clmm prints the SD as 1.131, clmm2 as 1.13113).

CLMM = {
    "temp[warm]": (3.0630, 0.5954),
    "contact[yes]": (1.8349, 0.5125),
    "sd_judge": (1.131, None),
    "cutpoints": (np.array([-1.6237, 1.5134, 4.2285, 6.0888]), None),
}


def test_wine_cumulative_model_matches_clmm():
    model = hb.Model(
        "rating ~ temp + contact + (1 | judge)", hb.datasets.load("wine"), family="cumulative"
    )
    fit = quiet_fit(model, draws=1000, tune=1000, random_seed=1)
    post = fit.idata.posterior
    for name, (estimate, se) in CLMM.items():
        draws = post[name].values.reshape(-1, *post[name].shape[2:])
        median, sd = np.median(draws, axis=0), draws.std(axis=0)
        print(f"wine {name}: clmm {estimate} ({se}), median {median.round(4)} (sd {sd.round(4)})")
        assert np.all(np.abs(median - estimate) < 0.5 * sd), name
        if se is not None:
            np.testing.assert_allclose(sd, se, rtol=0.2, err_msg=name)
    assert fit.diagnostics.divergences == 0


# ---------------------------------------------------------------------------------------------
# 5. Data far from eta = 0. Before the IRLS halved overshooting steps, its first full Fisher step
# from eta = 0 overflowed exp(eta) on counts and means near e^3, and hb.Model raised "SVD did
# not converge" (glm_frame's seeds 0-39: gamma 29 of 40, negative binomial 21 of 40, beta 10 of
# the 15 data sets inside (0, 1)).


def glm_frame(family, seed):
    """8 groups of 10 rows, eta = 3 + x + u_g (SD of u 0.8): data statsmodels fits at once."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=80)
    g = np.repeat(np.arange(8), 10)
    eta = 3.0 + x + rng.normal(0, 0.8, 8)[g]
    if family == "gamma":  # shape 6, mean exp(eta - 1.5)
        y = rng.gamma(6.0, np.exp(eta - 1.5) / 6.0)
        ref = sm.GLM(y, sm.add_constant(x), family=sm.families.Gamma(sm.families.links.Log()))
    elif family == "negativebinomial":  # alpha 2.5
        y = rng.poisson(rng.gamma(2.5, np.exp(eta) / 2.5))
        ref = sm.NegativeBinomial(y, sm.add_constant(x))
    else:  # beta, phi 12
        y = rng.beta(expit(eta) * 12, (1 - expit(eta)) * 12)
        ref = BetaModel(y, sm.add_constant(x))
    return pd.DataFrame({"y": y, "x": x, "g": g}), ref


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("family, seed", [("gamma", 0), ("negativebinomial", 0), ("beta", 1)])
def test_model_builds_on_data_statsmodels_fits(family, seed):
    df, ref = glm_frame(family, seed)
    r = ref.fit(disp=0) if family != "gamma" else ref.fit()
    assert np.all(np.isfinite(r.params)) and abs(r.params[1] - 1.0) < 0.3  # the truth: 1
    model = hb.Model("y ~ x + (1 | g)", df, family=family)
    np.testing.assert_allclose(complete_pooling_fit(model.design)[0], r.params[:2], rtol=1e-4)
