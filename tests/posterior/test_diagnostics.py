"""Diagnostics on constructed values and fake posteriors (no MCMC)."""

import arviz as az
import numpy as np
import pytest

from hierbayes.posterior.diagnostics import DRAWN_EXACTLY, Diagnostics, diagnose

GOOD = {
    "chains": 4,
    "draws": 1000,
    "divergences_per_chain": (0, 0, 0, 0),
    "max_rhat": 1.002,
    "min_ess_bulk": 2000.0,
    "min_ess_tail": 1500.0,
    "bfmi": (1.0, 0.9, 1.1, 0.95),
    "treedepth_saturation": 0.0,
}


def test_good_run_is_ok():
    d = Diagnostics(**GOOD)
    assert d.ok and d.problems() == [] and "verdict             ok" in str(d)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"divergences_per_chain": (0, 3, 0, 1)}, "4 divergent transitions"),
        ({"max_rhat": 1.02}, "max R-hat is 1.020 (> 1.01)"),
        ({"min_ess_bulk": 350.0}, "below 400 (100 per chain)"),
        ({"min_ess_tail": 90.0}, "tail ESS 90"),
        ({"bfmi": (1.0, 0.2, 1.0, 1.0)}, "E-BFMI below 0.3 in chain(s) [1]"),
    ],
)
def test_each_failed_check_gives_one_message(change, needle):
    d = Diagnostics(**{**GOOD, **change})
    (message,) = d.problems()
    assert needle in message and not d.ok


PARAMS = pytest.mark.parametrize(
    "par, ta, advice, absent",
    [
        (
            "centered",
            0.95,
            "use parameterization='non-centered' (or 'marginal' for a Gaussian model), or "
            "raise target_accept (now 0.95)",
            "",
        ),
        ("centered", 0.99, "for a Gaussian model).", "raise target_accept"),
        ("auto: g mixed (3 centered, 5 non-centered)", 0.99, "parameterization='non-c", "target"),
        ("non-centered", 0.9, "Raise target_accept (now 0.9) towards 0.99", ""),
        ("non-centered", 0.99, "Use a more informative prior on the group SD", "target_accept"),
    ],
)


def test_rhat_advice_names_the_graph_only_when_centered():
    d = Diagnostics(**{**GOOD, "max_rhat": 1.05})
    assert "non-centered" in d.problems(parameterization="centered")[0]
    assert "non-centered" not in d.problems(parameterization="non-centered")[0]
    assert "non-centered" not in d.problems(parameterization="auto: g non-centered")[0]
    assert "non-centered" in d.problems(parameterization="auto: g centered")[0]


@PARAMS
def test_divergence_advice_fits_the_run(par, ta, advice, absent):
    d = Diagnostics(**{**GOOD, "divergences_per_chain": (2, 0, 0, 0)})
    (message,) = d.problems(parameterization=par, target_accept=ta)
    assert advice in message
    assert not absent or absent not in message


def test_diagnose_finds_disagreeing_chains_and_divergences():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(4, 500))
    mu[0] += 3.0  # one chain elsewhere
    diverging = np.zeros((4, 500), bool)
    diverging[2, :7] = True
    idata = az.from_dict(
        posterior={"mu": mu, "const": np.ones((4, 500))},
        sample_stats={"diverging": diverging, "energy": rng.normal(size=(4, 500))},
    )
    d = diagnose(idata)
    assert d.divergences_per_chain == (0, 0, 7, 0)
    assert d.max_rhat > 1.3 and d.worst_rhat_var == "mu"  # the constant is skipped, not NaN


def test_variables_drawn_exactly_are_left_out():
    """A marginal model's group effects, drawn exactly given each draw, do not count: only
    the sampled parameters do (here mu mixes well, u's chains disagree, even frozen)."""
    rng = np.random.default_rng(2)
    u = rng.normal(size=(4, 500, 3))
    u[0] += 3.0
    u[1] = 0.5  # frozen
    idata = az.from_dict(
        posterior={"mu": rng.normal(size=(4, 500)), "u": u},
        sample_stats={"energy": rng.normal(size=(4, 500))},
    )
    counted = diagnose(idata)
    assert counted.worst_rhat_var == "u" and counted.max_rhat > 1.3 and counted.stuck
    idata.posterior.attrs[DRAWN_EXACTLY] = "u"
    left_out = diagnose(idata)
    assert left_out.worst_rhat_var == "mu" and left_out.max_rhat < 1.01
    assert left_out.stuck == {}


def fake_run(rng, *, stuck_step=False, frozen=False, healthy_spread=1.0):
    """4 chains x 400 draws of sd and z; chain 1 optionally stuck, as in the Exam HLM report."""
    sd = np.abs(rng.normal(0.3, 0.05 * healthy_spread, size=(4, 400)))
    z = rng.normal(size=(4, 400, 3))
    step = np.tile(rng.uniform(0.1, 0.2, size=(4, 1)), (1, 400))
    depth = np.zeros((4, 400), bool)
    if stuck_step:
        step[1] = 2e-9
        depth[1] = True
    if frozen:
        sd[1] = 1e-12 + 1e-9 * rng.normal(size=400) ** 2
    return az.from_dict(
        posterior={"sd_school": sd, "z_school": z},
        sample_stats={
            "diverging": np.zeros((4, 400), bool),
            "energy": rng.normal(size=(4, 400)),
            "step_size": step,
            "reached_max_treedepth": depth,
        },
    )


def test_a_stuck_chain_is_named_with_what_to_do():
    rng = np.random.default_rng(4)
    d = diagnose(fake_run(rng, stuck_step=True, frozen=True))
    assert list(d.stuck) == [1]
    assert "step size 2e-09" in d.stuck[1] and "'sd_school' frozen" in d.stuck[1]
    assert "maximum tree depth on 100% of draws" in d.stuck[1]
    (message, *rest) = d.problems(parameterization="non-centered")
    assert message.startswith("chain(s) [1] are stuck")
    assert "Running longer will not help: use parameterization='centered'" in message
    assert not any("Run longer" in m for m in rest)  # R-hat is explained by the stuck chain
    assert "parameterization='non-centered'" in d.problems(parameterization="centered")[0]
    assert "stuck chains        [1]" in str(d) and not d.ok


@pytest.mark.parametrize("case", ["step", "frozen"])
def test_each_sign_alone_marks_the_chain(case):
    d = diagnose(
        fake_run(np.random.default_rng(5), **{f"stuck_{case}" if case == "step" else case: True})
    )
    assert list(d.stuck) == [1]


def test_healthy_chains_are_not_stuck():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        assert diagnose(fake_run(rng, healthy_spread=3.0)).stuck == {}
    one_chain = az.from_dict(
        posterior={"mu": np.zeros((1, 50))},
        sample_stats={"diverging": np.zeros((1, 50), bool), "step_size": np.ones((1, 50))},
    )
    assert diagnose(one_chain).stuck == {}
