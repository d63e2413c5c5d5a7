"""nutpie's model with its wrappers cached on disk: same functions, same draws, no stale cache.

The C wrappers are called directly (through ctypes) and compared with PyMC's own logp and
gradient of the same model, on two data sets that differ only in y: a wrapper loaded from the
cache for the wrong data would fail. One test samples, and compares with nutpie's own compile.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytensor
import pytest

import hierbayes as hb
from hierbayes.backend import nutpie as nutpie_model

nutpie = pytest.importorskip("nutpie")

PRIORS = {"Intercept": hb.priors.Normal(0, 5), "sd": hb.priors.HalfCauchy(5)}


def eight_schools(shift: float = 0.0, parameterization: str = "non-centered") -> hb.Model:
    df = hb.datasets.load("eight_schools")
    df["y"] = df["y"] + shift
    return hb.Model(
        "y ~ 1 + (1 | school)", df, se="sigma", parameterization=parameterization, priors=PRIORS
    )


def call_logp(compiled, x: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Call the compiled C logp wrapper as nutpie does: (status, logp, gradient)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad, logp = np.empty_like(x), np.empty(())
    pointer = ctypes.POINTER(ctypes.c_double)
    status = compiled.compiled_logp_func.ctypes(
        x.size,
        x.ctypes.data_as(pointer),
        grad.ctypes.data_as(pointer),
        logp.ctypes.data_as(pointer),
        ctypes.c_void_p(compiled.user_data.ctypes.data),
    )
    return status, float(logp), grad


def point_of(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """The point whose values, raveled in the compiled model's order, make ``x``.

    That order is the frozen model's, which need not be the model's own.
    """
    start, point = 0, {}
    for name, value in nutpie_model.lift_data(model).initial_point().items():
        point[name] = x[start : start + value.size].reshape(value.shape)
        start += value.size
    assert start == x.size
    return point


#: the pair's numba compile takes about 20 s from an empty cache: nutpie is opt-in, and
#: the slow tier (which CI runs) checks its wrappers
SLOW_COMPILE = pytest.mark.slow


@pytest.fixture(scope="module")
def compiled_pair():
    """Eight schools and the same with y + 10, each built and compiled by compile_model."""
    out = []
    for shift in (0.0, 10.0):
        model = eight_schools(shift).build()
        out.append((model, nutpie_model.compile_model(model, nutpie)))
    return out


@SLOW_COMPILE
def test_the_wrappers_are_hierbayes_own_and_cached(compiled_pair):
    model, compiled = compiled_pair[0]
    assert compiled.compiled_logp_func._pyfunc.__name__ == "hierbayes_nutpie_logp"
    assert compiled.compiled_expand_func._pyfunc.__name__ == "hierbayes_nutpie_expand"
    again = nutpie_model.compile_model(model, nutpie)
    # numba counts a wrapper loaded from its disk cache (the first compile wrote it, if an
    # earlier run had not)
    assert again.compiled_logp_func._cache_hits == 1
    assert again.compiled_expand_func._cache_hits == 1


@SLOW_COMPILE
def test_logp_and_gradient_equal_pymc_for_each_data_set(compiled_pair):
    rng = np.random.default_rng(1)
    values = []
    for model, compiled in compiled_pair:
        x = rng.normal(size=compiled.n_dim)
        status, logp, grad = call_logp(compiled, x)
        point = point_of(model, x)
        pymc_logp = model.compile_logp()
        assert status == 0
        np.testing.assert_allclose(logp, pymc_logp(point), rtol=1e-10)
        # the gradient in the frozen model's order of the value variables
        frozen_dlogp = nutpie_model.lift_data(model).compile_dlogp()
        np.testing.assert_allclose(grad, frozen_dlogp(point), rtol=1e-8, atol=1e-12)
        values.append(pymc_logp(point_of(model, np.zeros(x.size))))
    # the two data sets give different densities at the same point: no wrapper was reused
    zeros = np.zeros(compiled_pair[0][1].n_dim)
    first, second = (call_logp(c, zeros)[1] for _, c in compiled_pair)
    np.testing.assert_allclose([first, second], values, rtol=1e-10)
    assert abs(first - second) > 1.0


@SLOW_COMPILE
def test_a_non_finite_logp_is_reported_as_nutpie_expects(compiled_pair):
    _, compiled = compiled_pair[0]
    x = np.full(compiled.n_dim, np.nan)
    status, _, _ = call_logp(compiled, x)
    assert status == 3  # nutpie's code for a non-finite gradient


@pytest.mark.slow  # nutpie compiles its own wrappers anew (about 14 s)
def test_draws_are_identical_to_nutpies_own_compile():
    """Sampling the compiled model equals sampling nutpie.compile_pymc_model's, seed for seed."""
    model = nutpie_model.lift_data(eight_schools(parameterization="marginal").build())
    run = {"draws": 150, "tune": 150, "chains": 2, "cores": 2, "seed": 3, "progress_bar": False}
    ours = nutpie.sample(nutpie_model.compile_model(model, nutpie), **run)
    theirs = nutpie.sample(nutpie.compile_pymc_model(model, backend="numba"), **run)
    for name in ("Intercept", "sd_school"):
        np.testing.assert_array_equal(ours.posterior[name].values, theirs.posterior[name].values)


def test_lift_data_keeps_the_density_and_holds_no_data():
    model = eight_schools(parameterization="marginal").build()
    lifted = nutpie_model.lift_data(model)
    inputs = list(pytensor.graph.traversal.graph_inputs([lifted.logp()]))
    shared = [v for v in inputs if isinstance(v, pytensor.compile.SharedVariable)]
    arrays = [v for v in inputs if isinstance(v, pytensor.graph.basic.Constant) and v.ndim > 0]
    assert shared and all(v.name.startswith("hierbayes_data_") for v in shared)
    # y, sigma and the prior's scales are all shared: what is left is PyTensor's own
    assert all(v.data.dtype.kind != "f" for v in arrays)
    point = model.initial_point()
    np.testing.assert_allclose(lifted.compile_logp()(point), model.compile_logp()(point), rtol=0)


@SLOW_COMPILE
def test_another_data_set_of_the_same_shapes_reuses_the_compiled_code(compiled_pair):
    """The pair differ only in y: the second compile of either loads its wrappers from the
    cache (one hit each), and each still computes its own density (the test above)."""
    model, _ = compiled_pair[1]
    again = nutpie_model.compile_model(eight_schools(20.0).build(), nutpie)
    assert again.compiled_logp_func._cache_hits == 1
    zeros = np.zeros(again.n_dim)
    third, second = call_logp(again, zeros)[1], call_logp(compiled_pair[1][1], zeros)[1]
    assert abs(third - second) > 1.0


def fake_nutpie(version: str, calls: list[str]):
    """A stand-in for the nutpie module whose compile_pymc_model records its calls."""

    class FakeNutpie:
        __version__ = version

        @staticmethod
        def compile_pymc_model(model, backend, jitter_rvs):
            calls.append(backend)
            assert jitter_rvs == set(model.free_RVs)  # no large-scale predictor here
            return "compiled by nutpie"

    return FakeNutpie


def test_without_pytensors_numba_cache_nutpie_compiles_as_usual():
    calls: list[str] = []
    model = eight_schools().build()
    with pytensor.config.change_flags(numba__cache=False):
        compiled = nutpie_model.compile_model(model, fake_nutpie(nutpie.__version__, calls))
    assert (compiled, calls) == ("compiled by nutpie", ["numba"])


@pytest.mark.parametrize("version", ["0.15.2", "0.17.0", "1.0.0"])
def test_another_nutpie_series_compiles_as_usual(version):
    calls: list[str] = []
    compiled = nutpie_model.compile_model(eight_schools().build(), fake_nutpie(version, calls))
    assert (compiled, calls) == ("compiled by nutpie", ["numba"])


def test_the_callers_model_keeps_its_initial_values(monkeypatch):
    """compile_model lends the model to lift_data without its initial values (PyMC
    cannot rebuild a model with them) and gives them back, even when lifting fails."""
    model = eight_schools().build()
    model.set_initval(model["Intercept"], 3.0)
    given = dict(model.rvs_to_initial_values)
    seen = {}

    def failing_freeze(m):
        seen.update(m.rvs_to_initial_values)
        raise RuntimeError("stop here")

    monkeypatch.setattr(nutpie_model, "lift_data", failing_freeze)
    with pytest.raises(RuntimeError, match="stop here"):
        nutpie_model.compile_model(model, nutpie)
    assert set(seen.values()) == {None}
    assert model.rvs_to_initial_values == given and given[model["Intercept"]] == 3.0
