"""fixef, ranef, coef, varcorr, ICC and R²: layout on fake posteriors, numbers against
references (REML, a direct computation from predictions, OLS)."""

from __future__ import annotations

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.analysis import tidy, variance
from hierbayes.errors import SpecError
from tests.conftest import quiet_fit


@pytest.fixture(scope="module")
def slopes_design():
    df = hb.datasets.load("exam")
    return hb.Model("normexam ~ standLRT + (standLRT | school)", df).design


def fake_posterior(design, rng, S=(2, 50)):
    """Draws of every variable a fit of ``design`` holds, with known values."""
    f = design.factors[0]
    J, q = f.n_groups, len(f.terms)
    corr = np.broadcast_to(np.array([[1.0, 0.3], [0.3, 1.0]]), (*S, q, q))
    return az.from_dict(
        posterior={
            **{n: rng.normal(k, 0.1, S) for k, n in enumerate(design.fixed_names)},
            f"sd_{f.name}": np.abs(rng.normal([0.3, 0.1], 0.01, (*S, q))),
            f"corr_{f.name}": corr,
            f"u_{f.name}": rng.normal(size=(*S, J, q)),
            f"b_{f.name}": rng.normal(size=(*S, J, q)),
            "sigma": np.abs(rng.normal(0.75, 0.01, S)),
        },
        coords={f.name: list(f.levels), f.term_dim: list(f.terms), f"{f.term_dim}2": list(f.terms)},
        dims={
            f"sd_{f.name}": [f.term_dim],
            f"corr_{f.name}": [f.term_dim, f"{f.term_dim}2"],
            f"u_{f.name}": [f.name, f.term_dim],
            f"b_{f.name}": [f.name, f.term_dim],
        },
    )


def test_tables_lay_out_every_term_group_and_pair(slopes_design):
    idata = fake_posterior(slopes_design, np.random.default_rng(1))
    fixed = tidy.fixef(slopes_design, idata)
    assert fixed.index.tolist() == ["Intercept", "standLRT"]
    np.testing.assert_allclose(fixed["mean"], [0.0, 1.0], atol=0.05)
    for table, name in (
        (tidy.ranef(slopes_design, idata), "u"),
        (tidy.coef(slopes_design, idata), "b"),
    ):
        assert table.columns.tolist() == [
            "factor",
            "group",
            "term",
            "mean",
            "sd",
            "hdi_lower",
            "hdi_upper",
        ]
        assert len(table) == 65 * 2
        # the row of school 48's slope holds the mean of that variable's draws
        row = table[(table.group == 48) & (table.term == "standLRT")].iloc[0]
        values = idata.posterior[f"{name}_school"].sel(school=48, school_term="standLRT")
        np.testing.assert_allclose(row["mean"], float(values.mean()))
        assert row.hdi_lower <= row["mean"] <= row.hdi_upper
    vc = tidy.varcorr(slopes_design, idata)
    assert vc[["factor", "quantity", "term"]].values.tolist() == [
        ["school", "sd", "Intercept"],
        ["school", "sd", "standLRT"],
        ["school", "corr", "Intercept, standLRT"],
        ["Residual", "sd", "sigma"],
    ]
    np.testing.assert_allclose(vc["mean"], [0.3, 0.1, 0.3, 0.75], atol=0.01)
    assert vc["reml"].isna().all()  # no REML fit given


def test_varcorr_puts_reml_beside_the_posterior(slopes_design):
    """REML column: lme4's published VarCorr of the Exam random-slopes model."""
    eb = hb.empirical_bayes(slopes_design)
    idata = fake_posterior(slopes_design, np.random.default_rng(2))
    reml = tidy.varcorr(slopes_design, idata, eb=eb).set_index(["factor", "term"])["reml"]
    # lme4: school variances 0.092118 and 0.014967 (SDs 0.3035, 0.1223), corr 0.49,
    # residual variance 0.553641 (SD 0.7441)
    np.testing.assert_allclose(
        reml.loc[[("school", "Intercept"), ("school", "standLRT"), ("Residual", "sigma")]],
        [0.3035, 0.1223, 0.7441],
        atol=0.0005,
    )
    np.testing.assert_allclose(reml.loc[("school", "Intercept, standLRT")], 0.49, atol=0.01)


def test_icc_of_a_fake_posterior_is_the_variance_ratio(slopes_design):
    """V_f = trace(T Z'Z / N): with sd (0.3, 0.1), corr 0.3 and Exam's standLRT column."""
    idata = fake_posterior(slopes_design, np.random.default_rng(3))
    draws = variance.icc_draws(slopes_design, idata)["school"]
    z = slopes_design.factors[0].Z
    sd = idata.posterior["sd_school"].values.reshape(-1, 2)
    T = sd[:, :, None] * np.array([[1.0, 0.3], [0.3, 1.0]]) * sd[:, None, :]
    V = np.einsum("ni,sij,nj->s", z, T, z) / len(z)
    sigma2 = idata.posterior["sigma"].values.ravel() ** 2
    np.testing.assert_allclose(draws, V / (V + sigma2), rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "gamma"}, "the gamma family with the log link has no residual variance"),
        ({"se": "s"}, "known standard errors"),
    ],
)
def test_icc_refused_where_it_is_not_defined(kwargs, message):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.gamma(2.0, size=60), "g": np.repeat(list("abcdef"), 10), "s": 1.0})
    design = hb.Model("y ~ 1 + (1 | g)", df, **kwargs).design
    idata = az.from_dict(posterior={"Intercept": np.zeros((1, 5)), "sd_g": np.ones((1, 5, 1))})
    with pytest.raises(SpecError, match=message):
        variance.icc(design, idata)


@pytest.fixture(scope="module")
def exam_intercept_fit():
    df = hb.datasets.load("exam")
    return quiet_fit(hb.Model("normexam ~ standLRT + (1 | school)", df), random_seed=5)


def test_r2_conditional_is_the_direct_computation_from_predictions(exam_intercept_fit):
    fit = exam_intercept_fit
    mu = fit.predict(fit.model.data).values.reshape(-1, fit.model.design.n_obs)
    y = fit.model.design.y
    direct = mu.var(axis=1, ddof=1) / (mu.var(axis=1, ddof=1) + (y - mu).var(axis=1, ddof=1))
    np.testing.assert_allclose(
        variance.r2_draws(fit.model.design, fit.idata)["conditional"], direct, rtol=1e-10
    )
    table = fit.r2()
    assert table.index.tolist() == ["conditional", "marginal"]
    assert table.loc["marginal", "mean"] < table.loc["conditional", "mean"]


def test_r2_marginal_is_that_of_the_reml_population_line(exam_intercept_fit):
    """The population line alone: at lme4's REML estimates (Intercept 0.002323, standLRT
    0.563307) var(X beta) / (var(X beta) + var(y - X beta)) is 0.325 on the Exam data (OLS,
    whose slope is steeper, gives 0.350); the posterior mean is within 0.01 of it."""
    df = exam_intercept_fit.model.data
    line = 0.002323 + 0.563307 * df["standLRT"].to_numpy()
    fit_var, res_var = line.var(ddof=1), (df["normexam"].to_numpy() - line).var(ddof=1)
    reference = fit_var / (fit_var + res_var)
    np.testing.assert_allclose(reference, 0.325, atol=0.0005)
    np.testing.assert_allclose(
        exam_intercept_fit.r2().loc["marginal", "mean"], reference, atol=0.01
    )


def test_icc_of_exam_schools_matches_the_published_reml_figure(exam_intercept_fit):
    """Exam ``normexam ~ standLRT + (1 | school)``: lme4's REML school variance 0.0938 and
    residual variance 0.5659 give ICC 0.0938 / (0.0938 + 0.5659) = 0.142; the posterior
    mean lies within one posterior SD of it."""
    reference = 0.0938 / (0.0938 + 0.5659)
    table = exam_intercept_fit.icc()
    assert table.index.tolist() == ["school"]
    assert abs(table.loc["school", "mean"] - reference) < table.loc["school", "sd"]
    assert table.loc["school", "hdi_lower"] < reference < table.loc["school", "hdi_upper"]


@pytest.mark.parametrize(
    ("family", "link", "residual"),
    [
        ("bernoulli", "logit", lambda tau2, b0: np.pi**2 / 3),
        ("bernoulli", "probit", lambda tau2, b0: 1.0),
        ("bernoulli", "cloglog", lambda tau2, b0: np.pi**2 / 6),
        # Nakagawa et al. (2017): log(1 + 1 / lambda), lambda = exp(b0 + tau^2 / 2)
        ("poisson", "log", lambda tau2, b0: np.log1p(np.exp(-(b0 + tau2 / 2)))),
    ],
)
def test_icc_of_glms_is_on_the_latent_scale(family, link, residual):
    rng = np.random.default_rng(8)
    g = np.repeat([f"g{k}" for k in range(8)], 12)
    y = rng.integers(0, 2, g.size) if family == "bernoulli" else rng.poisson(3.0, g.size)
    design = hb.Model(
        "y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": g}), family=family, link=link
    ).design
    sd, b0 = rng.uniform(0.2, 1.5, (1, 40)), rng.normal(1.0, 0.1, (1, 40))
    idata = az.from_dict(posterior={"Intercept": b0, "sd_g": sd[..., None]})
    tau2 = sd.ravel() ** 2
    expected = tau2 / (tau2 + residual(tau2, b0.ravel()))
    np.testing.assert_allclose(variance.icc_draws(design, idata)["g"], expected, rtol=1e-12)


def test_posterior_predictive_replicates_the_data(regression_fit):
    """The replicated data sets have the data's mean and spread, and ArviZ reads the group."""
    idata = regression_fit.posterior_predictive(random_seed=4)
    y_rep = idata.posterior_predictive["y"]
    assert y_rep.dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(y_rep["obs"], idata.observed_data["obs"])
    y = idata.observed_data["y"].values
    reps = y_rep.values.reshape(-1, y.size)
    # each replicated mean scatters about the data's mean by about sd(y) / sqrt(N)
    np.testing.assert_allclose(reps.mean(), y.mean(), atol=2 * y.std() / np.sqrt(y.size))
    np.testing.assert_allclose(reps.std(axis=1).mean(), y.std(), rtol=0.05)
    # the Bayesian p-value of the mean is not extreme
    p_mean = (reps.mean(axis=1) > y.mean()).mean()
    assert 0.05 < p_mean < 0.95
    again = regression_fit.posterior_predictive(random_seed=4)
    np.testing.assert_array_equal(again.posterior_predictive["y"].values, y_rep.values)


def test_printed_fit_follows_lme4s_summary_layout(regression_fit):
    text = repr(regression_fit)
    headings = ["Formula: y ~ x + (1 | g)", "Random effects:", "Number of obs: 413, groups: g, 30",
                "Fixed effects:", "Diagnostics:"]  # fmt: skip
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    fixed = regression_fit.fixef()
    vc = regression_fit.varcorr().set_index(["factor", "term"])
    for line, value in [
        (" x ", fixed.loc["x", "mean"]),
        (" g ", vc.loc[("g", "Intercept"), "mean"]),
        (" Residual ", vc.loc[("Residual", "sigma"), "mean"]),
    ]:
        row = next(r for r in text.splitlines() if r.startswith(line))
        assert f"{value:.4g}" in row.split()
    summary = regression_fit.summary()  # shown as print(fit); ArviZ's table behind it
    assert str(summary) == text
    np.testing.assert_allclose(summary.table.loc["x", "mean"], fixed.loc["x", "mean"], atol=0.005)
    assert summary.table.loc["x", "r_hat"] < 1.05 and summary.table.loc["x", "ess_bulk"] > 50


def test_ppc_views_show_the_data_and_the_replicates():
    from hierbayes.analysis.plots import plot_ppc

    rng = np.random.default_rng(9)
    counts = rng.poisson(3.0, 200).astype(float)
    fig = plot_ppc(counts, rng.poisson(3.0, (50, 200)).astype(float), "bars", response="n")
    (ax,) = fig.axes
    heights = {round(p.get_x() + p.get_width() / 2): p.get_height() for p in ax.patches}
    for value, height in heights.items():  # the bars are the data's frequencies
        np.testing.assert_allclose(height, np.mean(counts == value))
    y = rng.integers(0, 2, 300).astype(float)
    p = np.clip(y * 0.6 + 0.2 + rng.normal(0, 0.05, 300), 0.01, 0.99)
    fig = plot_ppc(y, rng.binomial(1, p, (40, 300)).astype(float), "calibration", predicted=p)
    line = fig.axes[0].lines[1]  # observed proportion per bin of predicted probability
    order = np.argsort(p)
    expected = [y[b].mean() for b in np.array_split(order, 10)]
    np.testing.assert_allclose(line.get_ydata(), expected)
    with pytest.raises(SpecError, match="view must be one of"):
        plot_ppc(y, y[None], "violin")
    plt.close("all")


def test_plot_ppc_of_a_fit_chooses_the_view_and_adds_the_group(regression_fit):
    fig = regression_fit.plot_ppc(draws=20, random_seed=1)
    assert fig.axes[0].get_ylabel() == "density"
    assert regression_fit.idata.posterior_predictive.sizes["draw"] == 20
    plt.close(fig)


def test_effects_population_line_and_group_curves_are_the_posterior_means(regression_fit):
    """y ~ x + (1 | g): the population line is Intercept + beta x, a group's curve
    b_g + beta x, per draw; the table holds their posterior means and HDIs."""
    post = regression_fit.idata.posterior
    intercept, slope = (post[n].values.ravel() for n in ("Intercept", "x"))
    table = regression_fit.effects("x")
    assert table.columns.tolist() == ["x", "mean", "hdi_lower", "hdi_upper"]
    data = regression_fit.model.data
    np.testing.assert_allclose(table["x"].iloc[[0, -1]], [data.x.min(), data.x.max()])
    line = intercept[:, None] + slope[:, None] * table["x"].to_numpy()
    np.testing.assert_allclose(table["mean"], line.mean(axis=0), rtol=1e-10)
    assert (table.hdi_lower < table["mean"]).all() and (table["mean"] < table.hdi_upper).all()
    groups = regression_fit.effects("x", by="g", groups=["g03", "g07"], predictive=True)
    for label, rows in groups.groupby("g"):
        b = post["b_g"].sel(g=label).values.reshape(-1)
        curve = b[:, None] + slope[:, None] * rows["x"].to_numpy()
        np.testing.assert_allclose(rows["mean"], curve.mean(axis=0), rtol=1e-10)
        # a new observation's interval is wider than the expected response's
        assert (
            rows.predictive_upper - rows.predictive_lower > rows.hdi_upper - rows.hdi_lower
        ).all()
    fig = regression_fit.plot_effects("x", by="g", groups=["g03", "g07"])
    assert [line.get_label() for line in fig.axes[0].lines] == ["g = g03", "g = g07"]
    plt.close(fig)


def test_effects_of_a_categorical_predictor_and_a_numeric_by(regression_data):
    """On a fake posterior: a categorical x's levels, and by= a numeric column at its mean
    and mean +- 1 SD."""
    df = regression_data.assign(
        k=np.where(regression_data.x > 0, "hi", "lo"), w=regression_data.x**2
    )
    model = hb.Model("y ~ k + w + (1 | g)", df)
    d = model.design
    rng = np.random.default_rng(0)
    post = {n: rng.normal(k + 1.0, 0.01, (1, 40)) for k, n in enumerate(d.fixed_names)}
    post |= {
        "u_g": np.zeros((1, 40, 30, 1)),
        "sd_g": np.ones((1, 40, 1)),
        "sigma": np.ones((1, 40)),
    }
    idata = az.from_dict(posterior=post, dims={"u_g": ["g", "g_term"], "sd_g": ["g_term"]})
    from hierbayes.analysis.effects import effects

    table = effects(idata, df, d, model.spec, "k", by="w")
    assert table["k"].tolist() == ["hi", "lo"] * 3
    w = df.w.mean() + np.array([-1, 0, 1]) * df.w.std()
    np.testing.assert_allclose(table["w"].unique(), w)
    names = list(d.fixed_names)  # Intercept, k[lo], w: means 1, 2, 3
    assert names == ["Intercept", "k[lo]", "w"]
    expected = 1.0 + 2.0 * (table["k"] == "lo") + 3.0 * table["w"]
    np.testing.assert_allclose(table["mean"], expected, atol=0.05)
    with pytest.raises(SpecError, match="not a column the model reads"):
        effects(idata, df, d, model.spec, "nope")
    with pytest.raises(SpecError, match="name the groups"):
        effects(idata, df, d, model.spec, "w", by="g")


def test_grouped_ppc_has_a_panel_per_group_with_its_rows(regression_fit):
    fig = regression_fit.plot_ppc(group="g", groups=["g00", "g05"], draws=20, random_seed=2)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    data = regression_fit.model.data
    sizes = data.groupby("g").size()
    assert [ax.get_title() for ax in shown] == [f"{g} ({sizes[g]} rows)" for g in ("g00", "g05")]
    plt.close(fig)
    fig = regression_fit.plot_ppc(group="g", draws=20, random_seed=2)  # the six largest groups
    titles = [ax.get_title().split(" ")[0] for ax in fig.axes if ax.get_visible()]
    assert sorted(sizes[titles]) == sorted(sizes.nlargest(6))  # (ties may pick either)
    plt.close(fig)
    with pytest.raises(SpecError, match="not a column"):
        regression_fit.plot_ppc(group="nope")


def test_arviz_table_lists_each_correlation_once(regression_data):
    """corr_<f>[a, b] once per pair (lower triangle), with ArviZ's own numbers for it."""
    df = regression_data.assign(w=regression_data["x"] ** 3)
    model = hb.Model("y ~ x + w + (x + w | g)", df)
    rng = np.random.default_rng(5)
    terms = ["Intercept", "x", "w"]
    corr = np.tile(np.eye(3), (2, 40, 1, 1))
    for a, b in ((1, 0), (2, 0), (2, 1)):
        corr[..., a, b] = corr[..., b, a] = rng.uniform(-0.9, 0.9, (2, 40))
    post = {
        "Intercept": rng.normal(size=(2, 40)),
        "x": rng.normal(size=(2, 40)),
        "w": rng.normal(size=(2, 40)),
        "sd_g": np.abs(rng.normal(size=(2, 40, 3))),
        "corr_g": corr,
        "sigma": np.abs(rng.normal(size=(2, 40))),
    }
    idata = az.from_dict(
        posterior=post,
        dims={"sd_g": ["g_term"], "corr_g": ["g_term", "g_term2"]},
        coords={"g_term": terms, "g_term2": terms},
    )
    table = tidy.arviz_table(model.design, idata)
    assert table.index.tolist() == [
        "Intercept",
        "x",
        "w",
        "sd_g[Intercept]",
        "sd_g[x]",
        "sd_g[w]",
        "corr_g[Intercept, x]",
        "corr_g[Intercept, w]",
        "corr_g[x, w]",
        "sigma",
    ]
    np.testing.assert_allclose(
        table.loc["corr_g[Intercept, w]", "mean"], corr[..., 2, 0].mean(), atol=5e-4
    )
    np.testing.assert_allclose(
        table.loc["corr_g[x, w]", "sd"], corr[..., 2, 1].std(ddof=1), atol=5e-4
    )
