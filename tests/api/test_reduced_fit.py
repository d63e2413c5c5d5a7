"""A fit from per-group sums (data in an engine) against the same model fitted to the rows:
the same draws for the same seed, the same pooling report and empirical Bayes; comparison
by leave-one-group-out; save and load keep the sums; what needs rows says so."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.stats import multivariate_normal

import hierbayes as hb
from hierbayes.analysis.variance import icc_draws
from hierbayes.errors import SpecError
from tests.conftest import assert_same_draws, quiet_fit

FORMULA = "y ~ x + w + (x | g)"
SETTINGS = {"draws": 500, "tune": 500, "random_seed": 8}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """Varying intercepts and slopes with a group-level predictor w, groups in sorted order
    (so the rows' first-appearance order is the sums' sorted order)."""
    rng = np.random.default_rng(21)
    sizes = rng.integers(1, 50, size=30)
    g = np.repeat(np.arange(30), sizes)
    x, w = rng.normal(size=g.size), rng.normal(size=30)
    u0, u1 = rng.normal(0, 0.8, 30), rng.normal(0, 0.3, 30)
    y = 1.0 + 0.5 * x + 0.4 * w[g] + u0[g] + u1[g] * x + rng.normal(0, 0.6, g.size)
    return pd.DataFrame({"y": y, "x": x, "w": w[g], "g": [f"s{k:02d}" for k in g]})


@pytest.fixture(scope="module")
def fits(data, tmp_path_factory) -> dict[str, hb.Fit]:
    path = tmp_path_factory.mktemp("reduced") / "data.parquet"
    data.to_parquet(path, index=False)
    return {
        "sums": quiet_fit(hb.Model(FORMULA, path), **SETTINGS),
        "rows": quiet_fit(hb.Model(FORMULA, data), **SETTINGS),
        "intercepts": quiet_fit(hb.Model("y ~ x + w + (1 | g)", path), **SETTINGS),
    }


def test_the_sums_give_the_draws_of_the_rows(fits):
    """Same graph, same seed: the draws agree to rounding (the sums add in another order)."""
    sums, rows = fits["sums"], fits["rows"]
    assert sums.model.data is None and sums.model.design.n_obs == rows.model.design.n_obs
    names = ("Intercept", "x", "w", "sd_g", "corr_g", "sigma", "u_g", "b_g")
    assert_same_draws(sums, rows, names, 1e-8)
    assert sums.idata.attrs["parameterization_used"] == "auto: g marginal"


def test_the_pooling_report_and_reml_come_from_the_sums(fits):
    """No pooling from each group's sums, complete pooling from the totals, REML by
    core.sums.reml_sums: the rows' report (statsmodels' REML) within 1e-6."""
    a, b = fits["sums"].pooling().table, fits["rows"].pooling().table
    assert a[["group", "term"]].equals(b[["group", "term"]])
    exact = ["n", "se", "no_pooling", "complete_pooling", "partial_pooling", "reliability"]
    np.testing.assert_allclose(a[exact].to_numpy(float), b[exact].to_numpy(float), atol=1e-10)
    reml = ["empirical_bayes", "eb_lower", "eb_upper"]
    np.testing.assert_allclose(a[reml].to_numpy(float), b[reml].to_numpy(float), atol=1e-6)
    ea, eb = hb.empirical_bayes(fits["sums"].model), hb.empirical_bayes(fits["rows"].model)
    assert ea.method.startswith("REML from per-group sums")
    np.testing.assert_allclose(ea.loglik, eb.loglik, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ea.cov_re.to_numpy(), eb.cov_re.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(ea.sigma2, eb.sigma2, rtol=1e-7)
    np.testing.assert_allclose(fits["sums"].icc()["mean"], fits["rows"].icc()["mean"], rtol=1e-9)


def test_the_log_likelihood_is_each_groups_marginal_likelihood(fits, data):
    """log p(y_j | beta, T, sigma) with u_j integrated out, checked on the rows of three
    groups with a multivariate normal density at two posterior draws."""
    fit = fits["sums"]
    ll = fit.idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "g") and fit.idata.attrs["log_likelihood_unit"]
    post = fit.idata.posterior
    for chain, draw in [(0, 5), (1, 450)]:
        p = post.isel(chain=chain, draw=draw)
        sd, r = p["sd_g"].values, float(p["corr_g"].values[0, 1])
        T = np.diag(sd) @ np.array([[1.0, r], [r, 1.0]]) @ np.diag(sd)
        for group in ("s00", "s07", "s29"):
            rows = data[data["g"] == group]
            X = np.column_stack([np.ones(len(rows)), rows["x"], rows["w"]])
            Z = X[:, :2]
            mean = X @ [float(p[name]) for name in ("Intercept", "x", "w")]
            cov = Z @ T @ Z.T + float(p["sigma"]) ** 2 * np.eye(len(rows))
            expected = multivariate_normal(mean, cov).logpdf(rows["y"].to_numpy())
            got = float(ll.isel(chain=chain, draw=draw).sel(g=group))
            np.testing.assert_allclose(got, expected, rtol=1e-6)  # stored as float32


def test_compare_is_leave_one_group_out(fits):
    """The varying slopes (true SD 0.3) predict new groups better than intercepts alone;
    a fit per row and a fit per group are not compared."""
    table = hb.compare({"slopes": fits["sums"], "intercepts": fits["intercepts"]})
    assert table.index[0] == "slopes" and table.loc["intercepts", "elpd_diff"] > 0
    # a group's log density (-40 here; -1,400 at 1,000 rows) once stalled ArviZ's stacking
    assert table.loc["slopes", "weight"] > 0.9, table["weight"]
    with pytest.raises(SpecError, match="per group of 'g' and fit 'rows' per row"):
        hb.compare({"sums": fits["sums"], "rows": fits["rows"]})


def test_save_and_load_keep_the_sums(fits, data, tmp_path):
    fit = fits["sums"]
    again = hb.load(fit.save(tmp_path / "fit.nc"))
    assert again.model.data is None
    np.testing.assert_array_equal(again.model.design.sums.gram, fit.model.design.sums.gram)
    assert again.idata.attrs["log_likelihood_unit"] == fit.idata.attrs["log_likelihood_unit"]
    np.testing.assert_allclose(
        again.predict(data.head(4)).values, fit.predict(data.head(4)).values, rtol=0, atol=0
    )
    pd.testing.assert_frame_equal(again.pooling().table, fit.pooling().table)


def test_predictions_for_new_rows_are_those_of_the_rows_fit(fits, data):
    new = pl.from_pandas(data.sample(9, random_state=1).assign(g=["s03"] * 8 + ["new"]))
    a = fits["sums"].predict(new, random_seed=2).values
    b = fits["rows"].predict(new.to_pandas(), random_seed=2).values
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda fit: fit.r2(), "Bayesian R²"),
        (lambda fit: fit.posterior_predictive(), "the posterior predictive of the fitted rows"),
        (lambda fit: fit.plot_ppc(), "the posterior predictive of the fitted rows"),
        (lambda fit: fit.effects("x"), "fit.effects"),
    ],
)
def test_what_needs_the_rows_says_so(fits, call, what):
    with pytest.raises(SpecError, match=f"{what} needs the data's rows.*reduce=False"):
        call(fits["sums"])


@pytest.fixture(scope="module")
def bernoulli_fits(tmp_path_factory) -> tuple[hb.Fit, hb.Fit, pd.DataFrame]:
    """y ~ k + (1 | g), bernoulli, 3,000 rows: from their 240 distinct rows (Parquet) and
    from the rows."""
    rng = np.random.default_rng(4)
    g, k = rng.integers(0, 40, 3000), rng.integers(0, 3, 3000)
    eta = -0.2 + 0.6 * (k == 1) - 0.5 * (k == 2) + rng.normal(0, 0.7, 40)[g]
    y = (rng.random(3000) < 1 / (1 + np.exp(-eta))).astype(int)
    df = pd.DataFrame({"y": y, "k": [f"k{v}" for v in k], "g": [f"g{v:02d}" for v in g]})
    path = tmp_path_factory.mktemp("bernoulli") / "rows.parquet"
    df.to_parquet(path, index=False)
    settings = {"draws": 500, "tune": 500, "random_seed": 2}
    distinct = quiet_fit(hb.Model("y ~ k + (1 | g)", path, family="bernoulli"), **settings)
    rows = quiet_fit(hb.Model("y ~ k + (1 | g)", df, family="bernoulli"), **settings)
    return distinct, rows, df


def test_distinct_rows_give_the_posterior_of_the_rows(bernoulli_fits):
    """The same posterior (the log densities are equal, tests/spec/test_collapse.py): means
    within 4 Monte Carlo standard errors of the difference."""
    distinct, rows, _ = bernoulli_fits
    assert distinct.model.design.n_obs <= 240 and distinct.model.design.n_rows == 3000
    for name in ("Intercept", "k[k1]", "k[k2]", "sd_g"):
        a, b = (f.idata.posterior[name] for f in (distinct, rows))
        mcse = np.hypot(*(float(az.mcse(x.to_dataset())[name].max()) for x in (a, b)))
        assert abs(float(a.mean()) - float(b.mean())) < 4 * mcse, name
    b_a = distinct.idata.posterior["b_g"].mean(("chain", "draw")).to_series()
    b_b = rows.idata.posterior["b_g"].mean(("chain", "draw")).to_series()
    np.testing.assert_allclose(b_a.sort_index(), b_b.sort_index(), atol=0.05)
    np.testing.assert_array_equal(
        distinct.pooling().table.set_index("group")["n"].sort_index(),
        rows.pooling().table.set_index("group")["n"].sort_index(),
    )


POISSON = "c ~ k + offset(np.log(t)) + (1 | g)"


@pytest.fixture(scope="module")
def poisson_fits(tmp_path_factory) -> tuple[hb.Fit, hb.Fit, pd.DataFrame]:
    """c ~ k + offset(np.log(t)) + (1 | g), 3,000 rows each with its own exposure: from
    their 120 cells (Parquet; counts and exposures summed) and from the rows."""
    rng = np.random.default_rng(6)
    g, k, t = rng.integers(0, 40, 3000), rng.integers(0, 3, 3000), rng.gamma(2.0, 1.0, 3000)
    eta = -0.3 + 0.5 * (k == 1) - 0.4 * (k == 2) + rng.normal(0, 0.6, 40)[g]
    c = rng.poisson(np.exp(eta) * t)
    df = pd.DataFrame({"c": c, "t": t, "k": [f"k{v}" for v in k], "g": [f"g{v:02d}" for v in g]})
    path = tmp_path_factory.mktemp("poisson") / "rows.parquet"
    df.to_parquet(path, index=False)
    settings = {"draws": 500, "tune": 500, "random_seed": 3}
    cells = quiet_fit(hb.Model(POISSON, path, family="poisson"), **settings)
    rows = quiet_fit(hb.Model(POISSON, df, family="poisson"), **settings)
    return cells, rows, df


def test_cells_give_the_posterior_and_pooling_report_of_the_rows(poisson_fits):
    """The same posterior (the log densities differ by a constant, tests/spec/test_summed.py):
    means within 4 Monte Carlo standard errors of the difference. Each group's no-pooling
    Poisson fit is the rows' to rounding (the cells' score equations are the rows'), and
    the ICC of the same draws is the rows' (each cell's mean is its rows' sum)."""
    cells, rows, _ = poisson_fits
    assert (cells.model.design.n_obs, cells.model.design.n_rows) == (120, 3000)
    for name in ("Intercept", "k[k1]", "k[k2]", "sd_g"):
        a, b = (f.idata.posterior[name] for f in (cells, rows))
        mcse = np.hypot(*(float(az.mcse(x.to_dataset())[name].max()) for x in (a, b)))
        assert abs(float(a.mean()) - float(b.mean())) < 4 * mcse, name
    by = ["group", "term"]
    a, b = (f.pooling().table.set_index(by).sort_index() for f in (cells, rows))
    for column in ("no_pooling", "se", "complete_pooling"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-9, atol=1e-12, err_msg=column)
    np.testing.assert_array_equal(a["n"], b["n"])
    np.testing.assert_allclose(
        icc_draws(cells.model.design, cells.idata)["g"],
        icc_draws(rows.model.design, cells.idata)["g"],
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("fits", "holds"),
    [("bernoulli_fits", "distinct rows of its 3,000"), ("poisson_fits", "120 cells of its 3,000")],
)
def test_counted_rows_save_load_and_refuse_what_needs_rows(request, fits, holds, tmp_path):
    """Distinct rows and cells: no log-likelihood, nothing per row; saved and loaded with
    their counts (and the cells' summed offsets), so the priors and predictions are kept."""
    reduced, rows, df = request.getfixturevalue(fits)
    assert f"Number of obs: 3000 (held as the {reduced.model.design.n_obs}" in str(reduced)
    assert "log_likelihood" not in reduced.idata.groups()
    with pytest.raises(SpecError, match=f"holds no log-likelihood.*{holds}.*reduce=False"):
        hb.compare({"reduced": reduced, "rows": rows})
    with pytest.raises(SpecError, match=f"posterior predictive.*{holds}"):
        reduced.posterior_predictive()
    with pytest.raises(SpecError, match=f"Bayesian R.*{holds}"):
        reduced.r2()
    again = hb.load(reduced.save(tmp_path / "fit.nc"))
    d, e = again.model.design, reduced.model.design
    for a, b in [(d.multiplicity, e.multiplicity), (d.summed_offsets, e.summed_offsets)]:
        np.testing.assert_array_equal(a, b)
    assert again.model.priors == reduced.model.priors
    np.testing.assert_allclose(
        again.predict(df.head(5)).values, reduced.predict(df.head(5)).values, rtol=0, atol=0
    )


NESTED, CROSSED = "y ~ x + w + (1 | b/c)", "y ~ x + (x | b) + (1 | d)"


@pytest.fixture(scope="module")
def factor_fits(factors_data, tmp_path_factory) -> dict[str, hb.Fit]:
    """Nested and crossed models from per-cell sums (Parquet through DuckDB) and from rows."""
    path = tmp_path_factory.mktemp("cells") / "data.parquet"
    factors_data.to_parquet(path, index=False)
    settings = {"draws": 200, "tune": 200, "random_seed": 5}
    return {
        "nested sums": quiet_fit(hb.Model(NESTED, path), **settings),
        "nested rows": quiet_fit(hb.Model(NESTED, factors_data), **settings),
        "crossed sums": quiet_fit(hb.Model(CROSSED, path), **settings),
        "crossed rows": quiet_fit(hb.Model(CROSSED, factors_data), **settings),
        "schools sums": quiet_fit(hb.Model("y ~ x + w + (1 | b)", path), **settings),
    }


def test_nested_sums_give_the_draws_of_the_rows(factor_fits):
    """Both levels integrated out: same graph and seed, the draws agree to rounding, the
    exact group effects of both factors included."""
    sums, rows = factor_fits["nested sums"], factor_fits["nested rows"]
    assert sums.model.data is None and sums.model.design.sums.cells is not None
    names = ("Intercept", "x", "w", "sd_b", "sd_b:c", "sigma", "b_b", "b_b:c")
    assert_same_draws(sums, rows, names, 1e-7)


def test_crossed_sums_draw_the_group_effects_of_the_rows(factor_fits):
    """Crossed: the log densities agree (tests/backend/test_marginal_multi.py) but NUTS
    trajectories part at the 1e-12 level, so the draws are compared given one posterior:
    the integrated factor's effects drawn from the sums equal those drawn from the rows."""
    from hierbayes.posterior.complete import add_group_effects

    sums, rows = factor_fits["crossed sums"], factor_fits["crossed rows"]
    assert sums.idata.attrs["parameterization_used"] == rows.idata.attrs["parameterization_used"]
    done = {}
    for name, design in (("sums", sums.model.design), ("rows", rows.model.design)):
        idata = rows.idata.copy()
        del idata.posterior["u_b"], idata.posterior["b_b"]
        add_group_effects(design, idata, np.random.default_rng(3))
        done[name] = idata.posterior["b_b"].values
    np.testing.assert_allclose(done["sums"], done["rows"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["nested", "crossed"])
def test_the_pooling_report_of_cell_sums_is_the_rows(factor_fits, kind):
    """Each factor's no pooling and complete pooling from its groups' sums equal the rows'."""
    a = factor_fits[f"{kind} sums"].pooling().table
    b = factor_fits[f"{kind} rows"].pooling().table
    assert (
        a[["factor", "group", "term"]]
        .astype(str)
        .equals(b[["factor", "group", "term"]].astype(str))
    )
    exact = ["n", "se", "no_pooling", "complete_pooling"]
    np.testing.assert_allclose(a[exact].to_numpy(float), b[exact].to_numpy(float), atol=1e-10)
    if kind == "nested":
        cols = ["partial_pooling", "reliability", "shrinkage"]
        np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-6)


def test_nested_log_likelihood_is_each_schools_marginal_likelihood(factor_fits, factors_data):
    """Nested: log p(y_j) per school with the school's and its classes' effects integrated
    out, checked on the rows of three schools with a multivariate normal density; compared
    by leave-one-school-out with a fit by schools alone."""
    fit = factor_fits["nested sums"]
    ll = fit.idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "b")
    assert fit.idata.attrs["log_likelihood_unit"] == "group of 'b'"
    p = fit.idata.posterior.isel(chain=1, draw=150)
    for school in ("s00", "s05", "s11"):
        rows = factors_data[factors_data["b"] == school]
        X = np.column_stack([np.ones(len(rows)), rows["x"], rows["w"]])
        classes = pd.factorize(rows["c"])[0]
        cov = float(p["sd_b"][0]) ** 2 + float(p["sd_b:c"][0]) ** 2 * (
            classes[:, None] == classes[None, :]
        )
        cov = cov + float(p["sigma"]) ** 2 * np.eye(len(rows))
        mean = X @ [float(p[name]) for name in ("Intercept", "x", "w")]
        expected = multivariate_normal(mean, cov).logpdf(rows["y"].to_numpy())
        got = float(ll.isel(chain=1, draw=150).sel(b=school))
        np.testing.assert_allclose(got, expected, rtol=1e-6)  # stored as float32
    with warnings.catch_warnings():  # 2 x 200 draws: R-hat, ESS and Pareto k are not under test
        warnings.simplefilter("ignore", hb.SamplingWarning)
        table = hb.compare({"classes": fit, "schools": factor_fits["schools sums"]})
    assert table.index[0] == "classes" and table.loc["schools", "elpd_diff"] > 10, table


def test_crossed_cell_sums_have_no_log_likelihood_and_say_so(factor_fits):
    fit, rows = factor_fits["crossed sums"], factor_fits["crossed rows"]
    assert "log_likelihood" not in fit.idata.groups()
    assert fit.idata.observed_data["y"].dims == ("cell", "statistic")
    with pytest.raises(SpecError, match="crossed factors has no log-likelihood.*reduce=False"):
        hb.compare({"sums": fit, "rows": rows})
    with pytest.raises(SpecError, match="log_likelihood=True: .*crossed factors"):
        fit.model.fit(log_likelihood=True)  # refused before sampling


def test_nested_cell_sums_save_load_and_predict(factor_fits, factors_data, tmp_path):
    fit, rows = factor_fits["nested sums"], factor_fits["nested rows"]
    new = factors_data.sample(7, random_state=2)
    np.testing.assert_allclose(
        fit.predict(new, random_seed=1).values, rows.predict(new, random_seed=1).values, atol=1e-6
    )
    again = hb.load(fit.save(tmp_path / "fit.nc"))
    np.testing.assert_array_equal(again.model.design.sums.gram, fit.model.design.sums.gram)
    np.testing.assert_array_equal(again.model.design.sums.cells, fit.model.design.sums.cells)
    pd.testing.assert_frame_equal(again.pooling().table, fit.pooling().table)
    assert again.idata.attrs["log_likelihood_unit"] == "group of 'b'"
