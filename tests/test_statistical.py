"""Statistical tier (slow): repeated fits against known truth and reference posteriors.

Run with ``python -m pytest -m slow`` (``.ci/run`` does).
"""

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb

from .conftest import EIGHT_FORMULA, EIGHT_PRIORS, quiet_fit

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_noncentered_eight_schools_no_divergences_across_seeds(eight, seed):
    """At the default target_accept (0.95), 4 x 2000 draws: 0 divergences, reference means."""
    model = hb.Model(EIGHT_FORMULA, eight, se="sigma", priors=EIGHT_PRIORS)
    fit = model.fit(draws=2000, tune=1000, chains=4, cores=2, random_seed=seed, progressbar=False)
    post = fit.idata.posterior
    assert fit.diagnostics.divergences == 0
    np.testing.assert_allclose(float(post["Intercept"].mean()), 4.4, atol=0.25)
    np.testing.assert_allclose(float(post["sd_school"].mean()), 3.6, atol=0.25)


def simulate(seed, J=40, n=8, mu=1.0, tau=0.7, sigma=1.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), n)
    y = mu + rng.normal(0, tau, J)[g] + rng.normal(0, sigma, g.size)
    return pd.DataFrame({"y": y, "g": g})


def test_interval_coverage_on_simulated_data():
    """20 data sets from a known truth: each 90% interval must cover it in >= 14 of 20
    (a binomial(20, 0.9) falls below 14 with probability 0.002)."""
    truth = {"Intercept": 1.0, "sd_g": 0.7, "sigma": 1.0}
    covered = dict.fromkeys(truth, 0)
    for seed in range(20):
        fit = quiet_fit(
            hb.Model("y ~ 1 + (1 | g)", simulate(seed)),
            draws=500,
            tune=500,
            chains=2,
            random_seed=seed,
        )
        for name, value in truth.items():
            draws = fit.idata.posterior[name].values.ravel()
            low, high = np.quantile(draws, [0.05, 0.95])
            covered[name] += int(low <= value <= high)
    assert min(covered.values()) >= 14, covered


def test_centered_and_noncentered_agree_when_groups_are_informative():
    """With 40 groups of 25, both graphs sample well and must agree within MCSE."""
    df = simulate(99, J=40, n=25)
    fits = {
        p: hb.Model("y ~ 1 + (1 | g)", df, parameterization=p).fit(
            draws=1000, tune=1000, chains=4, cores=2, random_seed=5, progressbar=False
        )
        for p in ("centered", "non-centered")
    }
    import arviz as az

    for name in ("Intercept", "sd_g", "sigma"):
        means, mcses = [], []
        for fit in fits.values():
            s = az.summary(fit.idata, var_names=[name], round_to="none")
            means.append(float(s["mean"].iloc[0]))
            mcses.append(float(s["mcse_mean"].iloc[0]))
        assert abs(means[0] - means[1]) <= 4 * np.hypot(*mcses) + 0.01 * abs(means[0]), name
