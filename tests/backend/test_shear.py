"""The intercept shear (hierbayes.backend.graph): a crossed ``(1 | f)`` factor's mean sampled
with the intercept. Structural checks (an exact change of variables) and, in the slow tier,
agreement of the sampled posterior with the non-centered one."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend.graph import build_model, householder
from hierbayes.backend.initial import jitter_scales
from hierbayes.backend.plan import plan, shear_factors

FORMULA = "y ~ anger + mode + (1 | subject) + (1 | item)"


def crossed_bernoulli(seed: int, n_subject: int = 40, n_item: int = 8) -> pd.DataFrame:
    """Subjects crossed with items, a subject-level ``anger`` and an item-level ``mode``:
    intercept -0.2, coefficients 0.4 and -0.7, subject SD 1.3, item SD 0.6."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subject), n_item)
    item = np.tile(np.arange(n_item), n_subject)
    anger = rng.normal(size=n_subject)[subject]
    mode = np.tile([-0.5, 0.5], n_item // 2)[item]
    u, v = rng.normal(0, 1.3, n_subject), rng.normal(0, 0.6, n_item)
    eta = -0.2 + 0.4 * anger - 0.7 * mode + u[subject] + v[item]
    return pd.DataFrame(
        {
            "subject": [f"s{i:02d}" for i in subject],
            "item": [f"i{i}" for i in item],
            "anger": anger,
            "mode": mode,
            "y": rng.binomial(1, 1 / (1 + np.exp(-eta))),
        }
    )


@pytest.fixture(scope="module")
def model() -> hb.Model:
    return hb.Model(FORMULA, crossed_bernoulli(3), family="bernoulli")


def test_auto_shears_the_factor_that_does_not_carry_the_intercept(model):
    assert model.plan.shear == ("item",)
    assert model.plan.describe() == (
        "auto: subject mixed (38 centered, 2 non-centered); "
        "item centered, mean sampled with the intercept"
    )
    # what the other requests and the wrong shapes of model keep
    df = model.data
    assert plan(model.design, "centered").shear == ()
    assert plan(model.design, "auto", shear=False).shear == ()
    one = hb.Model("y ~ anger + (1 | item)", df, family="bernoulli")
    assert one.plan.shear == ()
    slopes = hb.Model("y ~ anger + (1 | subject) + (1 + anger | item)", df, family="bernoulli")
    assert slopes.plan.shear == ()
    no_intercept = hb.Model("y ~ 0 + anger + (1 | subject) + (1 | item)", df, family="bernoulli")
    assert no_intercept.plan.shear == ()
    mixed = dict(model.plan.graph, item=np.arange(8) < 4)
    assert shear_factors(model.design, mixed) == ()


def plain_point(graph, rng) -> dict[str, np.ndarray]:
    """A random point of the unsheared graph, on the unconstrained scale."""
    return {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in graph.initial_point().items()}


def sheared_point(design, p: dict, forms: dict[str, str]) -> dict[str, np.ndarray]:
    """The point of the sheared graph that is ``p`` of the plain graph (graph docstring)."""
    item = design.factors[1]
    J = item.n_groups
    sd = float(np.exp(p["sd_item_log__"])[0])
    m = item.W[:, 0, item.owns] @ np.atleast_1d(p["mode"])  # item's level-2 mean, (J,)
    u = p["b_item"][:, 0] - m if forms["item"] == "centered" else sd * p["z_item"][:, 0]
    H = np.eye(J) - 2 * np.outer(householder(J), householder(J))
    q = {k: v for k, v in p.items() if k not in ("Intercept", "b_item", "z_item")}
    if forms["item"] == "centered":
        q["b_item_contrast"] = (H @ (m + u))[:-1]
    else:
        q["z_item_contrast"] = (H @ u)[:-1] / sd
    q["zbar_item"] = np.sqrt(J) * u.mean() / sd
    q["Intercept_shifted"] = p["Intercept"] + u.mean()
    for name in ("b_subject", "b_subject_centered"):  # centered around the shifted intercept
        if name in q:
            q[f"{name}_shifted"] = q.pop(name) + u.mean()
    return q


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize("subject", ["centered", "non-centered", "mixed"])
@pytest.mark.parametrize("item", ["centered", "non-centered"])
def test_shear_is_an_exact_change_of_variables(model, subject, item):
    """At matching points the sheared graph's log density is the plain one's (plus log sd_item,
    the Jacobian of u -> (contrasts, zbar), when centered), and every reported variable is
    the same."""
    d = model.design
    masks = {"centered": True, "non-centered": False}
    graph = {
        "subject": np.arange(40) < 20 if subject == "mixed" else np.full(40, masks[subject]),
        "item": np.full(8, masks[item]),
    }
    assert shear_factors(d, graph) == ("item",)
    plain = build_model(d, model.priors, parameterization=graph)
    sheared = build_model(d, model.priors, parameterization=graph, shear=("item",))
    rng = np.random.default_rng(7)
    for _ in range(3):
        p = plain_point(plain, rng)
        q = sheared_point(d, p, {"item": item})
        assert sorted(q) == sorted(sheared.initial_point())
        # u -> (contrasts, zbar) has Jacobian sd_item; z -> (z contrasts, zbar) is a rotation
        log_sd = p["sd_item_log__"][0] if item == "centered" else 0.0
        np.testing.assert_allclose(
            sheared.compile_logp()(q), plain.compile_logp()(p) + log_sd, rtol=1e-12
        )
        reported = ["Intercept", "b_subject", "u_subject", "b_item", "u_item"]

        def values(g, point, reported=reported):
            outputs = g.replace_rvs_by_values([g[n] for n in reported])
            fn = g.compile_fn(outputs, inputs=g.value_vars, on_unused_input="ignore")
            return fn(point)

        for name, a, b in zip(reported, values(sheared, q), values(plain, p), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.usefixtures("python_graphs")
def test_sheared_graph_names_and_starts(model):
    g = model.build()
    assert sorted(v.name for v in g.free_RVs) == sorted(
        [
            "Intercept_shifted",
            "anger",
            "mode",
            "sd_subject",
            "b_subject_centered_shifted",  # auto's mixed plan for the subjects
            "z_subject",
            "sd_item",
            "zbar_item",
            "b_item_contrast",
        ]
    )
    assert g.coords["item_contrast"] == tuple(range(1, 8))
    assert g.named_vars_to_dims["b_item"] == ("item", "item_term")
    assert {"Intercept", "b_subject", "u_subject", "b_item", "u_item"} <= set(g.named_vars)
    # the prior predictive draws from the plain graph: a Potential is not a prior draw
    prior = model.prior_predictive(draws=200, random_seed=1).prior
    assert "Intercept_shifted" not in prior and "Intercept" in prior
    np.testing.assert_allclose(float(prior["Intercept"].std()), 2.5, rtol=0.15)
    # large-scale predictors: the coefficient scales follow the intercept to its new name
    big = model.data.assign(anger=100 * model.data["anger"])
    design = hb.Model(FORMULA, big, family="bernoulli").design
    assert list(jitter_scales(design, sheared=True)) == ["Intercept_shifted", "anger", "mode"]


def test_a_column_cannot_take_the_shears_names():
    df = crossed_bernoulli(1).rename(columns={"anger": "Intercept_shifted"})
    with pytest.raises(hb.SpecError, match="Intercept_shifted"):
        hb.Model("y ~ Intercept_shifted + (1 | subject) + (1 | item)", df, family="bernoulli")


@pytest.mark.slow
def test_sheared_and_non_centered_posteriors_agree():
    """auto (item sheared) against the non-centered graph, 4 x 500 draws each: each scalar's
    posterior means differ by less than 4 MCSE, the item effects' by less than 0.05."""
    df = crossed_bernoulli(11, n_subject=60, n_item=12)
    fits = {}
    for p in ("auto", "non-centered"):
        m = hb.Model(FORMULA, df, family="bernoulli", parameterization=p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hb.SamplingWarning)
            fits[p] = m.fit(draws=500, tune=500, chains=4, random_seed=4, progressbar=False)
    assert fits["auto"].model.plan.shear == ("item",)

    names = ["Intercept", "anger", "mode", "sd_subject", "sd_item"]
    for name in names:
        a, b = (fits[p].idata for p in ("auto", "non-centered"))
        mcse = np.hypot(*(az.mcse(x, var_names=[name])[name].item() for x in (a, b)))
        diff = a.posterior[name].mean().item() - b.posterior[name].mean().item()
        assert abs(diff) / mcse < 4.0, name
    u = fits["auto"].idata.posterior["u_item"].mean(("chain", "draw"))
    u_nc = fits["non-centered"].idata.posterior["u_item"].mean(("chain", "draw"))
    np.testing.assert_allclose(u, u_nc, atol=0.05)
    assert fits["auto"].diagnostics.divergences == 0
