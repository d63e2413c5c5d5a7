"""The intercept shear (hierbayes.backend.graph): a crossed ``(1 | f)`` factor's mean sampled
with the intercept. Structural checks (an exact change of variables) and, in the slow tier,
agreement of the sampled posterior with the non-centered one."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend.graph import build_model, householder
from hierbayes.backend.initial import jitter_scales
from hierbayes.backend.plan import plan, shear_factors

from .conftest import assert_change_of_variables, assert_posteriors_agree

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


def sheared_point(
    design, p: dict, name: str, centered: bool, owner: str | None = None
) -> dict[str, np.ndarray]:
    """The point of the sheared graph that is ``p`` of the plain graph (graph docstring):
    factor ``name`` sheared, ``owner`` the factor whose centered effects carry the intercept."""
    f = next(f for f in design.factors if f.name == name)
    J = f.n_groups
    sd = float(np.exp(p[f"sd_{name}_log__"])[0])
    beta = np.array([p[n] for n in design.fixed_names])
    m = f.W[:, 0, f.owns] @ beta[f.owns] if f.owns.any() else np.zeros(J)  # level-2 mean
    u = p[f"b_{name}"][:, 0] - m if centered else sd * p[f"z_{name}"][:, 0]
    H = np.eye(J) - 2 * np.outer(householder(J), householder(J))
    q = {k: v for k, v in p.items() if k not in ("Intercept", f"b_{name}", f"z_{name}")}
    if centered:
        q[f"b_{name}_contrast"] = (H @ (m + u))[:-1]
    else:
        q[f"z_{name}_contrast"] = (H @ u)[:-1] / sd
    q[f"zbar_{name}"] = np.sqrt(J) * u.mean() / sd
    q["Intercept_shifted"] = p["Intercept"] + u.mean()
    for var in (f"b_{owner}", f"b_{owner}_centered"):  # centered around the shifted intercept
        if var in q:
            q[f"{var}_shifted"] = q.pop(var) + u.mean()
    return q


def check_change_of_variables(plain, sheared, design, name, centered, owner, reported):
    """``sheared`` is ``plain`` in other coordinates, with log sd added to the log density
    when ``name`` is centered (the Jacobian of u -> (contrasts, zbar); non-centered,
    z -> (z contrasts, zbar) is a rotation)."""
    assert_change_of_variables(
        plain,
        sheared,
        lambda p: sheared_point(design, p, name, centered, owner),
        reported,
        lambda p: p[f"sd_{name}_log__"][0] if centered else 0.0,
    )


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize(
    "item, subject",
    [
        ("centered", "centered"),
        ("non-centered", "non-centered"),
        ("centered", "mixed"),
        ("non-centered", "mixed"),
    ],
)
def test_shear_is_an_exact_change_of_variables(model, item, subject):
    """The sheared graph is the plain one in other coordinates (check_change_of_variables)."""
    d = model.design
    masks = {"centered": True, "non-centered": False}
    graph = {
        "subject": np.arange(40) < 20 if subject == "mixed" else np.full(40, masks[subject]),
        "item": np.full(8, masks[item]),
    }
    assert shear_factors(d, graph) == ("item",)
    plain = build_model(d, model.priors, parameterization=graph)
    sheared = build_model(d, model.priors, parameterization=graph, shear=("item",))
    reported = ["Intercept", "b_subject", "u_subject", "b_item", "u_item"]
    check_change_of_variables(plain, sheared, d, "item", masks[item], "subject", reported)


def crossed_gaussian(seed: int, n_plate: int = 12, n_sample: int = 6) -> pd.DataFrame:
    """Penicillin's shape: plates crossed with samples, one row per pair; intercept 23,
    plate SD 0.85, sample SD 1.9, residual SD 0.55."""
    rng = np.random.default_rng(seed)
    plate = np.repeat(np.arange(n_plate), n_sample)
    sample = np.tile(np.arange(n_sample), n_plate)
    u, v = rng.normal(0, 0.85, n_plate), rng.normal(0, 1.9, n_sample)
    y = 23 + u[plate] + v[sample] + rng.normal(0, 0.55, plate.size)
    return pd.DataFrame(
        {"plate": [f"p{i:02d}" for i in plate], "sample": [f"s{i}" for i in sample], "y": y}
    )


@pytest.mark.usefixtures("python_graphs")
@pytest.mark.parametrize("centered", [True, False])
def test_marginal_crossed_shear_is_an_exact_change_of_variables(centered):
    """Crossed Gaussian: the plates (the most groups, carrying the intercept) integrated
    out, the samples sampled under the shear; auto samples them centered (informative)."""
    m = hb.Model("y ~ 1 + (1 | plate) + (1 | sample)", crossed_gaussian(2))
    assert m.plan.describe() == (
        "auto: plate marginal; sample centered, mean sampled with the intercept"
    )
    assert m.plan.shear == ("sample",) and m.plan.sampled["sample"].all()
    mask = {"sample": np.full(6, centered)}
    d = m.design
    plain = build_model(d, m.priors, parameterization="marginal", centered=mask)
    sheared = build_model(
        d, m.priors, parameterization="marginal", centered=mask, shear=("sample",)
    )
    reported = ["Intercept", "b_sample", "u_sample"]
    check_change_of_variables(plain, sheared, d, "sample", centered, None, reported)
    # explicit "marginal" keeps the sampled factors non-centered and unsheared
    explicit = plan(d, "marginal")
    assert explicit.shear == () and explicit.sampled == {}


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


CASES = {
    "bernoulli": (FORMULA, lambda: crossed_bernoulli(11, n_subject=60, n_item=12), "item"),
    "gaussian": ("y ~ 1 + (1 | plate) + (1 | sample)", lambda: crossed_gaussian(12), "sample"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_sheared_and_non_centered_posteriors_agree(case):
    """auto (one factor sheared; the Gaussian's other factor integrated out) against the
    non-centered graph, 4 x 500 draws each: each scalar's and each of the sheared factor's
    effects' posterior means differ by less than 4 MCSE.

    (The Gaussian's six sample effects once differed by 0.09 each, all alike: they share
    the intercept's uncertainty, so a fixed 0.05 was tighter than Monte Carlo error.)"""
    formula, simulate, name = CASES[case]
    df = simulate()
    family = "gaussian" if case == "gaussian" else "bernoulli"
    fits = {}
    for p in ("auto", "non-centered"):
        m = hb.Model(formula, df, family=family, parameterization=p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hb.SamplingWarning)
            fits[p] = m.fit(draws=500, tune=500, chains=4, random_seed=4, progressbar=False)
    assert fits["auto"].model.plan.shear == (name,)
    a, b = (fits[p].idata for p in ("auto", "non-centered"))
    scalars = [v for v in b.posterior.data_vars if b.posterior[v].ndim == 2]
    sds = [f"sd_{f.name}" for f in fits["auto"].model.design.factors]
    assert_posteriors_agree(a, b, [*scalars, *sds, f"u_{name}"])
    assert fits["auto"].diagnostics.divergences == 0
