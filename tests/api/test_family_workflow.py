"""Workflow tier of the response families beyond gaussian/bernoulli/binomial/poisson.

Each model is fitted once (2 chains x 200 draws after 200 tuning steps) to a small simulated
data set of known truth (10 groups of 15 rows, ``y ~ x + (1 | g)``), and every test reuses
the fits: the pooling report, predictions on the outcome's own scale, the pointwise
log-likelihood against scipy's densities, LOO comparison, save/load, the summary, and a TOML
spec through the command line. Prior predictive draws and SBC run for the negative binomial
and cumulative families. One case takes a non-default link (bernoulli, cloglog) and one
observation weights (lognormal).

The references are external: scipy's densities and optimisers recompute the log-likelihood
and each group's no-pooling estimate from the posterior draws and the data, not from
hierbayes' own code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure
from scipy import optimize, stats
from scipy.special import expit, logsumexp, ndtr

import hierbayes as hb
from hierbayes.api.cli import main
from hierbayes.posterior import storage
from hierbayes.spec.baselines import complete_pooling_fit
from hierbayes.spec.specfile import read_spec

from ..conftest import quiet_fit
from .test_cli import WRITTEN

J, PER = 10, 15
SEED = 20261206
#: Levels of the simulated ordinal response (integers 1..4, so that level values and the
#: codes 0..3 used inside the model differ).
LEVELS = (1, 2, 3, 4)
#: The truth of each simulated data set: y ~ x + (1 | g) with these auxiliary parameters.
TRUTH = {
    "student_t": {"Intercept": 1.0, "sigma": 0.5, "nu": 4.0},
    "lognormal": {"Intercept": 0.5, "sigma": 0.4},
    "gamma": {"Intercept": 0.5, "alpha": 3.0},
    "beta": {"Intercept": -0.3, "phi": 8.0},
    "counts": {"Intercept": 0.8, "alpha": 3.0, "zi": 0.2},  # zero-inflated NB2
    "ordinal": {"cutpoints": np.array([-1.0, 0.0, 1.2])},  # logistic latent variable
    "binary": {"Intercept": -0.3},  # cloglog link
}
SLOPE, SD_G = 0.4, 0.5


def simulate(kind: str, seed: int = 1) -> pd.DataFrame:
    """One simulated data set: columns y, x, g (labels s0..s9) and frequency weights w."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), PER)
    n = g.size
    x = rng.normal(size=n)
    truth = TRUTH[kind]
    eta = truth.get("Intercept", 0.0) + SLOPE * x + rng.normal(0.0, SD_G, size=J)[g]
    if kind == "student_t":
        y = eta + truth["sigma"] * rng.standard_t(truth["nu"], size=n)
    elif kind == "lognormal":
        y = np.exp(eta + truth["sigma"] * rng.normal(size=n))
    elif kind == "gamma":
        y = rng.gamma(truth["alpha"], np.exp(eta) / truth["alpha"])
    elif kind == "beta":
        mu = expit(eta)
        y = rng.beta(mu * truth["phi"], (1.0 - mu) * truth["phi"])
    elif kind == "counts":
        a = truth["alpha"]
        counts = rng.poisson(rng.gamma(a, np.exp(eta) / a))
        y = np.where(rng.uniform(size=n) < truth["zi"], 0, counts)
    elif kind == "ordinal":
        y = LEVELS[0] + np.digitize(eta + rng.logistic(size=n), truth["cutpoints"])
    else:  # binary, cloglog
        y = rng.binomial(1, -np.expm1(-np.exp(eta)))
    return pd.DataFrame(
        {"y": y, "x": x, "g": [f"s{k}" for k in g], "w": rng.integers(1, 4, size=n)}
    )


@dataclass(frozen=True)
class Case:
    """One fitted model: its family, link and weights, and the data set it is fitted to."""

    family: str
    data: str
    link: str | None = None
    weights: str | None = None
    #: the auxiliary parameters fit.summary() lists
    aux: tuple[str, ...] = ()


CASES = {
    "student_t": Case("student_t", "student_t", aux=("sigma", "nu")),
    "lognormal": Case("lognormal", "lognormal", aux=("sigma",)),
    "gamma": Case("gamma", "gamma", aux=("alpha",)),
    "beta": Case("beta", "beta", aux=("phi",)),
    "negativebinomial": Case("negativebinomial", "counts", aux=("alpha",)),
    "zero_inflated_poisson": Case("zero_inflated_poisson", "counts", aux=("zi",)),
    "zero_inflated_negativebinomial": Case(
        "zero_inflated_negativebinomial", "counts", aux=("alpha", "zi")
    ),
    "cumulative": Case(
        "cumulative", "ordinal", aux=("cutpoints[1|2]", "cutpoints[2|3]", "cutpoints[3|4]")
    ),
    "bernoulli_cloglog": Case("bernoulli", "binary", link="cloglog"),
    "lognormal_weights": Case("lognormal", "lognormal", weights="w", aux=("sigma",)),
}
COUNTS = ("negativebinomial", "zero_inflated_poisson", "zero_inflated_negativebinomial")


def make_model(name: str, **kwargs) -> hb.Model:
    case = CASES[name]
    return hb.Model(
        "y ~ x + (1 | g)",
        simulate(case.data),
        family=case.family,
        link=case.link,
        weights=case.weights,
        **kwargs,
    )


@pytest.fixture(scope="module")
def fitted():
    """Each case's fit, made on first use and shared by every test of this module."""
    cache: dict[str, hb.Fit] = {}

    def get(name: str) -> hb.Fit:
        if name not in cache:
            cache[name] = quiet_fit(make_model(name), draws=200, tune=200, random_seed=SEED)
        return cache[name]

    return get


# --- independent references: scipy densities on the posterior draws -----------------------


def draws(fit: hb.Fit, name: str) -> np.ndarray:
    """Posterior draws of ``name`` as (chain, draw, ...) values."""
    return fit.idata.posterior[name].transpose("chain", "draw", ...).values


def eta_draws(fit: hb.Fit, data: pd.DataFrame) -> np.ndarray:
    """eta = Intercept + x * beta_x + u_g[label], (chain, draw, row), from the posterior's
    labelled variables (each row's group effect looked up by its label)."""
    post = fit.idata.posterior
    u = post["u_g"].sel(g_term="Intercept").sel(g=xr.DataArray(data["g"].to_numpy(), dims="row"))
    eta = (
        u.transpose("chain", "draw", "row").values
        + draws(fit, "x")[..., None] * data["x"].to_numpy()
    )
    if "Intercept" in post:
        eta = eta + draws(fit, "Intercept")[..., None]
    return eta


def scipy_log_density(family: str, link: str | None, y, eta, aux) -> np.ndarray:
    """log p(y | eta, aux) from scipy.stats; ``aux`` values broadcast against ``eta``."""
    if family == "student_t":
        return stats.t.logpdf(y, df=aux["nu"], loc=eta, scale=aux["sigma"])
    if family == "lognormal":
        return stats.lognorm.logpdf(y, s=aux["sigma"], scale=np.exp(eta))
    if family == "gamma":
        return stats.gamma.logpdf(y, a=aux["alpha"], scale=np.exp(eta) / aux["alpha"])
    if family == "beta":
        mu = ndtr(eta) if link == "probit" else expit(eta)
        return stats.beta.logpdf(y, mu * aux["phi"], (1.0 - mu) * aux["phi"])
    if family == "bernoulli":
        assert link == "cloglog"
        return stats.bernoulli.logpmf(y, -np.expm1(-np.exp(eta)))
    if family == "cumulative":
        c = aux["cutpoints"]  # (..., K - 1)
        F = stats.logistic.cdf(c - np.asarray(eta)[..., None])
        F = np.concatenate([np.zeros_like(F[..., :1]), F, np.ones_like(F[..., :1])], axis=-1)
        k = np.broadcast_to(np.asarray(y, dtype=np.int64) - LEVELS[0], F.shape[:-1])[..., None]
        return np.log(np.take_along_axis(F, k + 1, -1) - np.take_along_axis(F, k, -1))[..., 0]
    mu = np.exp(eta)
    if family in ("negativebinomial", "zero_inflated_negativebinomial"):
        a = aux["alpha"]
        count = stats.nbinom.logpmf(y, a, a / (a + mu))
    else:
        count = stats.poisson.logpmf(y, mu)
    if family == "negativebinomial":
        return count
    zi = aux["zi"]
    return np.where(y == 0, np.log(zi + (1.0 - zi) * np.exp(count)), np.log1p(-zi) + count)


def aux_draws_of(fit: hb.Fit) -> dict[str, np.ndarray]:
    """The auxiliary parameters' draws shaped (chain, draw, 1[, K - 1]) against eta."""
    out = {}
    for name in ("sigma", "nu", "alpha", "phi", "zi"):
        if name in fit.idata.posterior:
            out[name] = draws(fit, name)[..., None]
    if "cutpoints" in fit.idata.posterior:
        out["cutpoints"] = draws(fit, "cutpoints")[:, :, None, :]
    return out


def group_mle(case: Case, y, offset, aux, w) -> float:
    """A group's own maximum-likelihood intercept with x and aux held at their pooled values."""

    def nll(b):
        with np.errstate(all="ignore"):
            total = -np.sum(w * scipy_log_density(case.family, case.link, y, b + offset, aux))
        return total if np.isfinite(total) else 1e300

    result = optimize.minimize_scalar(
        nll, bounds=(-6.0, 6.0), method="bounded", options={"xatol": 1e-10}
    )
    return float(result.x)


def joint_group_mle(case: Case, y, offset, groups, pooled, w, start) -> np.ndarray:
    """The groups' own intercepts with the auxiliary parameters alpha, phi, zi common to all
    groups and estimated with them (one joint MLE by BFGS, scipy's densities)."""
    names = [k for k in ("alpha", "phi", "zi") if k in pooled]
    if not names:
        return np.asarray(start)
    codes = np.select(groups, np.arange(len(groups)))
    J = len(groups)

    def unpack(theta):
        values = zip(names, theta[J:], strict=True)
        return {k: expit(v) if k == "zi" else np.exp(v) for k, v in values}

    def nll(theta):
        eta = theta[:J][codes] + offset
        with np.errstate(all="ignore"):
            ll = scipy_log_density(case.family, case.link, y, eta, {**pooled, **unpack(theta)})
        total = -np.sum(w * ll)
        return total if np.isfinite(total) else 1e300

    a0 = [np.log(pooled[k] / (1 - pooled[k])) if k == "zi" else np.log(pooled[k]) for k in names]
    result = optimize.minimize(nll, np.r_[start, a0], method="BFGS", options={"gtol": 1e-8})
    return result.x[:J]


# --- the pooling report ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooling_report_against_independent_baselines(name, fitted):
    """Every group has its own estimate (15 rows each); complete pooling is the baseline's
    intercept on the link scale (0 for cumulative, whose cutpoints replace the intercept);
    no pooling is each group's own MLE (scipy) or, for identity links without weights,
    Gelman & Hill's lm(y ~ x + factor(g)); reliability is the posterior mean of
    tau^2 / (tau^2 + V_j); partial pooling pulls the groups towards the pooled estimate."""
    case, fit = CASES[name], fitted(name)
    design, data = fit.model.design, fit.model.data
    report = fit.pooling()
    table = report.table
    assert table["group"].tolist() == [f"s{k}" for k in range(J)]
    assert (table["n"] == PER).all()
    for column in ("se", "no_pooling", "complete_pooling", "partial_pooling", "reliability"):
        assert np.isfinite(table[column]).all(), column
    assert (table["se"] > 0).all() and report.notes == ()

    coef, aux = complete_pooling_fit(design)
    names = design.fixed_names
    intercept = coef[names.index("Intercept")] if "Intercept" in names else 0.0
    np.testing.assert_allclose(table["complete_pooling"], intercept, rtol=1e-12, atol=1e-12)

    w = data["w"].to_numpy(float) if case.weights else np.ones(len(data))
    y, x = data["y"].to_numpy(float), data["x"].to_numpy()
    groups = [data["g"].to_numpy() == f"s{k}" for k in range(J)]
    if case.family in ("student_t", "lognormal") and not case.weights:
        y_link = np.log(y) if case.family == "lognormal" else y
        dummies = np.column_stack(groups).astype(float)
        expected = np.linalg.lstsq(np.column_stack([x, dummies]), y_link, rcond=None)[0][1:]
    else:  # x held at its complete-pooling value; cutpoints too (they fix the location)
        slope = coef[names.index("x")]
        pooled = {k: np.asarray(v) for k, v in aux.items()}
        if case.family == "lognormal":  # a normal mean of log y: sigma does not move it
            pooled["sigma"] = np.asarray(1.0)
        expected = [group_mle(case, y[r], slope * x[r], pooled, w[r]) for r in groups]
        expected = joint_group_mle(case, y, slope * x, groups, pooled, w, expected)
    np.testing.assert_allclose(table["no_pooling"], expected, atol=1e-4)

    # reliability: the posterior mean of tau^2 / (tau^2 + V_j), V_j the sampling variance of
    # the group's own estimate: with sigma's draws for the identity links, sigma^2 / sum(w_j)
    # (student_t: its location's Fisher information per row is (nu + 1) / ((nu + 3) sigma^2));
    # the table's se_j^2 (the inverse Fisher information) for the others
    tau2 = draws(fit, "sd_g").reshape(-1, 1) ** 2
    if case.family in ("student_t", "lognormal"):
        sum_w = np.array([w[r].sum() for r in groups])
        V = draws(fit, "sigma").reshape(-1, 1) ** 2 / sum_w
        if case.family == "student_t":
            nu = draws(fit, "nu").reshape(-1, 1)
            V = V * (nu + 3.0) / (nu + 1.0)
    else:
        V = table["se"].to_numpy() ** 2
    np.testing.assert_allclose(table["reliability"], (tau2 / (tau2 + V)).mean(axis=0), rtol=1e-10)
    assert ((table["reliability"] > 0.2) & (table["reliability"] < 1)).all()
    # partial pooling pulls the groups together: their spread is below the no-pooling one's,
    # and no group whose own estimate is clearly apart (> 2 se) from the pooled one moves
    # further away by more than a quarter of the gap, or past it
    assert table["partial_pooling"].std() < table["no_pooling"].std()
    apart = (table["no_pooling"] - table["complete_pooling"]).abs() > 2 * table["se"]
    assert apart.any() and table.loc[apart, "shrinkage"].between(-0.25, 1.0).all()
    summary = report.summary.iloc[0]
    assert summary["sd_mean"] > 0 and 0 <= summary["pooling_factor"] <= 1
    figure = report.plot()
    try:
        assert isinstance(figure, Figure) and figure.axes[0].get_title() == "g: Intercept"
    finally:
        plt.close(figure)


# --- predictions --------------------------------------------------------------------------


def group_means(values: np.ndarray, data: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of ``values`` (rows) per group s0..s9."""
    frame = pd.DataFrame({"v": values * weights, "w": weights, "g": data["g"].to_numpy()})
    sums = frame.groupby("g")[["v", "w"]].sum().loc[[f"s{k}" for k in range(J)]]
    return (sums["v"] / sums["w"]).to_numpy()


@pytest.mark.parametrize("name", sorted(CASES))
def test_predicted_means_are_on_the_outcome_scale(name, fitted):
    """kind="mean" is E[y] on the response's own scale: positive for gamma, lognormal and
    counts, in (0, 1) for beta and bernoulli, an expected level in [1, 4] for the ordinal
    response. Averaged over each group's rows it is within 3 standard errors of the group's
    observed mean (frequency-weighted with weights=), and over all rows within 2."""
    case, fit = CASES[name], fitted(name)
    data = fit.model.data
    mean = fit.predict(data, kind="mean")
    assert mean.dims == ("chain", "draw", "obs") and mean.shape == (2, 200, J * PER)
    values = mean.values
    assert np.isfinite(values).all()
    if case.data in ("gamma", "lognormal", "counts"):
        assert (values > 0).all()
    elif case.data in ("beta", "binary"):
        assert ((values > 0) & (values < 1)).all()
    elif case.data == "ordinal":
        assert ((values > LEVELS[0]) & (values < LEVELS[-1])).all()
    w = data["w"].to_numpy(float) if case.weights else np.ones(len(data))
    y = data["y"].to_numpy(float)
    observed = group_means(y, data, w)
    predicted = group_means(values.mean(axis=(0, 1)), data, w)
    sd = pd.Series(y).groupby(data["g"].to_numpy()).std().to_numpy()
    np.testing.assert_array_less(np.abs(predicted - observed), 3 * sd / np.sqrt(PER))
    overall = np.average(values.mean(axis=(0, 1)), weights=w)
    assert abs(overall - np.average(y, weights=w)) < 2 * y.std() / np.sqrt(len(y))


@pytest.mark.parametrize("name", sorted(CASES))
def test_predicted_responses_lie_in_the_support_also_for_new_groups(name, fitted):
    """kind="response" draws are integers for counts, the levels 1..4 of the ordinal
    response, 0/1 for bernoulli, in (0, 1) for beta and > 0 for gamma and lognormal; their
    average is the mean's (to 4 Monte Carlo SEs). A group the model never saw predicts with
    new_groups="population" (spread by the group SD) and is refused with "error"."""
    case, fit = CASES[name], fitted(name)
    data = fit.model.data
    seen = data.iloc[:PER]  # group s0
    new = seen.assign(g="a new group")
    rows = pd.concat([seen, new], ignore_index=True)
    # one seed: the new group's effects are the same draws in both predictions
    response = fit.predict(rows, kind="response", random_seed=1).values
    mean = fit.predict(rows, kind="mean", random_seed=1).values
    assert np.isfinite(response).all()
    if case.data == "counts":
        assert (response >= 0).all() and (response == np.round(response)).all()
    elif case.data == "ordinal":
        assert set(np.unique(response)) == set(LEVELS)
    elif case.data == "binary":
        assert set(np.unique(response)) == {0.0, 1.0}
    elif case.data == "beta":
        assert ((response > 0) & (response < 1)).all()
    elif case.data in ("gamma", "lognormal"):
        assert (response > 0).all()
    # given the draws, each response draw has the mean as its expectation: their averages
    # agree to 4 Monte Carlo SEs
    se = (response - mean).std() / np.sqrt(response.size)
    assert abs(response.mean() - mean.mean()) < 4 * se
    # a new group's prediction varies over draws by the group SD as well: wider than s0's
    spread = mean.reshape(-1, 2, PER).std(axis=0).mean(axis=1)  # (s0, new group)
    assert spread[1] > spread[0]
    with pytest.raises(hb.DataError, match="levels the model never saw"):
        fit.predict(new, new_groups="error")


# --- the pointwise log-likelihood and LOO ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_likelihood_is_the_familys_density_at_the_posterior_draws(name, fitted):
    """The stored log_likelihood equals scipy.stats' density of each row at every draw,
    eta = Intercept + x * beta_x + u_g (looked up by group label), times the row's weight."""
    case, fit = CASES[name], fitted(name)
    data = fit.model.data
    eta = eta_draws(fit, data)
    y = data["y"].to_numpy(float)
    expected = scipy_log_density(case.family, case.link, y, eta, aux_draws_of(fit))
    if case.weights:
        expected = expected * data["w"].to_numpy()
    stored = fit.idata.log_likelihood["y"].transpose("chain", "draw", "obs").values
    np.testing.assert_allclose(stored, expected, rtol=1e-8, atol=1e-10)


def test_compare_the_count_families_by_loo(fitted):
    """hb.compare ranks the three count models of one data set with finite elpd; p_loo is
    the in-sample lppd (computed here from the stored log-likelihood) less elpd_loo."""
    fits = {name: fitted(name) for name in COUNTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)  # 400 draws: ESS is not tested
        table = hb.compare(fits)
    assert sorted(table.index) == sorted(COUNTS)
    assert np.isfinite(table[["elpd_loo", "se", "p_loo", "weight"]].to_numpy()).all()
    for name, fit in fits.items():
        ll = fit.idata.log_likelihood["y"].values.reshape(-1, J * PER)
        lppd = float(np.sum(logsumexp(ll, axis=0) - np.log(ll.shape[0])))
        np.testing.assert_allclose(lppd - table.loc[name, "elpd_loo"], table.loc[name, "p_loo"])
        assert 0 < table.loc[name, "p_loo"] < 2 * (J + 4)  # about the number of parameters
    assert table["elpd_loo"].is_monotonic_decreasing


# --- save and load -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_saved_fit_loads_with_its_family_link_weights_and_predictions(name, fitted, tmp_path):
    """hb.load gives back the posterior and log-likelihood unchanged, the family, link and
    weights, the same predicted means of the same rows and the same pooling table."""
    case, fit = CASES[name], fitted(name)
    again = hb.load(fit.save(tmp_path / "fit.nc"))
    xr.testing.assert_identical(again.idata.posterior, fit.idata.posterior)
    xr.testing.assert_identical(again.idata.log_likelihood, fit.idata.log_likelihood)
    model = again.model
    assert (model.family.name, model.family.link) == (fit.model.family.name, fit.model.family.link)
    assert model.spec.weights == case.weights
    if case.weights:
        np.testing.assert_array_equal(model.design.weights, fit.model.data["w"])
    rows = fit.model.data.iloc[::7]
    np.testing.assert_array_equal(
        again.predict(rows, kind="mean").values, fit.predict(rows, kind="mean").values
    )
    pd.testing.assert_frame_equal(again.pooling().table, fit.pooling().table)


def test_ordered_categorical_response_survives_save_and_load(fitted, tmp_path):
    """An ordinal response given as an ordered categorical keeps its levels through
    save/load: the cumulative fit's posterior with the same data as text categories."""
    fit = fitted("cumulative")
    labels = ["low", "mid", "high", "top"]
    data = fit.model.data.assign(
        y=pd.Categorical.from_codes(fit.model.data["y"] - LEVELS[0], labels, ordered=True)
    )
    model = hb.Model("y ~ x + (1 | g)", data, family="cumulative")
    assert model.design.response_levels == tuple(labels)
    categorical = hb.Fit(model, fit.idata, target_accept=fit.target_accept, warn=False)
    again = hb.load(categorical.save(tmp_path / "fit.nc"))
    assert again.model.design.response_levels == tuple(labels)
    assert list(again.model.data["y"].cat.categories) == labels
    np.testing.assert_array_equal(again.model.design.y, fit.model.design.y)
    rows = data.iloc[::5]
    np.testing.assert_array_equal(
        again.predict(rows, kind="mean").values, categorical.predict(rows, kind="mean").values
    )
    # positions 1..4 of the categories: the integer levels 1..4 give the same numbers
    np.testing.assert_allclose(
        categorical.predict(rows, kind="mean").values, fit.predict(rows, kind="mean").values
    )


def test_categorical_groups_keep_their_order_through_save_and_load(fitted, tmp_path, monkeypatch):
    """A grouping column given as a categorical orders its groups by category, not by first
    appearance: after save/load each group keeps its own posterior (no relabelling), and a
    file that lost the category order is refused rather than read with swapped labels."""
    fit = fitted("gamma")
    data = fit.model.data.iloc[::-1]  # s9 appears first, the categories start at s0
    data = data.assign(g=pd.Categorical(data["g"], categories=[f"s{k}" for k in range(J)]))
    model = hb.Model("y ~ x + (1 | g)", data, family="gamma")
    assert list(model.design.factors[0].levels) == [f"s{k}" for k in range(J)]
    categorical = hb.Fit(model, fit.idata, target_accept=fit.target_accept, warn=False)
    again = hb.load(categorical.save(tmp_path / "fit.nc"))
    rows = pd.DataFrame({"x": 0.0, "g": ["s0", "s9"]})
    np.testing.assert_array_equal(again.predict(rows).values, fit.predict(rows).values)
    pd.testing.assert_frame_equal(again.pooling().table, categorical.pooling().table)
    # a writer that keeps no categories (as before they were stored): refused on load
    monkeypatch.setattr(storage, "_category_attrs", lambda values: {})
    categorical.save(tmp_path / "old.nc")
    with pytest.raises(hb.FileFormatError, match="not the posterior's"):
        hb.load(tmp_path / "old.nc")


# --- the summary -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_lists_the_auxiliary_parameters(name, fitted):
    """fit.summary() has a row per auxiliary parameter (each cutpoint by its level pair) with
    the posterior mean; the simulation's true value lies in the central 99.8% of the draws
    where the model is the one simulated (not for nu, which 150 rows barely inform)."""
    case, fit = CASES[name], fitted(name)
    summary = fit.summary().table
    expected = ["x", "sd_g[Intercept]", *case.aux]
    if case.family != "cumulative":
        expected.insert(0, "Intercept")
    assert summary.index.tolist() == expected
    truth = dict(TRUTH[case.data])
    if case.data == "counts" and case.family != "zero_inflated_negativebinomial":
        truth = {}  # NB and ZIP are not the model that simulated these counts
    post = fit.idata.posterior
    for param in case.aux:
        base = param.split("[")[0]
        values = post[base].values
        if base == "cutpoints":
            k = list(post["cutpoint"].values).index(param[len("cutpoints[") : -1])
            values = values[..., k]
        np.testing.assert_allclose(summary.loc[param, "mean"], values.mean(), atol=1e-3)
        if base in truth and base != "nu":
            true = truth[base][k] if base == "cutpoints" else truth[base]
            low, high = np.quantile(values, [0.001, 0.999])
            assert low < true < high, (param, low, high)


# --- a TOML spec through the command line --------------------------------------------------


def test_toml_spec_with_family_link_and_weights_runs_through_the_cli(tmp_path, capsys):
    """`hierbayes fit` of a beta model with the probit link and weights, from a TOML spec:
    the spec carries all three, the run writes the pooling outputs, the pooling table's
    complete pooling is the baseline's intercept, and the saved fit loads with the family,
    link and weights and a log-likelihood of w times scipy's beta density (probit mean)."""
    data = simulate("beta", seed=2)
    data.to_csv(tmp_path / "beta.csv", index=False)
    spec_path = tmp_path / "beta_probit.toml"
    spec_path.write_text(
        '[model]\nformula = "y ~ x + (1 | g)"\ndata = "beta.csv"\nfamily = "beta"\n'
        'link = "probit"\nweights = "w"\n\n[sampler]\nrandom_seed = 4\n'
    )
    spec = read_spec(spec_path)
    assert (spec.model.family, spec.model.link, spec.model.weights) == ("beta", "probit", "w")
    out = tmp_path / "out"
    args = ["fit", str(spec_path), "--out", str(out), "--draws", "50", "--tune", "50"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)  # 50 draws fail the ESS checks
        status = main([*args, "--chains", "1", "--no-progress"])
    assert status in (0, 1)  # 1: the diagnostics failed, the results are written all the same
    printed = capsys.readouterr().out
    assert "family beta (probit link)" in printed and "weights from 'w'" in printed
    assert sorted(p.name for p in out.iterdir()) == WRITTEN

    model = hb.Model("y ~ x + (1 | g)", data, family="beta", link="probit", weights="w")
    coef, _ = complete_pooling_fit(model.design)
    table = pd.read_csv(out / "pooling.csv")
    assert table["group"].tolist() == [f"s{k}" for k in range(J)]
    np.testing.assert_allclose(table["complete_pooling"], coef[0], rtol=1e-10)
    assert np.isfinite(table[["no_pooling", "partial_pooling", "reliability"]]).all().all()

    fit = hb.load(out / "posterior.nc")
    assert (fit.model.family.name, fit.model.family.link) == ("beta", "probit")
    assert fit.model.spec.weights == "w"
    assert (fit.idata.posterior.sizes["chain"], fit.idata.posterior.sizes["draw"]) == (1, 50)
    assert "phi" in fit.summary().table.index
    eta = eta_draws(fit, data)
    expected = data["w"].to_numpy() * scipy_log_density(
        "beta", "probit", data["y"].to_numpy(), eta, aux_draws_of(fit)
    )
    np.testing.assert_allclose(fit.idata.log_likelihood["y"].values, expected, rtol=1e-8)


# --- prior predictive and SBC --------------------------------------------------------------

#: Priors under which every simulated data set suits the model (each ordinal level gets rows)
SBC_PRIORS = {
    "negativebinomial": {
        "Intercept": hb.priors.Normal(0.8, 0.5),
        "x": hb.priors.Normal(0, 0.5),
        "sd": hb.priors.HalfNormal(0.5),
        "alpha": hb.priors.HalfNormal(5),
    },
    "cumulative": {
        "x": hb.priors.Normal(0, 0.5),
        "sd": hb.priors.HalfNormal(0.5),
        "cutpoints": hb.priors.OrderedNormal((-1.0, 0.0, 1.2), 0.3),
    },
}


# cumulative's SBC loop in the slow tier (a graph of its own, about 9 s on an empty cache)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n == "cumulative" else n
        for n in sorted(SBC_PRIORS)
    ],
)
def test_prior_predictive_and_sbc_rank_every_scalar_parameter(name):
    """Prior predictive draws lie in the response's support (counts; the levels 1..4), and
    SBC fits two simulations, ranking every scalar parameter, the auxiliary ones included."""
    model = make_model(name, priors=SBC_PRIORS[name])
    prior = model.prior_predictive(draws=200, random_seed=3)
    y = prior.prior_predictive["y"].values
    aux = "alpha" if name == "negativebinomial" else "cutpoints"
    assert aux in prior.prior
    if name == "negativebinomial":
        assert (y >= 0).all() and (y == np.round(y)).all()
        assert (prior.prior["alpha"].values > 0).all()
    else:
        assert set(np.unique(y)) == set(LEVELS)  # the response's own levels, not codes
    result = hb.sbc(model, 2, draws=50, tune=50, thin=10, random_seed=5, progressbar=False)
    fixed = ["Intercept", "x"] if name == "negativebinomial" else ["x"]
    aux_labels = ["alpha"] if name == "negativebinomial" else [f"cutpoints[{k}]" for k in range(3)]
    groups = [f"b_g[s{k}, Intercept]" for k in range(J)]
    assert result.ranks.columns.tolist() == [*fixed, "sd_g[Intercept]", *aux_labels, *groups]
    assert result.n_simulations == 2 and result.n_draws == 5
    ranks = result.ranks.to_numpy()
    assert ((ranks >= 0) & (ranks <= 5)).all()
    assert np.isfinite(result.truth.to_numpy()).all()


def test_prior_draws_of_the_cutpoints_are_ordered():
    """The cutpoints' prior is ordered (OrderedNormal: Normal restricted to c_1 < ... < c_K-1),
    so every prior draw, and every SBC truth, must be ordered too, and distributed as the
    restricted Normal: against numpy's rejection sampling of the same prior."""
    model = make_model("cumulative")
    prior = model.prior_predictive(draws=2000, random_seed=3).prior
    cut = prior["cutpoints_centered"].values[0]
    assert cut.shape == (2000, 3) and (np.diff(cut, axis=-1) > 0).all()
    spec = model.priors["cutpoints"]
    rng = np.random.default_rng(0)
    ref = rng.normal(spec.mu, spec.sigma, size=(400_000, 3))
    ref = ref[(np.diff(ref, axis=-1) > 0).all(axis=-1)]
    se = ref.std(axis=0) / np.sqrt(2000)
    np.testing.assert_allclose(cut.mean(axis=0), ref.mean(axis=0), atol=4 * se.max())
    np.testing.assert_allclose(cut.std(axis=0), ref.std(axis=0), rtol=0.1)


@pytest.fixture
def no_fitting(monkeypatch):
    """Model.fit replaced by a failure: a refusal must come before any sampling."""

    def fit(self, *args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(hb.Model, "fit", fit)


def test_sbc_refuses_ordinal_simulations_with_an_empty_level_before_sampling(no_fitting):
    """Under the default priors most simulated ordinal data sets leave a level without rows,
    which the model refuses: SBC says so, with what to do, before fitting any."""
    model = make_model("cumulative")
    with pytest.raises(hb.SpecError, match="cutpoints"):
        hb.sbc(model, 20, draws=50, tune=50, thin=10, random_seed=1, progressbar=False)


def test_sbc_refuses_weights_before_sampling(no_fitting):
    """A simulation draws each row once, while weights= counts row i w_i times: the fit
    would not be the simulator's posterior, so SBC refuses, saying what to do instead."""
    model = make_model("lognormal_weights")
    with pytest.raises(hb.SpecError, match="without weights"):
        hb.sbc(model, 2, draws=50, tune=50, thin=10, random_seed=1, progressbar=False)
    # its prior predictive draws each row once, without a warning about the weights' term
    y = model.prior_predictive(draws=20, random_seed=1).prior_predictive["y"].values
    assert y.shape == (1, 20, J * PER) and (y > 0).all()


def test_ordinal_replicates_are_level_codes_like_the_observed_data(fitted):
    """An ordinal response's observed_data holds its level codes 0..K-1; its replicates too."""
    fit = fitted("cumulative")
    idata = fit.posterior_predictive(random_seed=SEED, draws=50)
    y = idata.observed_data["y"].values
    reps = idata.posterior_predictive["y"].values.reshape(-1, y.size)
    codes = set(range(len(LEVELS)))  # the data's levels are LEVELS, not 0..K-1
    assert set(np.unique(y)) <= codes and set(np.unique(reps)) <= codes
    # each replicated mean code scatters about the data's by about sd / sqrt(N)
    np.testing.assert_allclose(reps.mean(), y.mean(), atol=3 * y.std() / np.sqrt(y.size))
