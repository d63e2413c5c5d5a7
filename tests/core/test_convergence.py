"""R-hat and bulk and tail ESS of hierbayes.core.convergence against ArviZ's own functions."""

import zlib

import arviz as az
import numpy as np
import pytest

from hierbayes.core import convergence as cv
from hierbayes.posterior.diagnostics import diagnose

RTOL = 1e-8


def arviz_stats(draws):
    """ArviZ's rank R-hat, bulk ESS and tail ESS of (chain, draw, *shape) draws."""
    dataset = az.convert_to_dataset({"x": draws})
    # ArviZ divides 0 by 0 for a constant parameter
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            az.rhat(dataset)["x"].values,
            az.ess(dataset, method="bulk")["x"].values,
            az.ess(dataset, method="tail")["x"].values,
        )


def ar1(rng, shape, phi):
    """AR(1) chains along axis 1, started at stationarity."""
    noise = rng.normal(size=shape)
    out = np.empty(shape)
    out[:, 0] = noise[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        out[:, t] = phi * out[:, t - 1] + noise[:, t]
    return out


def make(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    if case == "normal":
        return rng.normal(size=(4, 200, 6))
    if case == "ar1":  # truncation within the directly summed lags
        return ar1(rng, (4, 300, 5), 0.6)
    if case == "ar1_high":  # truncation far out: the FFT path
        return ar1(rng, (4, 300, 4), 0.99)
    if case == "antithetic":
        return ar1(rng, (4, 300, 4), -0.7)
    if case == "chain_means":  # chains 0 to 6 SDs apart: from good to very bad R-hat
        shift = np.linspace(0, 1, 4)[:, None, None] * np.array([0.0, 0.1, 0.6, 2.0, 6.0])
        return rng.normal(size=(4, 100, 5)) + shift
    if case == "scale":  # chains with different spreads: the folded R-hat is the larger
        return rng.normal(size=(4, 150, 3)) * np.array([1.0, 1.0, 1.0, 4.0])[:, None, None]
    if case == "ties":  # discrete values, as integers
        return rng.poisson([0.3, 2.0, 20.0], size=(4, 120, 3))
    if case == "binary":
        return (rng.uniform(size=(4, 100, 3)) < [0.02, 0.1, 0.5]).astype(float)
    if case == "near_ties":  # distinct values a few units in the last place apart
        return 1.0 + rng.integers(0, 40, size=(4, 100, 3)) * np.finfo(float).eps
    if case == "float32":  # folded about the median in float32 arithmetic, as ArviZ does
        return rng.normal(size=(4, 300, 10)).astype(np.float32)
    if case == "boolean":
        return rng.uniform(size=(4, 100, 2)) < [0.1, 0.5]
    if case == "one_chain":
        return rng.normal(size=(1, 100, 3))
    if case == "two_chains":
        return ar1(rng, (2, 101, 3), 0.5)
    if case == "odd_draws":
        return rng.normal(size=(3, 57, 4))
    if case == "few_draws":
        return rng.normal(size=(4, 5, 3))
    if case == "constant":
        draws = rng.normal(size=(4, 80, 3))
        draws[..., 1] = 1.0
        return draws
    if case == "infinite":
        draws = rng.normal(size=(4, 100, 3))
        draws[1, 3, 0] = np.inf
        draws[2, 7, 0] = -np.inf
        draws[:, :60, 1] = np.inf  # more than half: the median is infinite
        return draws
    raise ValueError(case)


CASES = [
    "normal",
    "ar1",
    "ar1_high",
    "antithetic",
    "chain_means",
    "scale",
    "ties",
    "binary",
    "near_ties",
    "float32",
    "boolean",
    "one_chain",
    "two_chains",
    "odd_draws",
    "few_draws",
    "constant",
    "infinite",
]


@pytest.mark.parametrize("case", CASES)
def test_agrees_with_arviz(case):
    draws = make(case)
    ours = cv.convergence(draws)
    for name, mine, ref in zip(
        ("rhat", "ess_bulk", "ess_tail"), ours, arviz_stats(draws), strict=True
    ):
        np.testing.assert_allclose(mine, ref, rtol=RTOL, atol=0, err_msg=name)


def test_cases_reach_their_code_paths():
    """The cases above cover what they are meant to: bad R-hat, slow mixing, ties."""
    r, bulk, _ = cv.convergence(make("chain_means"))
    assert r[0] < 1.05 and r[-1] > 2
    _, bulk, _ = cv.convergence(make("ar1_high"))
    assert np.all(bulk < 50)  # truncation beyond the directly summed lags
    _, bulk, _ = cv.convergence(make("antithetic"))
    assert np.all(bulk > 4 * 300)  # antithetic chains: ESS above the number of draws
    scale = az.convert_to_dataset({"x": make("scale")})
    folded = az.rhat(scale, method="folded")["x"].values
    assert np.all(folded > az.rhat(scale, method="z_scale")["x"].values)  # tails decide
    ties = make("ties")
    assert np.unique(ties[..., 0]).size < 10
    near = make("near_ties")
    assert np.unique(near).size > 30 and np.ptp(near) < 1e-13


def test_one_chain_has_no_rhat_but_an_ess():
    r, bulk, tail = cv.convergence(make("one_chain"))
    assert np.all(np.isnan(r)) and np.all(np.isfinite(bulk)) and np.all(np.isfinite(tail))


def test_constant_parameter():
    """NaN R-hat (0/0, no warning escapes); the ESS is the number of split draws (ArviZ)."""
    r, bulk, tail = cv.convergence(make("constant"))
    assert np.isnan(r[1]) and np.all(np.isfinite(r[[0, 2]]))
    assert bulk[1] == tail[1] == 4 * 80


def test_constant_chains_that_differ_have_a_huge_rhat():
    draws = np.ones((4, 100, 2))
    draws[:, 50:, 0] = 2.0  # every split chain constant, first and second halves differ
    draws[0, :, 1] = 2.0  # one chain elsewhere
    assert np.all(cv.rhat(draws) > 1e6)


def test_nan_draw_gives_nan_for_its_parameter_only():
    draws = np.random.default_rng(5).normal(size=(4, 50, 3))
    draws[2, 10, 1] = np.nan
    kept = draws.copy()
    for values in cv.convergence(draws):
        assert np.isnan(values[1]) and np.all(np.isfinite(values[[0, 2]]))
    np.testing.assert_array_equal(draws, kept)  # the input is not changed


def test_too_few_draws_give_nan():
    for values in cv.convergence(np.random.default_rng(6).normal(size=(4, 3, 2))):
        assert values.shape == (2,) and np.all(np.isnan(values))


@pytest.mark.parametrize(
    "shape, expected",
    [((4, 100), ()), ((4, 100, 3), (3,)), ((2, 50, 2, 3), (2, 3)), ((4, 100, 0), (0,))],
)
def test_shapes(shape, expected):
    draws = np.random.default_rng(7).normal(size=shape)
    result = cv.convergence(draws)
    assert isinstance(result, cv.Convergence)
    for values in result:
        assert values.shape == expected and values.dtype == np.float64
    assert cv.rhat(draws).shape == cv.ess_bulk(draws).shape == cv.ess_tail(draws).shape


def test_scalar_parameter_matches_arviz_on_a_2d_array():
    draws = ar1(np.random.default_rng(8), (4, 400), 0.8)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = az.rhat(draws), az.ess(draws, method="bulk"), az.ess(draws, method="tail")
    for mine, want in zip(cv.convergence(draws), ref, strict=True):
        np.testing.assert_allclose(mine, want, rtol=RTOL)


def test_single_statistics_equal_the_combined_call():
    draws = make("ar1")
    both = cv.convergence(draws)
    np.testing.assert_array_equal(cv.rhat(draws), both.rhat)
    np.testing.assert_array_equal(cv.ess_bulk(draws), both.ess_bulk)
    np.testing.assert_array_equal(cv.ess_tail(draws), both.ess_tail)


def test_chunks_and_threads_do_not_change_the_result():
    rng = np.random.default_rng(9)
    draws = np.concatenate([ar1(rng, (4, 201, 7), 0.95), rng.normal(size=(4, 201, 6))], axis=2)
    draws[:, :, 3] = np.round(draws[:, :, 3])  # ties in one parameter
    whole = cv.convergence(draws, workers=1)
    for chunk_size, workers in [(1, 1), (2, 2), (5, 3)]:
        split = cv.convergence(draws, chunk_size=chunk_size, workers=workers)
        for mine, ref in zip(split, whole, strict=True):
            np.testing.assert_allclose(mine, ref, rtol=1e-12)


@pytest.mark.parametrize(
    "draws, error",
    [
        (np.zeros(10), ValueError),
        (np.zeros((2, 10), complex), TypeError),
        (np.array([["a"] * 10] * 2), TypeError),
    ],
)
def test_bad_input_is_refused(draws, error):
    with pytest.raises(error):
        cv.convergence(draws)


def test_bad_options_are_refused():
    draws = np.zeros((2, 10))
    with pytest.raises(ValueError, match="chunk_size"):
        cv.convergence(draws, chunk_size=0)
    with pytest.raises(ValueError, match="workers"):
        cv.convergence(draws, workers=0)


def test_diagnose_agrees_with_arviz():
    """diagnose on a posterior like a varying-slopes model's, against ArviZ's functions."""
    rng = np.random.default_rng(10)
    chains, draws = 4, 200
    posterior = {
        "mu": rng.normal(size=(chains, draws, 2)),
        "b_group": ar1(rng, (chains, draws, 12 * 2), 0.9).reshape(chains, draws, 12, 2),
        "sigma": np.abs(rng.normal(size=(chains, draws))),
        "corr": np.broadcast_to(np.eye(2), (chains, draws, 2, 2)).copy(),  # unit diagonal
    }
    posterior["corr"][..., 0, 1] = posterior["corr"][..., 1, 0] = np.tanh(
        rng.normal(size=(chains, draws))
    )
    posterior["sigma"][0] += 2.0  # the worst R-hat
    idata = az.from_dict(
        posterior=posterior,
        sample_stats={
            "diverging": np.zeros((chains, draws), bool),
            "energy": rng.normal(size=(chains, draws)),
        },
    )
    d = diagnose(idata)
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = az.rhat(idata.posterior)
        bulk = az.ess(idata.posterior, method="bulk")
        tail = az.ess(idata.posterior, method="tail")
    worst_rhat = rhat.max().to_array()  # NaN (the corr diagonal) skipped
    worst_bulk = bulk.min().to_array()
    np.testing.assert_allclose(d.max_rhat, float(worst_rhat.max()), rtol=RTOL)
    np.testing.assert_allclose(d.min_ess_bulk, float(worst_bulk.min()), rtol=RTOL)
    np.testing.assert_allclose(d.min_ess_tail, float(tail.min().to_array().min()), rtol=RTOL)
    assert d.worst_rhat_var == str(worst_rhat.idxmax().item()) == "sigma"
    assert d.worst_ess_var == str(worst_bulk.idxmin().item())
    np.testing.assert_allclose(d.bfmi, az.bfmi(idata), rtol=RTOL)


@pytest.mark.parametrize("phi", [0.0, 0.9, 0.99])
def test_bfmi_agrees_with_arviz(phi):
    """E-BFMI per chain against arviz.bfmi, from independent to strongly correlated energy."""
    rng = np.random.default_rng(11)
    energy = ar1(rng, (3, 500), phi) + 40.0
    ours = cv.bfmi(energy)
    np.testing.assert_allclose(ours, az.bfmi(energy), rtol=RTOL)
    # for AR(1) energy E-BFMI is 2 (1 - phi): below 0.3 once phi exceeds 0.85
    assert ours.shape == (3,)
    assert (ours < 0.3).all() == (phi >= 0.9)
