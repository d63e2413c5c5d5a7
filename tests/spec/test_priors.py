"""Prior specs: validation, parsing, registry errors, and the PyMC variables they make."""

import numpy as np
import pymc as pm
import pytest

import hierbayes as hb
from hierbayes.backend.distributions import prior_rv
from hierbayes.spec import priors as P


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: P.HalfCauchy(-1), "beta must be a positive finite number, got -1"),
        (lambda: P.HalfCauchy(0), "beta must be a positive finite number, got 0"),
        (lambda: P.HalfStudentT(0, 5), "nu must be"),
        (lambda: P.HalfNormal(float("inf")), "sigma must be a positive finite number"),
        (lambda: P.Exponential(-0.2), "lam must be"),
        (lambda: P.InverseGamma(1, 0), "beta must be"),
        (lambda: P.Normal(float("nan"), 1), "mu must be a finite number"),
        (lambda: P.Normal(0, "5"), "sigma must be a positive finite number, got '5'"),
        (lambda: P.StudentT(3, 0, -1), "sigma must be"),
        (lambda: P.LKJ(0), "eta must be"),
        (lambda: P.HalfCauchy(True), "beta must be"),
    ],
)
def test_out_of_range_arguments_raise_spec_error(make, message):
    with pytest.raises(hb.SpecError, match=message):
        make()


def test_priors_are_immutable():
    prior = P.HalfCauchy(5)
    with pytest.raises(AttributeError):
        prior.beta = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("halfcauchy:5", P.HalfCauchy(5)),
        ("halft:3,5", P.HalfStudentT(3, 5)),
        ("HalfStudentT:3,5", P.HalfStudentT(3, 5)),
        ("halfnormal:2.5", P.HalfNormal(2.5)),
        ("exponential:0.2", P.Exponential(0.2)),
        ("invgamma:1,1", P.InverseGamma(1, 1)),
        ("halfflat", P.HalfFlat()),
        ("normal:0,5", P.Normal(0, 5)),
        ("t:3,0,2.5", P.StudentT(3, 0, 2.5)),
    ],
)
def test_from_string(text, expected):
    assert P.from_string(text) == expected


def test_unknown_prior_name_lists_valid_names():
    with pytest.raises(hb.SpecError, match=r"did you mean 'halfcauchy'\?.*'halfnormal'"):
        P.from_string("halfcauhy:5")


def test_bad_string_arguments():
    with pytest.raises(hb.SpecError, match="arguments must be numbers"):
        P.from_string("halft:three,5")
    with pytest.raises(hb.SpecError, match="at most 1 arguments"):
        P.from_string("halfcauchy:1,2")


def test_from_value_table():
    assert P.from_value({"dist": "halft", "nu": 3, "sigma": 2}) == P.HalfStudentT(3, 2)
    with pytest.raises(hb.SpecError, match="has no argument"):
        P.from_value({"dist": "halfcauchy", "scale": 2})
    with pytest.raises(hb.SpecError, match="cannot read a prior"):
        P.from_value(5)


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize(
    "prior, logp_at_2",
    [
        (P.HalfCauchy(5), np.log(2 / (np.pi * 5 * (1 + (2 / 5) ** 2)))),
        (P.HalfNormal(5), np.log(np.sqrt(2 / np.pi) / 5) - 2**2 / (2 * 25)),
        (P.Exponential(0.5), np.log(0.5) - 0.5 * 2),
        (P.Normal(1, 2), -0.5 * np.log(2 * np.pi * 4) - (2 - 1) ** 2 / 8),
    ],
)
def test_rv_is_the_named_distribution(prior, logp_at_2):
    """The PyMC variable has the density the spec names (checked at one point)."""
    with pm.Model() as model:
        prior_rv(prior, "theta")
    value = model.rvs_to_values[model["theta"]]
    logp = model.compile_logp(vars=[model["theta"]], jacobian=False)
    transformed = model.rvs_to_transforms[model["theta"]]
    point = {value.name: transformed.forward(2.0).eval() if transformed else 2.0}
    np.testing.assert_allclose(logp(point), logp_at_2, rtol=1e-6)  # via exp(log(2))


def test_inverse_gamma_is_on_the_variance():
    with pm.Model() as model:
        sd = prior_rv(P.InverseGamma(2, 3), "tau")
    assert "tau_variance" in model.named_vars
    draws = pm.draw([sd, model["tau_variance"]], draws=5, random_seed=1)
    np.testing.assert_allclose(draws[0] ** 2, draws[1])
