"""Simulation-based calibration (SBC): does fitting recover the prior it simulated from?

Talts, Betancourt, Simpson, Vehtari & Gelman (2018, "Validating Bayesian inference
algorithms with simulation-based calibration"): draw parameters ``theta~`` from the prior,
simulate data ``y~`` from them, fit the model to ``y~`` and record the rank of each true
scalar parameter among L posterior draws,

    rank = #{l : theta^(l) < theta~}   in {0, ..., L}.

If the model, the simulator and the sampler are all correct, every rank is uniform on
``{0, ..., L}``. Ranks piled at one end mean a biased posterior; a U shape, an
overconfident one (too narrow); a hump, an underconfident one (too wide).

:func:`sbc` runs the loop with :meth:`hierbayes.Model.fit` for every simulation, so it
checks exactly what users run (the graph, the parameterisation, the sampler and the
post-processing that adds group effects to a marginal fit).

The ranks and their uniformity tests are :mod:`hierbayes.core.ranks`; the result,
:class:`~hierbayes.analysis.sbc_result.SBCResult`, gives the combined verdict
(:meth:`SBCResult.uniformity`), Bonferroni over the parameters of the ECDF test:
``min(1, m * min_j p_j)`` for m scalar parameters.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.analysis.sbc_result import SBCInterrupted, SBCResult
from hierbayes.api.model import Model, default_progressbar
from hierbayes.core.interrupts import Interrupts
from hierbayes.core.ranks import compute_ranks
from hierbayes.errors import (
    DataError,
    IdentifiabilityWarning,
    PriorWarning,
    SamplingWarning,
    SpecError,
)
from hierbayes.posterior.scalars import Scalar, scalar_parameters, scalar_values

__all__ = ["sbc"]

#: Fit arguments that :func:`sbc` sets itself.
_RESERVED_FIT_ARGS = ("draws", "tune", "chains", "random_seed", "progressbar", "strict")


def _check_simulator(model: Model, simulator: Model) -> None:
    """The simulator must describe the same observations: formula, family, columns, rows."""
    a, b = model.design, simulator.design
    problems = []
    for name in ("formula", "family", "link", "se", "trials", "weights", "dpars"):
        if getattr(model.spec, name) != getattr(simulator.spec, name):
            problems.append(
                f"{name}: simulator {getattr(simulator.spec, name)!r}, "
                f"model {getattr(model.spec, name)!r}"
            )
    if not problems:
        same = (
            a.n_obs == b.n_obs
            and np.array_equal(a.X, b.X)
            and (a.se is None) == (b.se is None)
            and (a.se is None or np.array_equal(a.se, b.se))
            and (a.trials is None or np.array_equal(a.trials, b.trials))
            and len(a.factors) == len(b.factors)
            and all(
                np.array_equal(fa.codes, fb.codes)
                and list(fa.levels) == list(fb.levels)
                and np.array_equal(fa.Z, fb.Z)
                for fa, fb in zip(a.factors, b.factors, strict=False)
            )
        )
        if not same:
            problems.append("its data differ from the model's (rows, predictors or groups)")
    if problems:
        raise SpecError(
            "the simulator must be the same model on the same data, with other priors or "
            "parameterisation: " + "; ".join(problems)
        )


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _Context:
    """What every simulation shares (sent once to each worker process)."""

    spec: Any
    data: pd.DataFrame
    response: str
    scalars: tuple[Scalar, ...]
    draws: int
    tune: int
    chains: int
    thin: int
    fit_kwargs: Mapping[str, Any]
    #: The model's own names in-process; worker processes get the safe set only.
    namespace: Any = "safe"


#: What hundreds of inner fits repeat: PyMC's and ArviZ's per-fit log lines, and these
#: warnings (divergences are still counted in ``SBCResult.diagnostics``; warnings about the
#: priors were shown when the model was created).
_QUIET_LOGGERS = ("pymc", "arviz")
_QUIET_WARNINGS = (SamplingWarning, PriorWarning, IdentifiabilityWarning)


def _mute_inner_fits() -> list[tuple[logging.Logger, int]]:
    """Mute the inner fits' loggers and warnings; returns each logger's previous level.

    Warnings filters are process-wide: call inside ``warnings.catch_warnings()`` to undo.
    """
    previous = []
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        previous.append((logger, logger.level))
        logger.setLevel(logging.ERROR)
    for category in _QUIET_WARNINGS:
        warnings.simplefilter("ignore", category)
    return previous


@contextmanager
def _quiet_inner_fits() -> Iterator[None]:
    """Mute the inner fits (:func:`_mute_inner_fits`) for the block, then restore."""
    with warnings.catch_warnings():
        previous = _mute_inner_fits()
        try:
            yield
        finally:
            for logger, level in previous:
                logger.setLevel(level)


def _simulate(
    ctx: _Context, i: int, y: np.ndarray, truth: np.ndarray, seed: int
) -> tuple[int, np.ndarray, int, float, float]:
    """Fit simulation i: (i, ranks, divergences, min bulk ESS, seconds)."""
    start = time.perf_counter()
    data = ctx.data.copy()
    data[ctx.response] = y
    try:
        model = Model.from_spec(ctx.spec, data, namespace=ctx.namespace)
    except DataError as err:
        raise DataError(f"SBC simulation {i}: the model refuses the simulated data: {err}") from err
    fit = model.fit(
        draws=ctx.draws,
        tune=ctx.tune,
        chains=ctx.chains,
        random_seed=seed,
        progressbar=False,
        **ctx.fit_kwargs,
    )
    post = fit.idata.posterior
    if post.sizes["draw"] != ctx.draws or post.sizes["chain"] != ctx.chains:
        raise KeyboardInterrupt  # the sampler stopped early: it was interrupted
    values = scalar_values(post, ctx.scalars, f"the posterior of simulation {i}")
    draws = np.stack(
        [
            values[s.var][(slice(None), slice(None, None, ctx.thin), *s.index)].ravel()
            for s in ctx.scalars
        ]
    )
    rng = np.random.default_rng([seed, 2])  # ties only
    ranks = compute_ranks(truth, draws, rng)
    return (
        i,
        ranks,
        fit.diagnostics.divergences,
        fit.diagnostics.min_ess_bulk,
        time.perf_counter() - start,
    )


_WORKER: dict[str, _Context] = {}


def _worker_init(ctx: _Context) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _mute_inner_fits()  # for the life of the worker process
    # PyTensor says this once per process; the parent process has said it already.
    warnings.filterwarnings("ignore", "PyTensor could not link to a BLAS", UserWarning)
    _WORKER["ctx"] = ctx


def _worker_run(task: tuple[int, np.ndarray, np.ndarray, int]):
    return _simulate(_WORKER["ctx"], *task)


class _Progress:
    """One line on stderr, rewritten after every simulation."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.start = total, enabled, time.perf_counter()
        self.done = self.divergent = 0

    def update(self, divergences: int) -> None:
        self.done += 1
        self.divergent += int(divergences > 0)
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        sys.stderr.write(
            f"\rSBC {self.done}/{self.total} simulations, {_clock(elapsed)} elapsed, "
            f"~{_clock(left)} left, {self.divergent} with divergences "
        )
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        if self.enabled:
            sys.stderr.write(f"\n{note}\n" if note else "\n")
            sys.stderr.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _inner_fit_kwargs(fit_kwargs: Mapping[str, Any] | None, workers: int) -> dict[str, Any]:
    """The user's extra fit arguments, refused if they set sbc()'s own, with SBC's defaults."""
    fit_kwargs = dict(fit_kwargs or {})
    reserved = sorted(set(fit_kwargs) & set(_RESERVED_FIT_ARGS))
    if reserved:
        raise SpecError(f"fit_kwargs must not set {reserved}: they are sbc()'s own arguments")
    fit_kwargs.setdefault("log_likelihood", False)  # SBC needs no LOO
    if workers > 1:
        fit_kwargs.setdefault("cores", 1)
    return fit_kwargs


def _prior_simulations(
    simulator: Model, scalars: Sequence[Scalar], response: str, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The true values (n, m) drawn from the simulator's prior, and the data (n, N)."""
    with _quiet_inner_fits():
        idata = simulator.prior_predictive(draws=n, random_seed=seed)
    prior = scalar_values(idata.prior, scalars, "the simulator's prior")
    truth = np.stack([prior[s.var][(0, slice(None), *s.index)] for s in scalars], axis=1)
    return truth, np.asarray(idata.prior_predictive[response].values)[0]


def _check_simulations(ctx: _Context, ys: np.ndarray, family_ordinal: bool) -> None:
    """Build the model on every simulated data set before fitting any.

    A prior predictive can draw data the model refuses (an ordinal level without rows, a
    beta response of exactly 0 or 1): that is an error now, naming the first such
    simulation and what to do, not after hours of fits.
    """
    refused: list[tuple[int, DataError]] = []
    with _quiet_inner_fits():
        for i, y in enumerate(ys):
            data = ctx.data.copy()
            data[ctx.response] = y
            try:
                Model.from_spec(ctx.spec, data, namespace=ctx.namespace)
            except DataError as err:
                refused.append((i, err))
    if not refused:
        return
    i, err = refused[0]
    hint = (
        "for an ordinal response, cutpoints far enough apart (prior key 'cutpoints') and "
        "coefficients and group SDs small enough that every level gets rows in every "
        "simulation, or more rows"
        if family_ordinal
        else "responses that stay inside the family's support"
    )
    raise SpecError(
        f"SBC: the model refuses {len(refused)} of the {len(ys)} data sets its prior "
        f"predictive simulated, e.g. simulation {i}: {err}. SBC needs every simulated data "
        f"set to suit the model: choose priors under which they do ({hint}). Nothing was "
        "fitted"
    )


def _run(ctx: _Context, tasks, workers: int, record) -> bool:
    """Fit every task, in this process or a pool, recording each row; True when interrupted."""
    interrupted = False
    # Ctrl-C: PyMC may swallow it and return the draws so far; ctrl_c.hit says it came
    with Interrupts(reraise=False) as ctrl_c, _quiet_inner_fits():
        if workers == 1:
            for task in tasks:
                try:
                    row = _simulate(ctx, *task)
                except KeyboardInterrupt:
                    interrupted = True
                    break
                except Exception:
                    if ctrl_c.hit:  # a fit cut short by Ctrl-C failed afterwards
                        interrupted = True
                        break
                    raise
                if ctrl_c.hit:  # PyMC swallowed the Ctrl-C: drop the cut-short fit
                    interrupted = True
                    break
                record(row)
        else:
            interrupted = _run_pool(ctx, tasks, workers, record)
    return interrupted


def _result(
    labels: list[str],
    ranks: np.ndarray,
    truth: np.ndarray,
    diag: np.ndarray,
    done: np.ndarray,
    n_draws: int,
    settings: dict[str, Any],
) -> SBCResult:
    """The completed simulations (``done``) as an SBCResult."""
    index = pd.Index(np.flatnonzero(done), name="simulation")
    diagnostics = pd.DataFrame(
        {"divergences": diag[:, 0].astype(int), "min_ess_bulk": diag[:, 1], "seconds": diag[:, 2]},
        index=index,
    )
    return SBCResult(
        ranks=pd.DataFrame(ranks, index=index, columns=labels),
        n_draws=n_draws,
        truth=pd.DataFrame(truth, index=index, columns=labels),
        diagnostics=diagnostics,
        settings=settings,
        n_requested=len(done),
    )


def sbc(
    model: Model,
    n_simulations: int,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 1,
    thin: int = 10,
    random_seed: int,
    progressbar: bool | None = None,
    simulator: Model | None = None,
    workers: int = 1,
    fit_kwargs: Mapping[str, Any] | None = None,
) -> SBCResult:
    """Simulation-based calibration of ``model`` (Talts et al. 2018).

    For each of ``n_simulations`` draws of the parameters and the response from the prior
    predictive of ``simulator`` (``model`` itself by default), fit ``model``'s specification
    to the simulated response with :meth:`hierbayes.Model.fit` and record the rank of each
    true scalar parameter among the thinned posterior draws. With a correct model, sampler
    and simulator the ranks are uniform: test them with :meth:`SBCResult.uniformity`, look
    at them with :meth:`SBCResult.plot`.

    The fitted model keeps the priors ``model`` resolved on its own data: the data-scaled
    defaults are frozen, not recomputed from each simulated response (that would make the
    prior depend on the data, and SBC fail).

    Parameters
    ----------
    model : hierbayes.Model
        The model to check; its data supply the design (predictors, groups, known SEs).
    n_simulations : int
        Number of simulated data sets. 100 detect gross errors; Talts et al. use 1000.
    draws, tune, chains : int
        Sampler settings of each fit.
    thin : int
        Keep every ``thin``-th draw of each chain, so that the kept draws are roughly
        independent: autocorrelated draws alone make the ranks non-uniform. The largest
        rank is ``L = chains * ceil(draws / thin)`` (``SBCResult.n_draws``); compare the
        ``min_ess_bulk`` column of ``SBCResult.diagnostics`` with L.
    random_seed : int
        Seeds the prior draws and every fit: a run is reproducible, whatever ``workers``.
    progressbar : bool, optional
        A progress line per simulation on stderr; by default on in a terminal or notebook,
        off under CI.
    simulator : hierbayes.Model, optional
        Simulate from this model instead: the same formula, family and data, with other
        priors (or another parameterisation). A simulator whose prior differs from the
        model's must fail the uniformity test; that is how to check the check.
    workers : int
        Fit this many simulations at once, each in its own process (``spawn``; in a script,
        call :func:`sbc` under ``if __name__ == "__main__":``). Each fit then runs its
        chains one after another. With 1 (the default) everything runs in this process.
    fit_kwargs : dict, optional
        More arguments of :meth:`hierbayes.Model.fit`, e.g. ``{"target_accept": 0.99}``.

    Returns
    -------
    SBCResult

    Raises
    ------
    SBCInterrupted
        On Ctrl-C, after stopping the running fit(s); a ``KeyboardInterrupt`` whose
        ``.result`` holds the completed simulations.
    SpecError
        Before any fit: a model with ``weights=`` (its fits would not be the simulator's
        posterior), or simulated data sets the model refuses (an ordinal level without rows,
        say): every simulated data set is checked before the first fit.

    Notes
    -----
    The sampler warnings of the inner fits are silenced and PyMC's log lines muted while the
    loop runs; ``SBCResult.diagnostics`` keeps each fit's divergences and bulk ESS. Each fit
    builds and compiles its model again, so that every simulation takes the same path as a
    user's fit. PyTensor reuses its compiled C code from ``~/.pytensor``, but rewriting and
    compiling the graph still takes about 0.5-1 s of the 1-3 s a simulation costs (8 groups
    of 5 rows, 1 chain of 300 + 300 iterations).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import hierbayes as hb
    >>> from hierbayes.api.sbc import sbc
    >>> df = pd.DataFrame({"y": np.arange(40.0), "g": np.repeat(list("abcdefgh"), 5)})
    >>> priors = {"Intercept": hb.priors.Normal(0, 2), "sd": hb.priors.HalfNormal(1),
    ...           "sigma": hb.priors.HalfNormal(1)}
    >>> model = hb.Model("y ~ 1 + (1 | g)", df, priors=priors)
    >>> result = sbc(model, 100, draws=300, tune=300, thin=6, random_seed=1)  # doctest: +SKIP
    >>> result.uniformity()  # doctest: +SKIP
    >>> fig = result.plot(["Intercept", "sd_g[Intercept]", "sigma"])  # doctest: +SKIP
    """
    if not isinstance(model, Model):
        raise SpecError(f"model must be a hierbayes.Model, got {type(model).__name__}")
    if simulator is not None and not isinstance(simulator, Model):
        raise SpecError(f"simulator must be a hierbayes.Model, got {type(simulator).__name__}")
    n_simulations = _check_count("n_simulations", n_simulations)
    draws = _check_count("draws", draws)
    tune = _check_count("tune", tune)
    chains = _check_count("chains", chains)
    thin = _check_count("thin", thin)
    workers = _check_count("workers", workers)
    if thin > draws:
        raise SpecError(f"thin ({thin}) must not exceed draws ({draws})")
    if isinstance(random_seed, bool) or not isinstance(random_seed, int | np.integer):
        raise SpecError(f"random_seed must be an integer, got {random_seed!r}")
    fit_kwargs = _inner_fit_kwargs(fit_kwargs, workers)
    simulator = model if simulator is None else simulator
    if simulator is not model:
        _check_simulator(model, simulator)
    if model.design.weights is not None:
        raise SpecError(
            "SBC of a model with weights= would not be calibrated: a simulation draws each row "
            "once, but the fit counts row i w_i times, so its posterior is not the "
            "simulator's. Run SBC on the model without weights, with each row repeated w_i "
            "times (data.loc[data.index.repeat(data[weights])])"
        )

    seeds = np.random.SeedSequence(int(random_seed)).spawn(n_simulations + 1)
    prior_seed = int(seeds[0].generate_state(1)[0])
    fit_seeds = [int(s.generate_state(1)[0]) for s in seeds[1:]]

    scalars = tuple(scalar_parameters(model.design))
    response = model.design.response
    truth, ys = _prior_simulations(simulator, scalars, response, n_simulations, prior_seed)

    ctx = _Context(
        spec=dataclasses.replace(model.spec, priors=dict(model.priors)),
        data=model.data.copy(),
        response=response,
        scalars=scalars,
        draws=draws,
        tune=tune,
        chains=chains,
        thin=thin,
        fit_kwargs=fit_kwargs,
        namespace=model.namespace if workers == 1 else "safe",
    )
    _check_simulations(ctx, ys, model.family.ordinal)
    n_draws = chains * math.ceil(draws / thin)
    ranks = np.zeros((n_simulations, len(scalars)), dtype=int)
    diag = np.full((n_simulations, 3), np.nan)
    done = np.zeros(n_simulations, dtype=bool)
    progress = _Progress(
        n_simulations, default_progressbar() if progressbar is None else bool(progressbar)
    )

    def record(row: tuple[int, np.ndarray, int, float, float]) -> None:
        i, r, divergences, ess, seconds = row
        ranks[i], diag[i], done[i] = r, (divergences, ess, seconds), True
        progress.update(divergences)

    tasks = ((i, ys[i], truth[i], fit_seeds[i]) for i in range(n_simulations))
    start = time.perf_counter()
    interrupted = _run(ctx, tasks, workers, record)
    elapsed = time.perf_counter() - start

    settings = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "thin": thin,
        "random_seed": int(random_seed),
        "workers": workers,
        "fit_kwargs": fit_kwargs,
        "model": str(model.spec),
        "simulator": str(simulator.spec),
        "seconds": elapsed,
    }
    labels = [s.label for s in scalars]
    result = _result(labels, ranks[done], truth[done], diag[done], done, n_draws, settings)
    if interrupted:
        progress.close(f"SBC interrupted after {result.n_simulations} of {n_simulations}")
        raise SBCInterrupted(result)
    progress.close()
    return result


def _run_pool(ctx: _Context, tasks, workers: int, record) -> bool:
    """Run the simulations in ``workers`` spawned processes; True when interrupted."""
    pool = multiprocessing.get_context("spawn").Pool(
        workers, initializer=_worker_init, initargs=(ctx,)
    )
    try:
        for row in pool.imap_unordered(_worker_run, tasks):
            record(row)
    except KeyboardInterrupt:
        pool.terminate()
        return True
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()
    return False
