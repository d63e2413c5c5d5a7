"""Every parameterisation (and sampler) targets the same posterior: the means agree.

Criterion, for each scalar quantity: |mean_a - mean_b| <= k sqrt(MCSE_a^2 + MCSE_b^2)
+ 0.01 max(|mean|, posterior SD): k Monte Carlo standard errors of the difference plus 1% of
the quantity's scale. k = 3 for a single quantity (a 0.27% false alarm rate). A variable with
n elements (the 40 group coefficients) is tested at the Bonferroni multiplier that keeps the
same 0.27% false-alarm rate for the whole variable: k = 3.82 for n = 20, 3.98 for n = 40.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
from scipy.stats import norm

import hierbayes as hb

from .conftest import EIGHT_FORMULA, EIGHT_PRIORS, quiet_fit

SCALARS = ["Intercept", "x", "sd_group", "corr_group", "sigma", "b_group"]


def assert_agree(a: hb.Fit, b: hb.Fit, names: list[str]) -> int:
    """Assert the criterion for every element of ``names``; return how many were compared."""
    post_a, post_b = a.idata.posterior[names], b.idata.posterior[names]
    mean_a, mean_b = post_a.mean(("chain", "draw")), post_b.mean(("chain", "draw"))
    mcse_a, mcse_b = az.mcse(post_a, method="mean"), az.mcse(post_b, method="mean")
    scale = np.maximum(abs(mean_a), post_a.std(("chain", "draw")))
    compared = 0
    for name in names:
        diff = np.abs(mean_a[name] - mean_b[name]).values
        mcse = np.sqrt(mcse_a[name] ** 2 + mcse_b[name] ** 2).values
        finite = np.isfinite(mcse)  # skip a quantity with no MCSE
        k = norm.isf(norm.sf(3.0) / max(int(finite.sum()), 1))  # 3 for one quantity
        bound = k * mcse + 0.01 * scale[name].values
        assert np.all(diff[finite] <= bound[finite]), (
            name,
            diff[finite].max(),
            bound[finite].min(),
        )
        compared += int(finite.sum())
    return compared


@pytest.fixture(scope="module")
def eight_marginal(eight) -> hb.Fit:
    model = hb.Model(
        EIGHT_FORMULA, eight, se="sigma", parameterization="marginal", priors=EIGHT_PRIORS
    )
    return model.fit(
        draws=2000, tune=1000, chains=4, cores=2, random_seed=20261122, progressbar=False
    )


def test_eight_schools_marginal_agrees_with_non_centered(eight_fit, eight_marginal):
    assert eight_marginal.diagnostics.divergences == 0
    assert eight_marginal.idata.attrs["parameterization_used"] == "marginal"
    n = assert_agree(eight_fit, eight_marginal, ["Intercept", "sd_school", "b_school", "u_school"])
    assert n == 1 + 1 + 8 + 8


def test_eight_schools_marginal_matches_the_reference_posterior(eight_marginal):
    """posteriordb eight_schools_noncentered: mu 4.4, tau 3.6 (each +- 0.25)."""
    post = eight_marginal.idata.posterior
    np.testing.assert_allclose(float(post["Intercept"].mean()), 4.4, atol=0.25)
    np.testing.assert_allclose(float(post["sd_school"].mean()), 3.6, atol=0.25)


def test_marginal_fit_reports_and_compares(eight_fit, eight_marginal):
    table = eight_marginal.pooling().table
    np.testing.assert_allclose(table["no_pooling"], [28, 8, -3, 7, -1, 1, 18, 12])
    ll = eight_marginal.idata.log_likelihood["y"]
    assert ll.shape == (4, 2000, 8) and np.isfinite(ll).all()
    # eight schools is LOO's classic hard case: compare warns exactly when a school's Pareto
    # k exceeds 0.7 in either fit (whether one does depends on the draws)
    fits = {"non-centered": eight_fit, "marginal": eight_marginal}
    with warnings.catch_warnings():
        # az.loo warns of the same k > 0.7 that compare is checked for below
        warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
        k = max(float(az.loo(f.idata, pointwise=True).pareto_k.max()) for f in fits.values())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = hb.compare(fits)
    said = [str(w.message) for w in caught if "Pareto k > 0.7" in str(w.message)]
    assert bool(said) == (k > 0.7), (k, said)
    # the same model: the difference in elpd is within its standard error
    assert abs(result["elpd_diff"].iloc[1]) <= 2 * result["dse"].iloc[1] + 0.1


@pytest.fixture(scope="module")
def slopes_fits() -> dict[str, hb.Fit]:
    """Correlated varying intercepts and slopes: 20 groups of 15 rows, each parameterisation."""
    sim = hb.datasets.simulate_hierarchical(20, 15, seed=7)
    fits = {}
    for p in ("centered", "non-centered", "marginal"):
        model = hb.Model("y ~ x + (x | group)", sim.data, parameterization=p)
        fits[p] = quiet_fit(model, draws=600, tune=600, chains=4, random_seed=3)
    return fits


@pytest.mark.slow  # three fits of 4 x 600 draws (about 40 s)
@pytest.mark.parametrize("other", ["centered", "non-centered"])
def test_varying_slopes_marginal_agrees(slopes_fits, other):
    assert slopes_fits["marginal"].diagnostics.divergences == 0
    n = assert_agree(slopes_fits["marginal"], slopes_fits[other], SCALARS)
    assert n == 1 + 1 + 2 + 4 + 1 + 40  # corr_group: all four entries, the unit diagonal too
