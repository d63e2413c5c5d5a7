"""The sampler registry: one InferenceData shape, seeding, errors, and agreement with PyMC.

Each sampler draws non-centered eight schools 4 x 1000 once per module, shared by the
structural and statistical tests; nutpie and numpyro draw twice more (same seed, another
seed); PyMC's seeding is checked on small runs against pm.sample itself. The PyMC run comes
first, before the numpyro ones start JAX (after which PyMC's chains run in one process).
"""

from __future__ import annotations

import os
import sys

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest

import hierbayes as hb
from hierbayes.backend import samplers
from hierbayes.errors import MissingDependencyError, SpecError

RUN = {
    "draws": 1000,
    "tune": 1000,
    "chains": 4,
    "cores": 2,
    "target_accept": 0.95,
    "progressbar": False,
}
SEED = 20261122
# numpyro (an optional extra) runs in the slow tier: starting JAX and compiling for it took
# about half a minute of the default tier; so does nutpie where a test compiles a model of its
# own for it (numba, about 25 s on an empty cache)
NUMPYRO = pytest.param("numpyro", marks=pytest.mark.slow)
FAST = (pytest.param("nutpie", marks=pytest.mark.slow), NUMPYRO)
EVERY = ("pymc", "nutpie", NUMPYRO)


@pytest.fixture(scope="module")
def eight_model() -> hb.Model:
    return hb.Model(
        "y ~ 1 + (1 | school)",
        hb.datasets.load("eight_schools"),
        se="sigma",
        parameterization="non-centered",
        priors={"Intercept": hb.priors.Normal(0, 5), "sd": hb.priors.HalfCauchy(5)},
    )


@pytest.fixture(scope="module")
def first_run(eight_model):
    """The seeded run of each sampler, drawn once per module."""
    runs: dict[str, az.InferenceData] = {}

    def get(sampler: str) -> az.InferenceData:
        if sampler not in runs:
            runs[sampler] = samplers.sample(
                eight_model.build(), sampler=sampler, random_seed=SEED, **RUN
            )
        return runs[sampler]

    return get


def _layout(idata: az.InferenceData) -> dict:
    """Groups, and per group each variable's dims, dtype kind and coordinate values."""
    return {
        group: {
            name: (
                var.dims,
                var.dtype.kind,
                {dim: idata[group][dim].values.tolist() for dim in var.dims},
            )
            for name, var in idata[group].data_vars.items()
        }
        for group in idata.groups()
        if group != "sample_stats"
    }


@pytest.mark.parametrize("sampler", EVERY)
def test_the_same_inferencedata_from_every_sampler(first_run, sampler):
    idata, reference = first_run(sampler), first_run("pymc")
    assert idata.groups() == ["posterior", "sample_stats", "observed_data"]
    assert _layout(idata) == _layout(reference)
    assert list(idata.posterior.data_vars) == [
        "Intercept",
        "z_school",
        "sd_school",
        "u_school",
        "b_school",
    ]
    assert idata.posterior.sizes == {"chain": 4, "draw": 1000, "school": 8, "school_term": 1}
    np.testing.assert_array_equal(idata.posterior.chain, np.arange(4))
    np.testing.assert_array_equal(idata.posterior.draw, np.arange(1000))
    assert list(idata.posterior.school.values) == list("ABCDEFGH")

    stats = idata.sample_stats
    core = ["diverging", "energy", "tree_depth", "n_steps", "step_size", "acceptance_rate", "lp"]
    assert set(core) <= set(stats.data_vars) <= set(samplers.STATS)
    if sampler != "numpyro":  # numpyro does not report it
        assert "reached_max_treedepth" in stats
    for name, var in stats.data_vars.items():
        assert var.dims == ("chain", "draw")
        assert var.dtype == reference.sample_stats[name].dtype, name
    assert np.isfinite(stats["energy"]).all()
    assert (stats["tree_depth"] >= 1).all() and (stats["tree_depth"] <= 10).all()
    assert idata.posterior.attrs["inference_library"] == sampler


@pytest.mark.parametrize("sampler", FAST)
def test_same_seed_same_draws_other_seed_other_draws(eight_model, first_run, sampler):
    first = first_run(sampler)
    again = samplers.sample(eight_model.build(), sampler=sampler, random_seed=SEED, **RUN)
    other = samplers.sample(eight_model.build(), sampler=sampler, random_seed=SEED + 1, **RUN)
    for name in first.posterior.data_vars:
        np.testing.assert_array_equal(again.posterior[name].values, first.posterior[name].values)
        assert not np.array_equal(other.posterior[name].values, first.posterior[name].values)
    np.testing.assert_array_equal(again.sample_stats.lp.values, first.sample_stats.lp.values)


@pytest.mark.parametrize("sampler", EVERY)
def test_written_to_netcdf_and_read_back(first_run, sampler, tmp_path):
    idata = first_run(sampler)
    path = tmp_path / f"{sampler}.nc"
    idata.to_netcdf(str(path), engine="h5netcdf")
    back = az.from_netcdf(path, engine="h5netcdf")
    assert back.groups() == idata.groups()
    np.testing.assert_array_equal(back.posterior.sd_school, idata.posterior.sd_school)
    assert back.posterior.attrs == idata.posterior.attrs


def test_pymc_sampler_is_pm_sample(eight_model):
    """The "pymc" sampler is pm.sample as Model.fit called it, draws and all; so a rerun
    with its seed gives the same draws, and another seed others."""
    small = {**RUN, "draws": 200, "tune": 200, "chains": 2}
    idata = samplers.sample(eight_model.build(), sampler="pymc", random_seed=SEED, **small)
    # In one process: forking the chains after JAX started (the numpyro runs) could
    # deadlock. PyMC seeds each chain apart, so the draws do not depend on cores.
    with eight_model.build():
        raw = pm.sample(random_seed=SEED, compute_convergence_checks=False, **{**small, "cores": 1})
    assert set(idata.groups()) == set(raw.groups())
    assert list(idata.posterior.data_vars) == list(raw.posterior.data_vars)
    for name, var in idata.posterior.data_vars.items():
        assert var.dims == raw.posterior[name].dims
        np.testing.assert_array_equal(var.values, raw.posterior[name].values)
    for name, var in idata.sample_stats.data_vars.items():
        np.testing.assert_array_equal(var.values, raw.sample_stats[name].values)
    assert idata.observed_data.equals(raw.observed_data)
    other = samplers.sample(eight_model.build(), sampler="pymc", random_seed=SEED + 1, **small)
    for name in idata.posterior.data_vars:
        assert not np.array_equal(other.posterior[name].values, idata.posterior[name].values)


@pytest.mark.parametrize("sampler", FAST)
@pytest.mark.parametrize("name", ["Intercept", "sd_school", "lp"])
def test_posterior_means_agree_with_pymc(first_run, sampler, name):
    """Within 3 Monte Carlo standard errors of the difference, plus 1% of the value."""

    def mean_and_mcse(idata: az.InferenceData) -> tuple[float, float]:
        group = idata.sample_stats if name == "lp" else idata.posterior
        var = group[[name]]
        return float(var[name].mean()), float(az.mcse(var)[name].squeeze())

    mean, mcse = mean_and_mcse(first_run(sampler))
    ref_mean, ref_mcse = mean_and_mcse(first_run("pymc"))
    tolerance = 3 * np.hypot(mcse, ref_mcse) + 0.01 * abs(ref_mean)
    assert abs(mean - ref_mean) <= tolerance, (sampler, name, mean, ref_mean, tolerance)


@pytest.mark.slow
def test_pymc_runs_chains_in_process_once_jax_has_started(eight_model, first_run, monkeypatch):
    """After numpyro, forking the PyMC chains could deadlock: they must not fork."""
    first_run("numpyro")

    def no_fork():
        raise AssertionError("os.fork() called after JAX started")

    monkeypatch.setattr(os, "fork", no_fork)
    idata = samplers.sample(
        eight_model.build(), sampler="pymc", random_seed=1, **{**RUN, "draws": 100, "tune": 100}
    )
    assert idata.posterior.sizes["chain"] == 4


def test_unknown_sampler_names_the_valid_ones(eight_model):
    with pytest.raises(SpecError) as err:
        samplers.sample(eight_model.build(), sampler="nutpi", random_seed=1, **RUN)
    message = str(err.value)
    assert "unknown sampler 'nutpi'; did you mean 'nutpie'?" in message
    assert "Valid: 'pymc', 'nutpie', 'numpyro'" in message


@pytest.mark.parametrize(
    ("sampler", "module", "says"),
    [
        ("nutpie", "nutpie", "nutpie is not installed: reinstall hierbayes"),
        ("numpyro", "numpyro", 'numpyro is not installed: pip install "hierbayes[numpyro]"'),
        (
            "numpyro",
            "jax",
            """jax (needed by the 'numpyro' sampler) is not installed: """
            'pip install "hierbayes[numpyro]"',
        ),
    ],
)
def test_missing_extra_is_named(eight_model, monkeypatch, sampler, module, says):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError) as err:
        samplers.sample(eight_model.build(), sampler=sampler, random_seed=1, **RUN)
    assert isinstance(err.value, ImportError)
    assert str(err.value) == says


@pytest.mark.parametrize("sampler", FAST)
def test_ordinal_cutpoints_start_ordered_under_every_sampler(sampler):
    """The cutpoints' initial values (strictly increasing) reach nutpie and numpyro: PyMC
    cannot freeze a model that has initial values, so nutpie takes them as its start."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=96)
    y = np.digitize(0.3 + 0.9 * x + rng.logistic(size=96), [-0.5, 0.5, 1.5]) + 1
    model = hb.Model("y ~ x", pd.DataFrame({"y": y, "x": x}), family="cumulative")
    idata = samplers.sample(
        model.build(), sampler=sampler, random_seed=1, **{**RUN, "draws": 200, "tune": 200}
    )
    cut = idata.posterior["cutpoints"].values
    assert np.all(np.diff(cut, axis=-1) > 0)
    # statsmodels' OrderedModel on these data: x 0.917 (se 0.210)
    np.testing.assert_allclose(float(idata.posterior["x"].mean()), 0.917, atol=0.15)
