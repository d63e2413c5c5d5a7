"""NUTS samplers behind one call: PyMC's own, nutpie and numpyro.

:func:`sample` runs one of :data:`SAMPLERS` on a built :class:`pymc.Model` and returns the
same :class:`arviz.InferenceData` whichever ran:

``posterior``
    The constrained free variables and the Deterministics, with exactly the names, dims and
    coords :func:`pymc.sample` gives; no transformed (``*_log__``) variables. Draw coords
    are ``0 .. draws - 1``, chain coords ``0 .. chains - 1``.
``sample_stats``
    Under PyMC's names and dtypes: ``diverging``, ``energy``, ``tree_depth``, ``n_steps``,
    ``step_size``, ``acceptance_rate`` and ``lp`` from every sampler; ``energy_error`` and
    ``reached_max_treedepth`` from the samplers that report them (PyMC and nutpie).
``observed_data``, ``constant_data``
    As :func:`pymc.sample` gives them, when the model has any.

There are no warmup groups and no ``log_likelihood``: the caller adds what it needs. Attrs
are strings and numbers only, so the result can be written to netCDF as it is.

The samplers:

``"nutpie"`` (the default, :data:`DEFAULT_SAMPLER`)
    nutpie's Rust NUTS on the model compiled by numba, chains on ``cores`` threads: a few
    seconds of compiling (less once :mod:`hierbayes.backend.nutpie` has cached nutpie's
    wrappers), then fast sampling (eight schools, 4 x 1000 draws: 0.5 s against PyMC's 9 s).
``"pymc"``
    PyMC's NUTS (:func:`pymc.sample`), one process per chain. Once
    JAX has started in the process (the numpyro sampler ran), forking could deadlock, so
    the chains then run in the process itself, one after another, with the same draws.
``"numpyro"``
    numpyro's NUTS on the model compiled by JAX (:mod:`pymc.sampling.jax`). With ``cores``
    above 1 the chains run at once, one JAX device each (PyMC provides many CPU devices);
    with ``cores=1``, or too few devices, they run vectorised on one. JAX is also the way
    to a GPU or TPU: install the matching ``jax`` (e.g. ``jax[cuda12]``) and nothing else
    changes.

nutpie and PyMC are installed with hierbayes; numpyro and JAX come with
``pip install "hierbayes[numpyro]"``. Each sampler is seeded from
``random_seed`` alone, so the same model, seed and arguments give bit-identical draws; the
samplers use different random streams, so their draws differ from one another.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from arviz.data.base import dict_to_dataset, make_attrs
from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations

from hierbayes.backend.collapse import register_jax
from hierbayes.backend.initial import initial_values
from hierbayes.backend.nutpie import compile_model
from hierbayes.errors import MissingDependencyError, SpecError, unknown_name

__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "sample"]

#: The names :func:`sample` accepts.
SAMPLERS: tuple[str, ...] = ("pymc", "nutpie", "numpyro")

#: The sampler used when none is named, by :func:`sample`, ``Model.fit``, simulation-based
#: calibration and the CLI.
DEFAULT_SAMPLER = "nutpie"

#: The optional-dependency group that installs numpyro and JAX.
EXTRA = "hierbayes[numpyro]"

#: The sample statistics kept, under PyMC's names, with PyMC's dtypes.
STATS: dict[str, type] = {
    "diverging": bool,
    "energy": np.float64,
    "energy_error": np.float64,
    "tree_depth": np.int64,
    "reached_max_treedepth": bool,
    "n_steps": np.float64,
    "step_size": np.float64,
    "acceptance_rate": np.float64,
    "lp": np.float64,
}

#: nutpie's names for PyMC's statistics.
_NUTPIE_STATS = {
    "diverging": "diverging",
    "energy": "energy",
    "energy_error": "energy_error",
    "tree_depth": "depth",
    "reached_max_treedepth": "maxdepth_reached",
    "n_steps": "n_steps",
    "step_size": "step_size",
    "acceptance_rate": "mean_tree_accept",
    "lp": "logp",
}


def sample(
    model: pm.Model,
    *,
    sampler: str = DEFAULT_SAMPLER,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    random_seed: int,
    progressbar: bool,
    jitter_scales: Mapping[str, float] | None = None,
) -> az.InferenceData:
    """Draw from the posterior of ``model`` with NUTS, by the sampler named.

    Parameters
    ----------
    model : pymc.Model
        A built model (e.g. ``hierbayes.Model.build()``) with continuous free variables.
    sampler : {"nutpie", "pymc", "numpyro"}
        The NUTS implementation, nutpie's by default; see the module docstring for how they
        differ.
    draws, tune, chains : int
        Kept draws and tuning steps per chain, and the number of chains.
    cores : int
        PyMC: processes (once JAX has started in this process, the chains run in it, one
        after another, as forking it could deadlock); nutpie: threads; numpyro: above 1
        the chains run at once, one JAX device each, at 1 vectorised on one device.
    target_accept : float
        NUTS target acceptance probability of the step-size adaptation.
    random_seed : int
        Seeds everything the sampler draws, initial points included.
    progressbar : bool
        Show the sampler's progress bar.
    jitter_scales : mapping of str to float, optional
        nutpie's and PyMC's samplers: the start's jitter half-width of these coefficients
        (:func:`hierbayes.backend.initial.jitter_scales`) instead of 1. numpyro starts as it
        does.

    Returns
    -------
    arviz.InferenceData
        ``posterior``, ``sample_stats`` and, if the model has them, ``observed_data`` and
        ``constant_data``, the same from every sampler (see the module docstring).

    Raises
    ------
    hierbayes.errors.SpecError
        ``sampler`` is not one of :data:`SAMPLERS`.
    hierbayes.errors.MissingDependencyError
        The sampler's package is not installed (numpyro: ``pip install "hierbayes[numpyro]"``).

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes import samplers
    >>> samplers.SAMPLERS
    ('pymc', 'nutpie', 'numpyro')
    >>> df = hb.datasets.load("eight_schools")
    >>> model = hb.Model("y ~ 1 + (1 | school)", df, se="sigma").build()
    >>> idata = samplers.sample(model, sampler="nutpie", draws=1000, tune=1000, chains=4,
    ...                         cores=2, target_accept=0.95, random_seed=1,
    ...                         progressbar=False)  # doctest: +SKIP
    >>> idata.groups()  # doctest: +SKIP
    ['posterior', 'sample_stats', 'observed_data']
    """
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise SpecError(unknown_name("sampler", str(sampler), SAMPLERS))
    settings = Settings(
        draws, tune, chains, cores, target_accept, random_seed, progressbar, jitter_scales
    )
    library, idata, sampling_time = _RUNNERS[sampler](model, settings)
    return _standardise(
        idata,
        model,
        library=library,
        draws=draws,
        chains=chains,
        attrs={"sampler": sampler, "sampling_time": sampling_time, "tuning_steps": tune},
    )


def _require(module: str, sampler: str) -> ModuleType:
    """Import a sampler's package, or say what installs it: the ``numpyro`` extra for
    numpyro and JAX, hierbayes itself (a broken install) for nutpie."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = getattr(err, "name", None) in (module, module.split(".")[0])
        what = "is not installed" if missing else f"could not be imported ({err})"
        needs = "" if module == sampler else f" (needed by the {sampler!r} sampler)"
        fix = f'pip install "{EXTRA}"' if sampler == "numpyro" else "reinstall hierbayes"
        raise MissingDependencyError(f"{module}{needs} {what}: {fix}") from err


@dataclass(frozen=True)
class Settings:
    """What every sampler is asked for (see :func:`sample`)."""

    draws: int
    tune: int
    chains: int
    cores: int
    target_accept: float
    random_seed: int
    progressbar: bool
    jitter_scales: Mapping[str, float] | None = None

    def common(self) -> dict[str, Any]:
        """The :func:`pymc.sample` arguments every PyMC-driven sampler shares."""
        return {
            "draws": self.draws,
            "tune": self.tune,
            "chains": self.chains,
            "target_accept": self.target_accept,
            "random_seed": self.random_seed,
            "progressbar": self.progressbar,
        }


Runner = Callable[[pm.Model, Settings], tuple[ModuleType, az.InferenceData, float]]


def _sample_pymc(model: pm.Model, run: Settings) -> tuple[ModuleType, az.InferenceData, float]:
    # PyMC forks a process per chain. Once JAX has started its threads in this process (the
    # numpyro sampler ran), a fork can deadlock and JAX warns, so the chains run one after
    # another in this process instead: the same draws, as PyMC seeds each chain apart.
    # (The forkserver context would keep them parallel, but it needs a __main__ guard in
    # scripts and took 19 s for eight schools, 2 x 600 iterations, against 3 s.)
    with model:
        initvals = initial_values(model, run.jitter_scales or {}, run.chains, run.random_seed)
        starts = {} if initvals is None else {"initvals": initvals, "init": "adapt_diag"}
        idata = pm.sample(
            **run.common(),
            **starts,
            cores=1 if _jax_started() else run.cores,
            compute_convergence_checks=False,
        )
    return pm, idata, float(idata.posterior.attrs["sampling_time"])


def _jax_started() -> bool:
    """Whether JAX has started a backend (and its threads) in this process."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None))


def _sample_nutpie(model: pm.Model, run: Settings) -> tuple[ModuleType, az.InferenceData, float]:
    nutpie = _require("nutpie", "nutpie")
    # The numba backend. Eight schools, 4 chains x 2000 iterations, in CPU seconds: numba
    # compiled in 2.5-6 and sampled in 0.2; JAX compiled in 0.7-1.4 but sampled in 6.3, as
    # nutpie calls back into Python for every JAX gradient. Numba wins beyond ~1000 draws,
    # and with nutpie's wrappers cached (hierbayes.backend.nutpie) it compiles in about 2 s.
    compiled = compile_model(model, nutpie, run.jitter_scales)
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=run.draws,
        tune=run.tune,
        chains=run.chains,
        cores=run.cores,
        seed=run.random_seed,
        target_accept=run.target_accept,
        progress_bar=run.progressbar,
        save_warmup=False,
    )
    return nutpie, idata, time.perf_counter() - start


def _sample_numpyro(model: pm.Model, run: Settings) -> tuple[ModuleType, az.InferenceData, float]:
    jax = _require("jax", "numpyro")
    numpyro = _require("numpyro", "numpyro")
    # Importing pymc.sampling.jax asks XLA for 100 CPU devices, which takes effect only if
    # JAX has not started yet; count the devices after it.
    _require("pymc.sampling.jax", "numpyro")
    register_jax()  # the marginal models' fused kernel, as JAX code
    # "parallel" (pmap) compiles once and runs every chain at once, one device each;
    # "vectorized" (vmap) compiles once and steps all chains in lockstep on one device;
    # "sequential" compiles once per chain, and "parallel" with too few devices warns and
    # falls back to it. Eight schools, 4 x 1000 draws, in CPU seconds (mostly compiling):
    # parallel 5-6, vectorized 10-13, sequential 22-24.
    parallel = run.cores > 1 and run.chains > 1 and jax.local_device_count() >= run.chains
    with model:
        idata = pm.sample(
            **run.common(),
            compute_convergence_checks=False,
            nuts_sampler="numpyro",
            nuts_sampler_kwargs={"chain_method": "parallel" if parallel else "vectorized"},
        )
    # PyMC stores numpyro's potential energy, minus the log density, as "lp".
    idata.sample_stats["lp"] = -idata.sample_stats["lp"]
    return numpyro, idata, float(idata.posterior.attrs["sampling_time"])


_RUNNERS: dict[str, Runner] = {
    "pymc": _sample_pymc,
    "nutpie": _sample_nutpie,
    "numpyro": _sample_numpyro,
}


def _posterior_names(model: pm.Model) -> list[str]:
    """The variables pm.sample puts in the posterior, in its order."""
    return [v.name for v in model.unobserved_value_vars if not v.name.endswith("__")]


def _standardise(
    idata: az.InferenceData,
    model: pm.Model,
    *,
    library: ModuleType,
    draws: int,
    chains: int,
    attrs: Mapping[str, Any],
) -> az.InferenceData:
    """Rebuild a sampler's InferenceData in the one shape :func:`sample` promises."""
    coords, dims = coords_and_dims_for_inferencedata(model)
    attrs = _netcdf_attrs(make_attrs(dict(attrs), library=library))
    posterior = {}
    for name in _posterior_names(model):
        values = np.asarray(idata.posterior[name].values)
        if values.shape[:2] != (chains, draws):
            raise RuntimeError(
                f"the {attrs['sampler']!r} sampler returned {values.shape[:2]} "
                f"(chains, draws) of {name!r}, expected {(chains, draws)}"
            )
        posterior[name] = values
    stats = {}
    rename = _NUTPIE_STATS if attrs["sampler"] == "nutpie" else {s: s for s in STATS}
    for stat, dtype in STATS.items():
        source = rename[stat]
        if source in idata.sample_stats:
            stats[stat] = np.asarray(idata.sample_stats[source].values).astype(dtype)
    groups = {
        "posterior": dict_to_dataset(posterior, attrs=attrs, coords=coords, dims=dims),
        "sample_stats": dict_to_dataset(stats, attrs=attrs),
    }
    observed = find_observations(model)
    if observed:
        groups["observed_data"] = dict_to_dataset(
            observed, attrs=attrs, coords=coords, dims=dims, default_dims=[]
        )
    constants = find_constants(model)
    if constants:
        groups["constant_data"] = _constant_data(constants, coords, dims, attrs)
    return az.InferenceData(**groups)


def _constant_data(
    data: Mapping[str, Any], coords: Mapping, dims: Mapping, attrs: Mapping
) -> xr.Dataset:
    """constant_data as PyMC builds it: scalars stay scalars."""
    dataset = dict_to_dataset(data, attrs=attrs, coords=coords, dims=dims, default_dims=[])
    for name, value in data.items():
        if np.ndim(value) == 0:
            dataset = dataset.squeeze(f"{name}_dim_0", drop=True)
    return dataset


def _netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the attrs netCDF can store: strings and (non-boolean) numbers."""
    kept = {}
    for key, value in attrs.items():
        if isinstance(value, bool | np.bool_):
            continue
        if isinstance(value, str):
            kept[key] = value
        elif isinstance(value, int | float | np.integer | np.floating):
            kept[key] = value.item() if isinstance(value, np.generic) else value
    return kept
