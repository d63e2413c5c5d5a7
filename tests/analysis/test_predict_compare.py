"""Predictions for new rows, LOO comparison, and empirical Bayes inside the pooling report."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hierbayes as hb

from ..conftest import quiet_fit


def draws(fit, name):
    return fit.idata.posterior[name].values.reshape(-1, *fit.idata.posterior[name].shape[2:])


def test_mean_prediction_for_seen_groups_is_the_linear_predictor(regression_fit, regression_data):
    new = regression_data.iloc[[0, 50, 100]]
    pred = regression_fit.predict(new)
    assert pred.dims == ("chain", "draw", "obs") and list(pred["obs"].values) == [0, 50, 100]
    levels = list(regression_fit.idata.posterior["g"].values)
    u = draws(regression_fit, "u_g")[:, :, 0]
    codes = [levels.index(g) for g in new["g"]]
    expected = (
        draws(regression_fit, "Intercept")[:, None]
        + draws(regression_fit, "x")[:, None] * new["x"].to_numpy()
        + u[:, codes]
    )
    np.testing.assert_allclose(pred.values.reshape(-1, 3), expected, rtol=1e-12)


def test_unseen_group_error_names_the_labels(regression_fit):
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["g00", "nowhere"]}, index=[7, 8])
    with pytest.raises(
        hb.DataError, match=r"levels the model never saw: \['nowhere'\] in 1 row \(8\)"
    ):
        regression_fit.predict(new, new_groups="error")


def test_unseen_group_draws_from_the_population(regression_fit):
    new = pd.DataFrame({"x": [0.5] * 3, "g": ["new1", "new1", "new2"]})
    pred = regression_fit.predict(new, random_seed=1).values.reshape(-1, 3)
    line = draws(regression_fit, "Intercept") + 0.5 * draws(regression_fit, "x")
    effect = pred - line[:, None]
    np.testing.assert_array_equal(effect[:, 0], effect[:, 1])  # one draw per new group
    tau = draws(regression_fit, "sd_g")[:, 0]
    np.testing.assert_allclose(effect[:, 2].std(), np.sqrt(np.mean(tau**2)), rtol=0.1)
    np.testing.assert_allclose(effect[:, 2].mean(), 0.0, atol=0.1)
    again = regression_fit.predict(new, random_seed=1).values.reshape(-1, 3)
    np.testing.assert_array_equal(pred, again)


def test_response_prediction_adds_the_residual_noise(regression_fit, regression_data):
    new = regression_data.iloc[[3]]
    mean = regression_fit.predict(new).values.ravel()
    response = regression_fit.predict(new, kind="response", random_seed=2).values.ravel()
    sigma = draws(regression_fit, "sigma")
    np.testing.assert_allclose(np.var(response), np.var(mean) + np.mean(sigma**2), rtol=0.15)


def test_predict_bad_input(regression_fit):
    with pytest.raises(hb.DataError, match="column 'x' is used by the model"):
        regression_fit.predict(pd.DataFrame({"g": ["g00"]}))
    with pytest.raises(hb.SpecError, match="kind must be one of"):
        regression_fit.predict(pd.DataFrame({"x": [1.0], "g": ["g00"]}), kind="median")


def test_compare_ranks_the_true_model_first(regression_fit, regression_data):
    fits = {
        "complete pooling": quiet_fit(hb.Model("y ~ x", regression_data), random_seed=1),
        "no slope": quiet_fit(hb.Model("y ~ 1 + (1 | g)", regression_data), random_seed=1),
        "true": regression_fit,
    }
    with pytest.warns(hb.SamplingWarning, match=r"Pareto k > 0.7"):  # a few groups of 2 rows
        table = hb.compare(fits)
    assert table.loc[table["pareto_k_warning"], "problems"].str.contains("Pareto k").all()
    assert table.index[0] == "true"
    assert list(table.columns[:3]) == ["elpd_loo", "se", "p_loo"]
    assert {"weight", "residual_sd"} <= set(table.columns)
    np.testing.assert_allclose(
        table.loc["true", "residual_sd"], float(regression_fit.idata.posterior["sigma"].mean())
    )
    assert table["elpd_loo"].is_monotonic_decreasing
    np.testing.assert_allclose(table["weight"].sum(), 1.0)


def test_compare_refuses_different_data(regression_fit, regression_data):
    other = quiet_fit(
        hb.Model("y ~ x", regression_data.iloc[:-1]), draws=100, tune=100, random_seed=1
    )
    with pytest.raises(hb.SpecError, match="other observations"):
        hb.compare({"a": regression_fit, "b": other})


def test_pooling_report_puts_empirical_bayes_beside_full_bayes(regression_fit):
    t = regression_fit.pooling().table
    eb = hb.empirical_bayes(regression_fit.model).table
    np.testing.assert_allclose(t["empirical_bayes"], eb["eb"])
    # with 30 groups the REML/EB and full-Bayes group estimates nearly agree
    np.testing.assert_allclose(t["empirical_bayes"], t["partial_pooling"], atol=0.1)
    assert ((t["eb_lower"] < t["empirical_bayes"]) & (t["empirical_bayes"] < t["eb_upper"])).all()
    assert "empirical_bayes" not in regression_fit.pooling(empirical_bayes=False).table


def test_simulate_noise_groups():
    a = hb.datasets.simulate_noise_groups(n_groups=50, n_per_group=4, seed=3)
    b = hb.datasets.simulate_noise_groups(n_groups=50, n_per_group=4, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert a.shape == (200, 2) and a["group"].nunique() == 50
    sizes = hb.datasets.simulate_noise_groups(n_groups=3, n_per_group=[1, 2, 5], seed=0)
    assert sizes.groupby("group").size().tolist() == [1, 2, 5]
    with pytest.raises(hb.SpecError):
        hb.datasets.simulate_noise_groups(n_groups=1, seed=0)


def test_predict_in_chunks_gives_the_same_draws(regression_fit, regression_data, monkeypatch):
    """Chunks of draws consume one random stream in draw order: any chunk size, same draws."""
    import hierbayes.analysis.predict as predict_module

    new = pd.concat([regression_data.iloc[:40], pd.DataFrame({"x": [0.1], "g": ["unseen"]})])
    whole = {k: regression_fit.predict(new, kind=k, random_seed=4) for k in ("mean", "response")}
    monkeypatch.setattr(predict_module, "CHUNK_CELLS", 7 * len(new))  # 7 draws a chunk
    for kind, values in whole.items():
        chunked = regression_fit.predict(new, kind=kind, random_seed=4)
        np.testing.assert_array_equal(chunked, values)


def test_predict_draws_subset_is_those_draws(regression_fit, regression_data):
    new = regression_data.iloc[:5]
    full = regression_fit.predict(new)
    part = regression_fit.predict(new, draws=50)
    assert part.sizes == {"chain": 2, "draw": 50, "obs": 5}
    kept = np.linspace(0, full.sizes["draw"] - 1, 50).round().astype(int)
    np.testing.assert_array_equal(part["draw"], full["draw"][kept])
    np.testing.assert_allclose(part, full.isel(draw=kept), rtol=1e-12)
    assert regression_fit.predict(new, draws=10_000).sizes["draw"] == full.sizes["draw"]
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(hb.SpecError, match="draws must be None or a whole number"):
            regression_fit.predict(new, draws=bad)


def test_group_labels_of_another_type_are_refused_not_taken_as_new_groups(regression_data):
    """Integer group labels given as text would all be 'unseen' and silently pooled."""
    df = regression_data.assign(k=regression_data["g"].str[1:].astype(int))
    model = hb.Model("y ~ x + (1 | k)", df)
    fit = hb.Fit.__new__(hb.Fit)  # predict needs only the model and the posterior
    fit.model = model
    fit.idata = az.from_dict(
        posterior={
            "Intercept": np.zeros((1, 2)),
            "x": np.zeros((1, 2)),
            "sd_k": np.ones((1, 2, 1)),
            "u_k": np.zeros((1, 2, 30, 1)),
        },
        dims={"sd_k": ["k_term"], "u_k": ["k", "k_term"]},
    )
    with pytest.raises(hb.DataError, match="'k' holds numbers in the model's data but text"):
        fit.predict(pd.DataFrame({"x": [0.0], "k": ["3"]}))
    np.testing.assert_array_equal(fit.predict(pd.DataFrame({"x": [0.0], "k": [3]})), 0.0)


def fake_fit(model: hb.Model, rng, *, stuck: bool) -> hb.Fit:
    """A Fit of ``model`` from made-up draws (no MCMC): 4 chains, chain 2 stuck if asked."""
    from hierbayes.posterior.diagnostics import diagnose

    n = model.design.n_obs
    step = np.tile([[0.2], [0.25], [0.21], [0.22]], (1, 200))
    mu = rng.normal(size=(4, 200))
    if stuck:
        step[2] = 1e-9
        mu[2] = 3.0 + 1e-9 * rng.normal(size=200)
    idata = az.from_dict(
        posterior={"mu": mu},
        log_likelihood={"y": rng.normal(-1.0, 0.05, size=(4, 200, n))},
        observed_data={"y": model.design.y},
        sample_stats={
            "diverging": np.zeros((4, 200), bool),
            "energy": rng.normal(size=(4, 200)),
            "step_size": step,
        },
    )
    fit = hb.Fit.__new__(hb.Fit)
    fit.model, fit.idata, fit.target_accept = model, idata, 0.95
    fit.diagnostics = diagnose(idata)
    return fit


def test_compare_names_and_marks_fits_that_failed(regression_data):
    model = hb.Model("y ~ x + (1 | g)", regression_data)
    rng = np.random.default_rng(12)
    fits = {"sound": fake_fit(model, rng, stuck=False), "stuck": fake_fit(model, rng, stuck=True)}
    with pytest.warns(hb.SamplingWarning, match=r"compare: 'stuck' \(stuck chain\(s\) \[2\]"):
        table = hb.compare(fits)
    assert table.loc["sound", "problems"] == ""
    assert table.loc["stuck", "problems"].startswith("stuck chain(s) [2]; R-hat")
    assert "problems" in table.to_string()
    healthy = {"a": fits["sound"], "b": fake_fit(model, rng, stuck=False)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", hb.SamplingWarning)
        assert (hb.compare(healthy)["problems"] == "").all()
