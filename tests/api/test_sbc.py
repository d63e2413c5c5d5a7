"""Simulation-based calibration: the loop with a stand-in sampler (fast), and SBC of real
fits (slow). The rank statistics are tested in tests/core/test_ranks.py."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.analysis.sbc_result import SBCInterrupted
from hierbayes.api.sbc import sbc
from hierbayes.posterior.scalars import scalar_parameters, scalar_values

from ..conftest import EIGHT_FORMULA, EIGHT_PRIORS

#: The varying-intercept model of the SBC runs: 8 groups of 5 rows, every prior explicit.
VI_PRIORS = {
    "Intercept": hb.priors.Normal(0, 1),
    "sd": hb.priors.HalfNormal(1),
    "sigma": hb.priors.HalfNormal(1),
}


def vi_data() -> pd.DataFrame:
    """The design only: the response is replaced in every simulation."""
    return pd.DataFrame(
        {"y": np.linspace(-1, 1, 40), "g": np.repeat([f"g{j}" for j in range(8)], 5)}
    )


def vi_model(parameterization="non-centered", priors=None) -> hb.Model:
    return hb.Model(
        "y ~ 1 + (1 | g)",
        vi_data(),
        parameterization=parameterization,
        priors=priors or VI_PRIORS,
    )


# ---------------------------------------------------------------------------------------------
# The loop, with a stand-in for the sampler: the "posterior" is a fresh draw from the prior,
# so the truth's rank is uniform by construction (or not, with a shift).


def fake_fit_factory(shift=0.0, calls=None, interrupt_at=None, swallow=True):
    """Replace Model.fit: posterior draws from VI_PRIORS (independent of the data)."""

    def fit(self, draws, tune, chains, *, random_seed, progressbar, **kwargs):
        if calls is not None:
            calls.append(kwargs)
        n_done = len(calls) if calls is not None else 0
        if interrupt_at is not None and n_done == interrupt_at:
            try:
                os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, mid-sampling
                time.sleep(1)
            except KeyboardInterrupt:
                if not swallow:
                    raise
                draws = draws // 2  # what PyMC does: return the draws so far
        rng = np.random.default_rng(random_seed)
        mu = rng.normal(0, 1, (chains, draws)) + shift
        sd = np.abs(rng.normal(0, 1, (chains, draws, 1)))
        sigma = np.abs(rng.normal(0, 1, (chains, draws)))
        b = mu[:, :, None, None] + sd[:, :, None, :] * rng.normal(size=(chains, draws, 8, 1))
        idata = az.from_dict(
            posterior={"Intercept": mu, "sd_g": sd, "sigma": sigma, "b_g": b},
            coords={"g": [f"g{j}" for j in range(8)], "g_term": ["Intercept"]},
            dims={"sd_g": ["g_term"], "b_g": ["g", "g_term"]},
        )
        return SimpleNamespace(
            idata=idata, diagnostics=SimpleNamespace(divergences=0, min_ess_bulk=float(draws))
        )

    return fit


def test_sbc_loop_is_calibrated_by_construction_and_reproducible(monkeypatch):
    calls = []
    monkeypatch.setattr(hb.Model, "fit", fake_fit_factory(calls=calls))
    model = vi_model()
    result = sbc(model, 60, draws=99, tune=10, thin=1, random_seed=3, progressbar=False)
    assert result.ranks.shape == (60, 11) and result.n_draws == 99
    assert list(result.ranks.columns[:3]) == ["Intercept", "sd_g[Intercept]", "sigma"]
    assert result.ranks.columns[-1] == "b_g[g7, Intercept]"
    assert result.divergences.tolist() == [0] * 60
    assert calls[0]["log_likelihood"] is False and len(calls) == 60
    u = result.uniformity(alpha=0.01)
    assert u.passed, u
    # the truth is the simulator's prior draw: Intercept ~ N(0, 1), sd ~ HalfNormal(1)
    assert abs(result.truth["Intercept"].mean()) < 0.4 and result.truth["sd_g[Intercept]"].min() > 0
    again = sbc(model, 60, draws=99, tune=10, thin=1, random_seed=3, progressbar=False)
    pd.testing.assert_frame_equal(result.ranks, again.ranks)
    other = sbc(model, 60, draws=99, tune=10, thin=1, random_seed=4, progressbar=False)
    assert not result.ranks.equals(other.ranks)
    thinned = sbc(model, 5, draws=100, tune=10, chains=2, thin=30, random_seed=3, progressbar=False)
    assert thinned.n_draws == 8 and thinned.ranks.to_numpy().max() <= 8  # 2 chains x 4 kept


def test_sbc_loop_detects_a_biased_fit(monkeypatch):
    monkeypatch.setattr(hb.Model, "fit", fake_fit_factory(shift=0.5))
    result = sbc(vi_model(), 60, draws=99, tune=10, thin=1, random_seed=3, progressbar=False)
    u = result.uniformity(alpha=0.01)
    assert not u.passed and u.worst == "Intercept"


def test_sbc_with_a_wrong_simulator_fails(monkeypatch):
    """The simulator's intercept prior is N(2, 1), the model's N(0, 1)."""
    monkeypatch.setattr(hb.Model, "fit", fake_fit_factory())
    wrong = vi_model(priors={**VI_PRIORS, "Intercept": hb.priors.Normal(2, 1)})
    result = sbc(
        vi_model(), 60, draws=99, tune=10, thin=1, random_seed=3, progressbar=False, simulator=wrong
    )
    u = result.uniformity(alpha=0.01)
    assert not u.passed and u.table.loc["Intercept", "ecdf_p"] < 1e-6


def test_sbc_freezes_the_priors_the_model_resolved(monkeypatch):
    """Default priors are scaled by the data; every simulation must keep the model's own."""
    seen = []

    def fit(self, *args, **kwargs):
        seen.append(dict(self.priors))
        return fake_fit_factory()(self, *args, **kwargs)

    monkeypatch.setattr(hb.Model, "fit", fit)
    model = hb.Model("y ~ 1 + (1 | g)", vi_data())  # data-scaled defaults
    sbc(model, 3, draws=20, tune=10, thin=1, random_seed=1, progressbar=False)
    assert seen == [model.priors] * 3


@pytest.mark.parametrize("swallow", [True, False], ids=["pymc-returns-partial", "raises"])
def test_ctrl_c_stops_the_run_and_keeps_completed_simulations(monkeypatch, swallow):
    calls = []
    monkeypatch.setattr(
        hb.Model, "fit", fake_fit_factory(calls=calls, interrupt_at=3, swallow=swallow)
    )
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        sbc(vi_model(), 6, draws=50, tune=10, thin=1, random_seed=2, progressbar=False)
    assert isinstance(info.value, SBCInterrupted)
    partial = info.value.result
    assert len(calls) == 3  # the third fit was cut short, no fourth started
    assert partial.ranks.index.tolist() == [0, 1] and partial.n_requested == 6
    assert not partial.complete and "interrupted" in repr(partial)
    assert signal.getsignal(signal.SIGINT) is before


def test_progress_line(monkeypatch, capsys):
    monkeypatch.setattr(hb.Model, "fit", fake_fit_factory())
    sbc(vi_model(), 3, draws=20, tune=10, thin=1, random_seed=1, progressbar=True)
    err = capsys.readouterr().err
    assert "SBC 1/3 simulations" in err and "SBC 3/3 simulations" in err
    assert "0 with divergences" in err
    sbc(vi_model(), 2, draws=20, tune=10, thin=1, random_seed=1, progressbar=False)
    assert capsys.readouterr().err == ""


def test_scalar_parameters_of_a_correlated_model_match_its_prior():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"y": rng.normal(size=30), "x": rng.normal(size=30), "g": np.repeat(list("abcde"), 6)}
    )
    model = hb.Model("y ~ x + (x | g)", df, parameterization="non-centered")
    scalars = scalar_parameters(model.design)
    labels = [s.label for s in scalars]
    assert labels[:6] == [
        "Intercept",
        "x",
        "sd_g[Intercept]",
        "sd_g[x]",
        "corr_g[Intercept, x]",
        "sigma",
    ]
    assert labels[6:8] == ["b_g[a, Intercept]", "b_g[a, x]"] and len(labels) == 16
    prior = model.prior_predictive(draws=5, random_seed=1).prior
    values = scalar_values(prior, scalars, "prior")
    corr = values["corr_g"][0, :, 0, 1]
    assert np.all(np.abs(corr) < 1) and np.all(corr != 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_simulations": 0}, "n_simulations"),
        ({"draws": 0}, "draws"),
        ({"draws": 10, "thin": 20}, "thin"),
        ({"chains": 1.5}, "chains"),
        ({"workers": 0}, "workers"),
        ({"random_seed": None}, "random_seed"),
        ({"fit_kwargs": {"draws": 5}}, "fit_kwargs"),
    ],
)
def test_sbc_rejects_bad_arguments(kwargs, match):
    args = {"n_simulations": 10, "draws": 100, "tune": 100, "random_seed": 1, **kwargs}
    with pytest.raises(hb.SpecError, match=match):
        sbc(vi_model(), **args)


def test_sbc_rejects_a_simulator_of_other_data_or_formula():
    model = vi_model()
    with pytest.raises(hb.SpecError, match="same model"):
        sbc(model, 5, random_seed=1, simulator=hb.Model("y ~ 1", vi_data()))
    shuffled = vi_data().assign(g=np.tile([f"g{j}" for j in range(8)], 5))
    with pytest.raises(hb.SpecError, match="data differ"):
        sbc(model, 5, random_seed=1, simulator=hb.Model("y ~ 1 + (1 | g)", shuffled))
    with pytest.raises(hb.SpecError, match="hierbayes.Model"):
        sbc("y ~ 1", 5, random_seed=1)


# ---------------------------------------------------------------------------------------------
# SBC of real fits (slow). Each run: 1 chain, 300 tuning + 300 kept draws thinned by 6
# (L = 50: the median bulk ESS of 300 non-centered draws is about 60-70, and autocorrelated
# kept draws alone bend the ranks), two simulations at a time. A simulation costs 1-3 s of
# CPU. The figures are printed (pytest -m slow -s).

SLOW_SETTINGS = {"draws": 300, "tune": 300, "chains": 1, "thin": 6, "workers": 2}


def run_and_report(name, model, n, *, seed, simulator=None):
    start = time.perf_counter()
    result = sbc(
        model, n, random_seed=seed, simulator=simulator, progressbar=False, **SLOW_SETTINGS
    )
    u = result.uniformity(alpha=0.01)
    print(
        f"\nSBC {name}: {u!r}; {int((result.divergences > 0).sum())} simulations with "
        f"divergences; median bulk ESS {result.diagnostics['min_ess_bulk'].median():.0f}; "
        f"{time.perf_counter() - start:.0f} s\n{u.table.round(4).to_string()}"
    )
    return result, u


@pytest.mark.slow
@pytest.mark.parametrize("parameterization", ["centered", "non-centered", "marginal"])
def test_sbc_varying_intercept_is_calibrated(parameterization):
    _, u = run_and_report(parameterization, vi_model(parameterization), 100, seed=20261122)
    assert u.passed, u


@pytest.mark.slow
def test_sbc_eight_schools_is_calibrated(eight):
    model = hb.Model(
        EIGHT_FORMULA, eight, se="sigma", parameterization="non-centered", priors=EIGHT_PRIORS
    )
    _, u = run_and_report("eight schools", model, 150, seed=8)
    assert u.passed, u


@pytest.mark.slow
def test_sbc_fails_when_the_simulator_prior_is_wrong():
    """Simulate the group SD from HalfNormal(3) and fit with HalfNormal(1): SBC must say so."""
    wrong = vi_model(priors={**VI_PRIORS, "sd": hb.priors.HalfNormal(3)})
    _, u = run_and_report("wrong simulator", vi_model(), 50, seed=7, simulator=wrong)
    assert not u.passed, u
    assert u.p_value < 1e-3 and u.worst == "sd_g[Intercept]"
