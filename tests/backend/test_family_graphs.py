"""Structural checks of every family's graph, and observation weights (no sampling)."""

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.spec import families

J, PER = 6, 8
FAST = "FAST_COMPILE"  # no C compile: each graph is checked once

# structural checks: initial points too without a C compile (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("python_graphs")


def data(family: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), PER)
    x = rng.normal(size=g.size)
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.4, J)[g]
    support = families.get(family).support
    y = {
        "real": eta + rng.normal(size=g.size),
        "positive": np.exp(eta + 0.3 * rng.normal(size=g.size)),
        "unit": np.clip(1 / (1 + np.exp(-eta - 0.5 * rng.normal(size=g.size))), 0.01, 0.99),
        "binary": rng.integers(0, 2, size=g.size),
        "binomial": rng.integers(0, 4, size=g.size),
        "count": rng.poisson(np.exp(eta)),
        "ordinal": np.digitize(eta + rng.logistic(size=g.size), [-0.5, 0.5]) + 1,
    }[support]
    return pd.DataFrame({"y": y, "x": x, "g": g, "n": 3, "w": rng.integers(1, 4, size=g.size)})


def model(family, df, **kwargs):
    trials = {"trials": "n"} if family == "binomial" else {}
    return hb.Model("y ~ x + (1 | g)", df, family=family, **trials, **kwargs)


@pytest.mark.parametrize("parameterization", ["centered", "non-centered"])
@pytest.mark.parametrize("family", sorted(set(families.FAMILIES) - {"gaussian"}))
def test_graph_has_the_family_parameters_and_finite_gradient(family, parameterization):
    m = model(family, data(family), parameterization=parameterization)
    pm_model = m.build()
    for name in m.design.aux:
        assert name in pm_model.named_vars
    point = pm_model.initial_point()
    assert np.isfinite(pm_model.compile_logp(mode=FAST)(point))
    assert np.all(np.isfinite(pm_model.compile_dlogp(mode=FAST)(point)))
    if family == "cumulative":
        assert "Intercept" not in pm_model.named_vars  # the cutpoints replace it
        assert pm_model.coords["cutpoint"] == ("1|2", "2|3")


@pytest.mark.parametrize("family", ["gaussian", "poisson", "negativebinomial", "cumulative"])
def test_weight_two_is_the_row_twice(family):
    """The posterior density with weights w equals that of the data with each row repeated
    w times, at any parameter value (both models get the same explicit priors)."""
    df = data(family, seed=3)
    copies = df.loc[df.index.repeat(df["w"])].reset_index(drop=True)
    base = model(family, df).priors  # the duplicated data would scale other defaults
    weighted = model(family, df, weights="w", priors=base, parameterization="non-centered")
    repeated = model(family, copies, priors=base, parameterization="non-centered")
    a, b = weighted.build(), repeated.build()
    rng = np.random.default_rng(4)
    logp_a, logp_b = a.compile_logp(mode=FAST), b.compile_logp(mode=FAST)
    for _ in range(5):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in a.initial_point().items()}
        np.testing.assert_allclose(logp_a(point), logp_b(point), rtol=1e-10)


def test_weights_are_checked_and_shown():
    df = data("gaussian").assign(w=lambda d: d["w"].astype(float))
    df.loc[[2, 5], "w"] = [0.0, -1.0]
    with pytest.raises(hb.DataError, match=r"weights column 'w' has values <= 0 in 2 rows"):
        hb.Model("y ~ x + (1 | g)", df, weights="w")
    m = hb.Model("y ~ x + (1 | g)", data("gaussian"), weights="w")
    assert "weights from 'w'" in repr(m)
    assert m.plan.describe() != "auto: g marginal"  # not in the sufficient statistics yet
    with pytest.raises(hb.SpecError, match="observation weights"):
        hb.Model("y ~ x + (1 | g)", data("gaussian"), weights="w", parameterization="marginal")


def test_default_priors_of_auxiliary_parameters():
    """Printed in the repr; nu's is brms' Gamma(2, 0.1); zi's uniform; moments elsewhere."""
    priors = {f: model(f, data(f)).priors for f in families.FAMILIES}
    assert priors["student_t"]["nu"] == hb.priors.Gamma(2.0, 0.1)
    assert priors["zero_inflated_poisson"]["zi"] == hb.priors.Beta(1.0, 1.0)
    y = data("gamma")["y"]
    assert priors["gamma"]["alpha"].sigma == pytest.approx(5 * y.mean() ** 2 / y.var(), rel=5e-3)
    cut = priors["cumulative"]["cutpoints"]
    share = np.cumsum(np.bincount(data("cumulative")["y"])[1:])[:-1] / (J * PER)
    np.testing.assert_allclose(cut.mu, np.log(share / (1 - share)), rtol=5e-3)
    assert "cutpoints: OrderedNormal(mu=(" in repr(model("cumulative", data("cumulative")))
    with pytest.raises(hb.SpecError, match="does not suit a probability: use Beta"):
        model("zero_inflated_poisson", data("zero_inflated_poisson"), priors={"zi": "normal:0,1"})
