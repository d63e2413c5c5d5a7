"""Offsets: ``offset(expr)`` terms and ``offset=``, entering eta with coefficient 1.

References: statsmodels' Poisson GLM with the same offset (the complete- and no-pooling
baselines, and a complete-pooling posterior), scipy's Poisson log-probability of the graph,
and the marginal likelihood of ``y - offset``.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import hierbayes as hb
from hierbayes.spec.baselines import complete_pooling
from hierbayes.spec.specfile import read_spec

from ..conftest import quiet_fit


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    """Poisson rates: c ~ Poisson(t exp(0.3 + 0.5 x + u_g)), 20 groups of 25 rows."""
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(20), 25)
    t = rng.uniform(0.5, 6.0, g.size)
    x = rng.normal(size=g.size)
    c = rng.poisson(t * np.exp(0.3 + 0.5 * x + rng.normal(0, 0.4, 20)[g]))
    return pd.DataFrame({"c": c, "x": x, "t": t, "lt": np.log(t), "g": [f"g{k}" for k in g]})


def test_offsets_are_not_coefficients(counts):
    for model in (
        hb.Model("c ~ x + offset(np.log(t)) + (1 | g)", counts, family="poisson"),
        hb.Model("c ~ x + offset(lt) + (1 | g)", counts, family="poisson"),
        hb.Model("c ~ x + (1 | g)", counts, family="poisson", offset="lt"),
    ):
        assert model.design.fixed_names == ("Intercept", "x")
        assert set(model.priors) == {"Intercept", "x", "sd_g"}
        np.testing.assert_allclose(model.design.offset, np.log(counts["t"]), rtol=1e-14)
        assert "lt" in model.design.columns or "t" in model.design.columns
    both = hb.Model("c ~ x + offset(lt) + (1 | g)", counts, family="poisson", offset="lt")
    np.testing.assert_allclose(both.design.offset, 2 * counts["lt"], rtol=1e-14)
    assert "with offset(lt) + offset column 'lt'" in repr(both)


def test_complete_and_no_pooling_equal_statsmodels_glm(counts):
    model = hb.Model("c ~ x + offset(np.log(t)) + (1 | g)", counts, family="poisson")
    X = sm.add_constant(counts["x"].to_numpy())
    glm = sm.GLM(counts["c"], X, family=sm.families.Poisson(), offset=counts["lt"]).fit()
    np.testing.assert_allclose(complete_pooling(model.design), glm.params, rtol=1e-7)
    gamma_x = complete_pooling(model.design)[1]
    fit = quiet_fit(model, draws=100, tune=200, random_seed=1)
    table = fit.pooling().table.set_index("group")
    for label, rows in counts.groupby("g"):
        own = sm.GLM(
            rows["c"],
            np.ones(len(rows)),
            family=sm.families.Poisson(),
            offset=rows["lt"] + gamma_x * rows["x"],  # x held at its complete-pooling value
        ).fit()
        np.testing.assert_allclose(
            table.loc[label, "no_pooling"], np.asarray(own.params)[0], rtol=1e-6
        )
        np.testing.assert_allclose(table.loc[label, "se"], np.asarray(own.bse)[0], rtol=1e-5)


def test_complete_pooling_posterior_matches_statsmodels(counts):
    """500 rows, weak default priors: posterior means within 0.25 posterior SD of the MLE."""
    model = hb.Model("c ~ x + offset(lt)", counts, family="poisson")
    fit = quiet_fit(model, draws=500, tune=500, random_seed=2)
    X = sm.add_constant(counts["x"].to_numpy())
    glm = sm.GLM(counts["c"], X, family=sm.families.Poisson(), offset=counts["lt"]).fit()
    post = fit.idata.posterior
    for name, mle, se in zip(
        ("Intercept", "x"), np.asarray(glm.params), np.asarray(glm.bse), strict=True
    ):
        np.testing.assert_allclose(float(post[name].mean()), mle, atol=0.25 * se)
        np.testing.assert_allclose(float(post[name].std()), se, rtol=0.2)
    # without the offset the intercept is the log count, not the log rate: far off
    assert (
        abs(float(post["Intercept"].mean()) - np.log(counts["c"].mean()))
        > 10 * np.asarray(glm.bse)[0]
    )
    pred = fit.predict(counts.head(5)).mean(("chain", "draw")).to_numpy()
    eta = post["Intercept"].mean().item() + post["x"].mean().item() * counts["x"].head(5)
    np.testing.assert_allclose(pred, np.exp(eta + counts["lt"].head(5)), rtol=0.05)


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize("parameterization", ["centered", "non-centered"])
def test_graph_log_likelihood_includes_the_offset(counts, parameterization):
    model = hb.Model(
        "c ~ x + offset(lt) + (1 | g)",
        counts,
        family="poisson",
        parameterization=parameterization,
    )
    graph = model.build()
    point = graph.initial_point()  # u = 0: centered b at its mean, non-centered z at 0
    loglik = graph.compile_logp(vars=graph.observed_RVs)(point)
    eta = point["Intercept"] + point["x"] * counts["x"] + counts["lt"]
    np.testing.assert_allclose(
        loglik, stats.poisson.logpmf(counts["c"], np.exp(eta)).sum(), rtol=1e-10
    )


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
def test_marginal_gaussian_with_offset_is_the_model_of_y_minus_offset(counts):
    priors = {
        "Intercept": "normal:0,5",
        "x": "normal:0,5",
        "sd": "halfnormal:2",
        "sigma": "halfnormal:2",
    }
    y = np.log1p(counts["c"]) + 0.7 * counts["lt"]
    with_offset = hb.Model("y ~ x + (1 | g)", counts.assign(y=y), offset="lt", priors=priors)
    shifted = hb.Model("y ~ x + (1 | g)", counts.assign(y=y - counts["lt"]), priors=priors)
    assert with_offset.plan.marginal and shifted.plan.marginal
    a, b = with_offset.build(), shifted.build()
    point = a.initial_point()
    point["Intercept"], point["x"] = np.array(0.3), np.array(-0.2)
    np.testing.assert_allclose(a.compile_logp()(point), b.compile_logp()(point), rtol=1e-12)
    nc = hb.Model(
        "y ~ x + (1 | g)",
        counts.assign(y=y),
        offset="lt",
        priors=priors,
        parameterization="non-centered",
    ).build()
    ncp = nc.initial_point()
    ncp.update({"Intercept": np.array(0.3), "x": np.array(-0.2)})
    mu = 0.3 - 0.2 * counts["x"] + counts["lt"]
    sigma = np.exp(ncp["sigma_log__"])
    np.testing.assert_allclose(
        nc.compile_logp(vars=nc.observed_RVs)(ncp),
        stats.norm.logpdf(y, mu, sigma).sum(),
        rtol=1e-10,
    )


def test_predict_save_load_and_spec_files_keep_the_offset(counts, tmp_path):
    model = hb.Model("c ~ x + offset(np.log(t)) + (1 | g)", counts, family="poisson")
    fit = quiet_fit(model, draws=60, tune=150, random_seed=3)
    post = fit.idata.posterior
    u = post["u_g"].values.reshape(-1, 20)
    codes = model.design.factors[0].codes
    eta = (
        post["Intercept"].values.reshape(-1, 1)
        + post["x"].values.reshape(-1, 1) * counts["x"].to_numpy()
        + u[:, codes]
        + counts["lt"].to_numpy()
    )
    pred = fit.predict(counts).values.reshape(eta.shape)
    np.testing.assert_allclose(pred, np.exp(eta), rtol=1e-10)
    ll = fit.idata.log_likelihood["c"].values.reshape(eta.shape)
    np.testing.assert_allclose(ll, stats.poisson.logpmf(counts["c"], np.exp(eta)), rtol=1e-10)
    again = hb.load(fit.save(tmp_path / "fit.nc"))
    assert again.model.formula.offsets == ("np.log(t)",)
    np.testing.assert_allclose(again.predict(counts.head(4)), fit.predict(counts.head(4)))
    with pytest.raises(hb.DataError, match="column 't' is used by the model but is not in"):
        fit.predict(counts.head(2).drop(columns="t"))
    counts.to_csv(tmp_path / "d.csv", index=False)
    spec = tmp_path / "m.toml"
    spec.write_text(
        '[model]\nformula = "c ~ x + (1 | g)"\ndata = "d.csv"\nfamily = "poisson"\noffset = "lt"\n'
    )
    run = read_spec(spec)
    assert run.model.offset == "lt"
    from_file = hb.Model.from_spec(run.model, counts)
    np.testing.assert_allclose(from_file.design.offset, counts["lt"], rtol=1e-14)


def test_offset_input_errors(counts):
    with pytest.raises(hb.SpecError, match="offset.* must be a population-level term"):
        hb.Model("c ~ x + (offset(lt) | g)", counts, family="poisson")
    with pytest.raises(hb.SpecError, match=r"offset\(\.\.\.\) must be a term of its own"):
        hb.Model("c ~ x * offset(lt) + (1 | g)", counts, family="poisson")
    bad = counts.copy()
    bad.loc[[4], "lt"] = np.inf
    with pytest.raises(hb.DataError, match=r"column 'lt' has infinite values in 1 row \(4\)"):
        hb.Model("c ~ x + (1 | g)", bad, family="poisson", offset="lt")
    with pytest.raises(hb.DataError, match="offset column 'g' has dtype (object|str); it needs"):
        hb.Model("c ~ x + (1 | g)", counts, family="poisson", offset="g")
    with pytest.raises(hb.DataError, match="column 'lx' is used by the model"):
        hb.Model("c ~ x + (1 | g)", counts, family="poisson", offset="lx")
    with pytest.raises(hb.DataError, match=r"offset\(log\(x\)\): term .* not a finite number"):
        hb.Model("c ~ x + offset(log(x)) + (1 | g)", counts, family="poisson")
