"""Diagnostics on constructed values and fake posteriors (no MCMC)."""

import arviz as az
import numpy as np
import pytest

from hierbayes.diagnostics import Diagnostics, diagnose

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
            "use parameterization='non-centered' (or 'marginal' for a Gaussian model with one "
            "grouping factor), or raise target_accept (now 0.95)",
            "",
        ),
        ("centered", 0.99, "with one grouping factor).", "raise target_accept"),
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
