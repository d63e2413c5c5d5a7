"""Where PyMC's chains start (backend.initial): no sampling, one compiled log density."""

import numpy as np
import pandas as pd
import pytest
from pymc.initial_point import make_initial_point_fn

import hierbayes as hb
from hierbayes.backend.initial import initial_values, jitter_scales, scaled_start


@pytest.fixture(scope="module")
def anger():
    """Bernoulli data with a predictor from 11 to 39 (as VerbAgg's Anger), 40 subjects."""
    rng = np.random.default_rng(5)
    n = 2000
    g = rng.integers(0, 40, n)
    x = rng.integers(11, 40, n).astype(float)
    eta = -1.2 + 0.06 * x + rng.normal(0, 1.0, 40)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    data = pd.DataFrame({"y": y, "x": x, "g": [f"s{k}" for k in g]})
    model = hb.Model("y ~ x + (1 | g)", data, family="bernoulli", parameterization="non-centered")
    graph = model.build()
    return model, graph, graph.compile_logp()


def test_large_scale_predictors_get_a_start_near_the_support_point(anger):
    model, graph, logp = anger
    starts = initial_values(graph, jitter_scales(model.design), 4, random_seed=3)
    rms = np.sqrt(np.mean(model.data["x"] ** 2))
    assert all(abs(float(s["x"])) <= 1 / rms for s in starts)
    assert len({float(s["x"]) for s in starts}) == 4  # the chains still start apart
    pymc_jitter = make_initial_point_fn(model=graph, jitter_rvs=set(graph.free_RVs))
    ours = make_initial_point_fn(model=graph, overrides=starts[0], jitter_rvs=set())
    support = make_initial_point_fn(model=graph, jitter_rvs=set())
    at_support = logp(support(0))
    # PyMC's +-1 jitter of x's coefficient moves eta by up to +-39: a far worse start
    worst_pymc = min(logp(pymc_jitter(seed)) for seed in range(4))
    assert worst_pymc < at_support - 5_000
    assert logp(ours(0)) > at_support - 1_000


def test_unit_scale_predictors_keep_pymcs_starts(regression_data):
    model = hb.Model("y ~ x + (1 | g)", regression_data)
    assert jitter_scales(model.design) == {}
    assert initial_values(model.build(), {}, 4, random_seed=1) is None


@pytest.mark.slow  # a numba compile of its own (about 15 s on an empty cache)
def test_nutpie_starts_the_same_way(anger):
    """nutpie's start (the function its compiled model calls per chain) jitters the
    large-scale coefficient by U(-1, 1) / rms, like PyMC's start, and the rest as nutpie does."""
    import nutpie

    from hierbayes.backend.nutpie import compile_model

    model, graph, logp = anger
    rms = np.sqrt(np.mean(model.data["x"] ** 2))
    compiled = compile_model(graph, nutpie, jitter_scales(model.design))
    names, slices, _ = compiled.shape_info
    where = slices[names.index("x")]
    x = [float(compiled.initial_point_func(seed)[where][0]) for seed in range(4)]
    assert all(abs(v) <= 1 / rms for v in x)
    assert len(set(x)) == 4
    # PyMC's support point is where the unscaled jitter starts from
    support = make_initial_point_fn(model=graph, jitter_rvs=set())(0)
    assert logp(support) - 1_000 < min(
        logp(scaled_start(graph, jitter_scales(model.design))(seed)) for seed in range(4)
    )
