"""Nested centering (hierbayes.backend.graph): a ``(1 | f)`` factor inside another sampled
around its enclosing group's coefficient. Structural checks (who owns the level-2
predictors, what auto plans, an exact change of variables) and, in the slow tier, agreement
of the sampled posterior with the non-centered one."""

import warnings
from functools import partial

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend.graph import build_model
from hierbayes.backend.plan import nested_factors, plan
from hierbayes.spec.terms import nesting

from .conftest import assert_change_of_variables, assert_posteriors_agree

FORMULA = "y ~ x + (1 | brood) + (1 | location)"


def broods(seed: int, n_location: int = 12, per: int = 3, chicks: int = 4) -> pd.DataFrame:
    """grouseticks' shape: counts of chicks in broods inside locations, a location-level
    ``x``; intercept log 3, coefficient -0.5, brood SD 0.6, location SD 0.8."""
    rng = np.random.default_rng(seed)
    brood = np.repeat(np.arange(n_location * per), chicks)
    location = brood // per
    x = rng.normal(size=n_location)[location]
    eta = np.log(3.0) - 0.5 * x + rng.normal(0, 0.6, n_location * per)[brood]
    eta += rng.normal(0, 0.8, n_location)[location]
    return pd.DataFrame(
        {
            "brood": [f"b{i:02d}" for i in brood],
            "location": [f"l{i:02d}" for i in location],
            "x": x,
            "y": rng.poisson(np.exp(eta)),
        }
    )


@pytest.fixture(scope="module")
def model() -> hb.Model:
    return hb.Model(FORMULA, broods(1), family="poisson")


def test_the_enclosing_factor_owns_its_level_two_predictors(model):
    """Formula order gives way to nesting: the locations own the intercept and the
    location-level x whichever factor the formula names first, as (1 | location/brood)."""
    owns = {f.name: f.owns.tolist() for f in model.design.factors}
    assert owns == {"brood": [False, False], "location": [True, True]}
    spelled = hb.Model("y ~ x + (1 | location/brood)", model.data, family="poisson")
    assert [f.owns.tolist() for f in spelled.design.factors] == [[True, True], [False, False]]


def test_auto_samples_the_broods_around_their_location(model):
    d = model.design
    assert model.plan.nested == {"brood": "location"} and model.plan.shear == ()
    assert model.plan.describe() == "auto: brood centered within location; location centered"
    brood, location = d.factors
    np.testing.assert_array_equal(nesting(location, brood), np.repeat(np.arange(12), 3))
    assert nesting(brood, location) is None
    # what the other requests and the other shapes of model keep
    assert plan(d, "centered").nested == {} and plan(d, "non-centered").nested == {}
    none_centered = {"brood": np.zeros(36, bool), "location": np.ones(12, bool)}
    assert nested_factors(d, none_centered) == {}
    df = model.data
    slopes = hb.Model("y ~ x + (1 | location) + (1 + x | brood)", df, family="poisson")
    assert slopes.plan.nested == {}
    crossed = df.assign(location=np.tile([*"abcdef"], len(df) // 6))  # a brood spans 4 of them
    assert hb.Model(FORMULA, crossed, family="poisson").plan.nested == {}


def nested_point(
    design, p: dict, *, inner: str, outer: str, centered: np.ndarray
) -> dict[str, np.ndarray]:
    """The point of the nested graph that is ``p`` of the plain graph (graph docstring): the
    ``centered`` groups of ``inner`` shifted by their enclosing group's coefficient."""
    f, o = (next(g for g in design.factors if g.name == n) for n in (inner, outer))
    beta = np.array([p[n] for n in design.fixed_names])
    m_outer = o.W[:, 0, o.owns] @ beta[o.owns]
    b_outer = p[f"b_{outer}"][:, 0] if f"b_{outer}" in p else None
    if b_outer is None:  # the enclosing factor non-centered
        sd = float(np.exp(p[f"sd_{outer}_log__"])[0])
        b_outer = m_outer + sd * p[f"z_{outer}"][:, 0]
    around = b_outer[nesting(o, f)][centered, None]
    q = dict(p)
    var = f"b_{inner}" if centered.all() else f"b_{inner}_centered"
    q[f"{var}_nested"] = q.pop(var) + around
    return q


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize("brood", ["centered", "mixed"])
@pytest.mark.parametrize("location", ["centered", "non-centered"])
def test_nested_centering_is_an_exact_change_of_variables(model, brood, location):
    """At random points of the plain graph the nested graph has the same log density (a
    shift by another variable: unit Jacobian) and the same reported variables."""
    d = model.design
    graph = {
        "brood": np.arange(36) < 20 if brood == "mixed" else np.ones(36, bool),
        "location": np.full(12, location == "centered"),
    }
    assert nested_factors(d, graph) == {"brood": "location"}
    plain = build_model(d, model.priors, parameterization=graph)
    nested = build_model(d, model.priors, parameterization=graph, nested={"brood": "location"})
    reported = ["Intercept", "x", "b_brood", "u_brood", "b_location", "u_location"]
    to_nested = partial(nested_point, d, inner="brood", outer="location", centered=graph["brood"])
    assert_change_of_variables(plain, nested, to_nested, reported)


def regions(seed: int) -> pd.DataFrame:
    """Pupils' counts in 72 classes inside 24 schools inside 6 regions; each pupil answers
    one of 8 items (crossed with the rest)."""
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.arange(72), 5)
    school, region = cls // 3, cls // 12
    eta = 0.3 + sum(rng.normal(0, 0.5, k.max() + 1)[k] for k in (cls, school, region))
    return pd.DataFrame(
        {
            "cls": [f"c{i}" for i in cls],
            "school": [f"s{i}" for i in school],
            "region": [f"r{i}" for i in region],
            "item": [f"i{i}" for i in rng.integers(0, 8, size=cls.size)],
            "y": rng.poisson(np.exp(eta)),
        }
    )


@pytest.mark.usefixtures("python_graphs")
def test_three_levels_nest_class_in_school_in_region():
    """Each level sampled around the one enclosing it: b_cls_nested = b_cls + b_school_nested
    of its school, b_school_nested = b_school + b_region of its region."""
    m = hb.Model("y ~ 1 + (1 | cls) + (1 | school) + (1 | region)", regions(1), family="poisson")
    assert m.plan.nested == {"cls": "school", "school": "region"}
    assert m.plan.describe() == (
        "auto: cls centered within school; school centered within region; region centered"
    )
    d, graph = m.design, m.plan.graph
    assert all(mask.all() for mask in graph.values())  # the mapping below: all centered
    cls, school, region = d.factors

    def to_nested(p):
        q = dict(p)
        q["b_school_nested"] = q.pop("b_school") + p["b_region"][nesting(region, school)]
        q["b_cls_nested"] = q.pop("b_cls") + q["b_school_nested"][nesting(school, cls)]
        return q

    plain = build_model(d, m.priors, parameterization=graph)
    reported = ["Intercept", *(f"{k}_{f.name}" for f in d.factors for k in ("b", "u"))]
    assert_change_of_variables(plain, m.build(), to_nested, reported)


@pytest.mark.usefixtures("python_graphs")
def test_classes_nest_in_a_sheared_school():
    """A school factor crossed with items and sheared (items carry the intercept) still
    encloses the classes: they are sampled around what the school adds to eta."""
    m = hb.Model("y ~ 1 + (1 | item) + (1 | cls) + (1 | school)", regions(2), family="poisson")
    assert m.plan.shear == ("school",) and m.plan.nested == {"cls": "school"}
    d, graph = m.design, m.plan.graph
    assert graph["cls"].all()
    cls, school = d.factors[1:]
    sheared = build_model(d, m.priors, parameterization=graph, shear=("school",))
    u_school = sheared.compile_fn(
        sheared.replace_rvs_by_values([sheared["u_school"]])[0],
        inputs=sheared.value_vars,
        on_unused_input="ignore",
    )

    def to_nested(p):
        u = u_school(p)[:, 0]
        q = dict(p)
        q["b_cls_nested"] = q.pop("b_cls") + (u - u.mean())[nesting(school, cls), None]
        return q

    reported = ["Intercept", *(f"{k}_{f.name}" for f in d.factors for k in ("b", "u"))]
    assert_change_of_variables(sheared, m.build(), to_nested, reported)


def test_a_column_cannot_take_the_nested_names():
    df = broods(1).rename(columns={"x": "b_brood_nested"})
    with pytest.raises(hb.SpecError, match="b_brood_nested"):
        hb.Model("y ~ b_brood_nested + (1 | brood) + (1 | location)", df, family="poisson")


@pytest.mark.slow
def test_nested_and_non_centered_posteriors_agree():
    """auto (broods within locations) against the non-centered graph, 4 x 500 draws each:
    each scalar's and each group effect's posterior means differ by less than 4 MCSE; no
    divergence under auto."""
    df = broods(5, n_location=20, per=4)
    fits = {}
    for p in ("auto", "non-centered"):
        m = hb.Model(FORMULA, df, family="poisson", parameterization=p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hb.SamplingWarning)
            fits[p] = m.fit(draws=500, tune=500, chains=4, random_seed=4, progressbar=False)
    assert fits["auto"].model.plan.nested == {"brood": "location"}
    a, b = (fits[p].idata for p in ("auto", "non-centered"))
    names = ["Intercept", "x", "sd_brood", "sd_location", "u_brood", "u_location"]
    assert_posteriors_agree(a, b, names)
    assert fits["auto"].diagnostics.divergences == 0
