"""Distributional parameters through the workflow: fit, log-likelihood, report, predict,
save/load and TOML specs (few draws)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.spec.specfile import read_spec

from ..conftest import quiet_fit
from ..test_agreement import assert_agree

FORMULA, SIGMA = "y ~ x + (1 | g)", "~ w + (1 | g)"


@pytest.fixture(scope="module")
def hetero() -> pd.DataFrame:
    """12 groups of 15 to 30 rows whose residual SDs differ: log sigma_j = -0.7 + 0.5 w_j + e_j."""
    rng = np.random.default_rng(8)
    sizes = rng.integers(15, 31, size=12)
    g = np.repeat(np.arange(12), sizes)
    w_j = rng.normal(size=12)
    log_sigma = -0.7 + 0.5 * w_j + rng.normal(0, 0.3, 12)
    x = rng.normal(size=g.size)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.8, 12)[g] + np.exp(log_sigma[g]) * rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "w": w_j[g], "g": [f"s{k:02d}" for k in g]})


class _Fits(dict):
    """Each parameterisation's fit, made on first use (``fits["marginal"]``)."""

    def __init__(self, data: pd.DataFrame) -> None:
        super().__init__()
        self.data = data

    def __missing__(self, form: str) -> hb.Fit:
        model = hb.Model(FORMULA, self.data, sigma=SIGMA, parameterization=form)
        self[form] = quiet_fit(model, draws=300, tune=300, random_seed=4)
        return self[form]


@pytest.fixture(scope="module")
def fits(hetero) -> dict[str, hb.Fit]:
    return _Fits(hetero)


@pytest.mark.slow  # an agreement check; the other tests here use one fit each
def test_marginal_and_non_centered_agree(fits):
    """sigma_j integrated with the group effects out, or sampled with them: one posterior."""
    marginal = fits["marginal"]
    assert marginal.idata.attrs["parameterization_used"] == "marginal"
    names = ["Intercept", "x", "sd_g", "sigma_Intercept", "sigma_w", "sd_sigma_g", "b_g"]
    assert assert_agree(marginal, fits["non-centered"], names) == 6 + 12


def test_pointwise_log_likelihood_uses_each_row_sigma(fits, hetero):
    fit = fits["marginal"]  # with u_g drawn after sampling
    post = fit.idata.posterior.isel(chain=0, draw=7)
    codes = fit.model.design.factors[0].codes
    mu = post["Intercept"].item() + post["x"].item() * hetero["x"] + post["u_g"].values[codes, 0]
    log_sigma = (
        post["sigma_Intercept"].item()
        + post["sigma_w"].item() * hetero["w"]
        + post["u_sigma_g"].values[codes, 0]
    )
    expected = stats.norm.logpdf(hetero["y"], mu, np.exp(log_sigma))
    got = fit.idata.log_likelihood["y"].isel(chain=0, draw=7).values
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_predictive_spread_follows_each_group_sigma(fits, hetero):
    """Draws of y for the training rows: their SD around the mean prediction is each
    row's sigma_i (posterior mean), within Monte Carlo error."""
    fit = fits["marginal"]
    y_rep = fit.predict(hetero, kind="response", random_seed=1).values.reshape(-1, len(hetero))
    mean = fit.predict(hetero, kind="mean").values.reshape(-1, len(hetero))
    resid_sd = (y_rep - mean).std(axis=0)
    post = fit.idata.posterior
    codes = fit.model.design.factors[0].codes
    log_sigma = (
        post["sigma_Intercept"].values[..., None]
        + post["sigma_w"].values[..., None] * hetero["w"].to_numpy()
        + post["u_sigma_g"].values[..., codes, 0]
    )
    rms_sigma = np.sqrt((np.exp(log_sigma) ** 2).mean(axis=(0, 1)))
    np.testing.assert_allclose(resid_sd, rms_sigma, rtol=0.12)  # 600 draws: the SD's MCSE ~3%
    # a school the model never saw gets its sigma from the fitted population of sigmas
    new = hetero.head(2).assign(g="new")
    draws = fit.predict(new, kind="response", random_seed=2)
    assert np.isfinite(draws.values).all() and draws.shape == (2, 300, 2)


def test_pooling_report_uses_each_group_sigma(fits):
    table = fits["marginal"].pooling().table
    assert table["reliability"].between(0, 1).all()
    assert "empirical_bayes" not in table  # REML's residual variance is one number
    # the least reliable group is the one with the largest sigma_j^2 / n_j
    fit = fits["marginal"]
    f = fit.model.design.factors[0]
    # b_sigma_g = sigma_Intercept + sigma_w w_j + u_j: log sigma_j
    sigma_j = np.exp(fit.idata.posterior["b_sigma_g"].mean(("chain", "draw")).values[:, 0])
    noise = sigma_j**2 / f.counts
    assert table["reliability"].to_numpy().argmin() == noise.argmax()


def test_summary_save_load_and_spec(fits, hetero, tmp_path):
    fit = fits["marginal"]
    rows = fit.summary().table.index.tolist()
    assert {"sigma_Intercept", "sigma_w", "sd_sigma_g[Intercept]"} <= set(rows)
    fit.save(tmp_path / "fit.nc")
    back = hb.load(tmp_path / "fit.nc")
    assert back.model.spec.dpars == {"sigma": SIGMA}
    np.testing.assert_array_equal(
        back.predict(hetero.head(5), kind="mean").values,
        fit.predict(hetero.head(5), kind="mean").values,
    )
    hetero.to_csv(tmp_path / "hetero.csv", index=False)
    (tmp_path / "m.toml").write_text(
        f'[model]\nformula = "{FORMULA}"\ndata = "hetero.csv"\nsigma = "{SIGMA}"\n'
    )
    spec = read_spec(tmp_path / "m.toml")
    assert spec.model.dpars == {"sigma": SIGMA}
    (tmp_path / "bad.toml").write_text(
        f'[model]\nformula = "{FORMULA}"\ndata = "hetero.csv"\nphi = "~ w"\n'
    )
    with pytest.raises(hb.SpecError, match=r"\[model\] phi.*no parameter 'phi'"):
        read_spec(tmp_path / "bad.toml")


def test_dropna_counts_rows_missing_in_the_sigma_formula(hetero):
    df = hetero.copy()
    df.loc[[3, 40], "w"] = np.nan
    with pytest.raises(hb.DataError, match="column 'w' has missing values"):
        hb.Model(FORMULA, df, sigma=SIGMA)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = hb.Model(FORMULA, df, sigma=SIGMA, dropna=True)
    assert m.design.n_obs == len(df) - 2 and list(m.dropped) == [3, 40]
    assert any(issubclass(w.category, hb.DataWarning) for w in caught)
