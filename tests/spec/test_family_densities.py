"""Every family and link: NumPy densities, means and draws against PyMC's, and input checks."""

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.backend.distributions import response_dist
from hierbayes.spec import families

N = 40
AUX = {"sigma": 0.7, "nu": 4.5, "alpha": 2.5, "phi": 6.0, "zi": 0.3}
CUTPOINTS = np.array([-1.0, 0.2, 1.5])
CASES = [(name, link) for name, f in families.FAMILIES.items() for link in f.links]


def _data(family, rng):
    """Responses in the family's support, and each row's trials."""
    trials = rng.integers(1, 9, size=N).astype(float)
    y = {
        "real": rng.normal(size=N),
        "positive": rng.gamma(2.0, 1.0, size=N),
        "unit": rng.beta(2.0, 3.0, size=N),
        "binary": rng.integers(0, 2, size=N),
        "binomial": rng.binomial(trials.astype(int), 0.4),
        "count": np.where(rng.uniform(size=N) < 0.3, 0, rng.poisson(3.0, size=N)),
        "ordinal": rng.integers(0, 4, size=N),
    }[family.support].astype(float)
    return y, trials


def _aux(family, rows=None):
    aux = {k: np.float64(AUX[k]) for k in family.aux if k != "cutpoints"}
    if family.ordinal:
        aux["cutpoints"] = CUTPOINTS
    return aux


@pytest.mark.parametrize(("name", "link"), CASES)
def test_log_density_equals_pymc_logp(name, link):
    """The NumPy pointwise log-likelihood (LOO, baselines) is PyMC's logp, to 1e-10."""
    rng = np.random.default_rng(3)
    family = families.get(name, link)
    y, trials = _data(family, rng)
    eta = rng.normal(0.0, 0.8, size=N) + (0.5 if family.support == "positive" else 0.0)
    aux = _aux(family)
    expected = pm.logp(response_dist(family, pt.as_tensor(eta), aux, trials), y).eval()
    got = family.log_density(y, eta, aux, trials=trials)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("name", "link"), CASES)
def test_draws_and_mean_match_pymc(name, link):
    """family.sample (predict's kind="response") draws what PyMC's distribution draws, and
    family.mean (kind="mean") is their expectation: means within 4 Monte Carlo SEs."""
    family = families.get(name, link)
    eta = np.full(40_000, 0.3)
    aux = _aux(family)
    trials = np.full(eta.size, 5.0)
    ours = family.sample(eta, aux, trials, np.random.default_rng(1))
    theirs = pm.draw(response_dist(family, pt.as_tensor(eta), aux, trials), random_seed=2)
    se = np.sqrt(ours.var() / eta.size + theirs.var() / eta.size)
    assert abs(ours.mean() - theirs.mean()) < 4 * se
    mean = family.mean(eta[:1], aux)[0] * (5.0 if family.needs_trials else 1.0)
    assert abs(ours.mean() - mean) < 4 * np.sqrt(ours.var() / eta.size)
    if family.support in ("real", "positive", "unit"):
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    else:
        counts = [np.bincount(v.astype(int), minlength=40)[:40] for v in (ours, theirs)]
        table = np.array(counts)[:, np.array(counts).sum(axis=0) >= 10]
        assert stats.chi2_contingency(table).pvalue > 1e-3


def _frame(y):
    return pd.DataFrame({"y": y, "g": np.arange(len(y)) % 4})


@pytest.mark.parametrize(
    ("family", "y", "message"),
    [
        ("beta", [0.2, 0.5, 1.0, 0.3] * 3, "strictly between 0 and 1"),
        ("beta", [0.2, 0.0, 0.6, 0.3] * 3, "zero-one-inflated"),
        ("gamma", [1.0, 2.0, 0.0, 3.0] * 3, "positive numbers"),
        ("lognormal", [1.0, -2.0, 4.0, 3.0] * 3, "positive numbers"),
        ("negativebinomial", [1, 2, -1, 3] * 3, "non-negative integer"),
        ("zero_inflated_poisson", [1, 2.5, 0, 3] * 3, "non-negative integer"),
        ("cumulative", [1, 2, 4, 1] * 3, r"levels \[3\] have no rows"),
        ("cumulative", [1.5, 2, 3, 1] * 3, "not whole numbers"),
    ],
)
def test_response_checks_name_rows_and_fix(family, y, message):
    with pytest.raises(hb.DataError, match=message) as err:
        hb.Model("y ~ 1 + (1 | g)", _frame(y), family=family)
    assert "y" in str(err.value)


def test_ordinal_categories_need_order_and_rows():
    cats = pd.Categorical(["lo", "mid", "lo", "hi"] * 3, categories=["lo", "mid", "hi"])
    with pytest.raises(hb.DataError, match="unordered categorical"):
        hb.Model("y ~ 1 + (1 | g)", _frame(cats), family="cumulative")
    ordered = pd.Categorical(
        ["lo", "mid", "lo", "hi"] * 3, categories=["lo", "mid", "top", "hi"], ordered=True
    )
    with pytest.raises(hb.DataError, match=r"levels \['top'\] have no rows"):
        hb.Model("y ~ 1 + (1 | g)", _frame(ordered), family="cumulative")


def test_unknown_link_lists_the_family_links():
    with pytest.raises(hb.SpecError, match="Valid: 'logit', 'probit', 'cloglog'"):
        hb.Model("y ~ 1 + (1 | g)", _frame([0, 1, 1, 0] * 3), family="bernoulli", link="log")
    with pytest.raises(hb.SpecError, match="unknown link 'logt'; did you mean 'logit'"):
        hb.Model("y ~ 1 + (1 | g)", _frame([0, 1, 1, 0] * 3), family="bernoulli", link="logt")
