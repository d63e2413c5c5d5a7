"""The fused kernels of the marginal models' group terms, against dense linear algebra."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import verify_grad

from hierbayes.backend.collapse import (
    collapse_kernel,
    conditional_draws_kernel,
    group_collapse,
    one_factor_marginal,
)


def spd_stack(rng: np.random.Generator, J: int, q: int) -> np.ndarray:
    A = rng.normal(size=(J, q, q))
    return A @ A.transpose(0, 2, 1) + np.eye(q)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_values_equal_dense_algebra(q):
    rng = np.random.default_rng(q)
    M, w = spd_stack(rng, 9, q), rng.normal(size=(9, q))
    log_det, quad = collapse_kernel(M, w)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(M)[1].sum(), rtol=1e-12)
    np.testing.assert_allclose(
        quad, np.einsum("ji,ji->", w, np.linalg.solve(M, w[..., None])[..., 0]), rtol=1e-12
    )


def test_many_large_determinants_do_not_overflow():
    # 10^4 groups with |M_j| = 1e6: the product of the determinants is 1e60000
    M = np.tile(np.diag([1e3, 1e3])[None], (10_000, 1, 1))
    log_det, _ = collapse_kernel(M, np.zeros((10_000, 2)))
    np.testing.assert_allclose(log_det, 10_000 * np.log(1e6), rtol=1e-12)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_not_positive_definite_gives_nan(q):
    M = spd_stack(np.random.default_rng(0), 4, q)
    M[2] = -np.eye(q)
    assert np.isnan(collapse_kernel(M, np.ones((4, q)))).all()


@pytest.mark.parametrize("q", [1, 2, 3])
def test_gradient_matches_finite_differences_and_backends_agree(q):
    rng = np.random.default_rng(10 + q)
    M0, w0 = spd_stack(rng, 5, q), rng.normal(size=(5, q))

    def f(half, w):  # M = half + half': the kernels read only M's lower triangle
        log_det, quad = group_collapse(half + half.dimshuffle(0, 2, 1), w)
        return 0.7 * log_det - 1.3 * quad

    verify_grad(f, [M0 / 2, w0], rng=rng)
    half, w = pt.tensor3("half"), pt.matrix("w")
    out = f(half, w)
    outputs = [out, *pytensor.grad(out, [half, w])]
    by_mode = [
        pytensor.function([half, w], outputs, mode=m)(M0 / 2, w0) for m in ("FAST_RUN", "NUMBA")
    ]
    for c_value, numba_value in zip(*by_mode, strict=True):
        np.testing.assert_allclose(numba_value, c_value, rtol=1e-12)


@pytest.mark.parametrize(("q", "p"), [(1, 0), (2, 1), (2, 2), (2, 3), (3, 2)])
@pytest.mark.parametrize("per_group", [False, True])
def test_conditional_draws_have_the_dense_posterior_mean_and_covariance(q, p, per_group):
    """With zero noise a draw is the conditional mean; the draws' responses to unit noises
    give the conditional covariance. Both against u_j | y ~ N(V Z'r / s^2, V),
    V = (Z'Z / s^2 + T^-1)^-1."""
    rng = np.random.default_rng(100 * q + p)
    J = 6
    ZtZ, Zty, ZtX = spd_stack(rng, J, q), rng.normal(size=(J, q)), rng.normal(size=(J, q, p))
    beta, L = rng.normal(size=(1, p)), np.linalg.cholesky(spd_stack(rng, 1, q))
    precision = rng.uniform(0.5, 2.0, size=(1, J if per_group else 1))

    def draw(noise: np.ndarray) -> np.ndarray:
        out = np.empty((1, J, q))
        conditional_draws_kernel(ZtZ, Zty, ZtX, beta, L, precision, noise[:, None, :], out)
        return out[0]

    mean = draw(np.zeros((q, J)))
    spread = np.stack([draw(np.eye(q)[:, k, None] * np.ones((q, J))) - mean for k in range(q)])
    T_inv = np.linalg.inv(L[0] @ L[0].T)
    for j in range(J):
        prec = precision[0, j if per_group else 0]
        V = np.linalg.inv(ZtZ[j] * prec + T_inv)
        np.testing.assert_allclose(mean[j], V @ (Zty[j] - ZtX[j] @ beta[0]) * prec, rtol=1e-10)
        np.testing.assert_allclose(spread[:, j].T @ spread[:, j], V, rtol=1e-10, atol=1e-14)


@pytest.mark.slow  # starts JAX, after which PyMC's chains no longer fork in this process
def test_jax_version_has_the_same_value_and_gradient():
    pytest.importorskip("jax")
    from hierbayes.backend.collapse import register_jax

    register_jax()
    rng = np.random.default_rng(7)
    M0, w0 = spd_stack(rng, 5, 2), rng.normal(size=(5, 2))
    half, w = pt.tensor3("half"), pt.matrix("w")
    log_det, quad = group_collapse(half + half.dimshuffle(0, 2, 1), w)
    out = 0.7 * log_det - 1.3 * quad
    outputs = [out, *pytensor.grad(out, [half, w])]
    c_values = pytensor.function([half, w], outputs)(M0 / 2, w0)
    jax_fn = pytensor.function([half, w], outputs, mode="JAX")
    for c_value, jax_value in zip(c_values, jax_fn(M0 / 2, w0), strict=True):
        np.testing.assert_allclose(np.asarray(jax_value), c_value, rtol=1e-10)

    ZtZ, Zty, ZtX = spd_stack(rng, 5, 2), rng.normal(size=(5, 2)), rng.normal(size=(5, 2, 2))
    beta, L, sigma = pt.vector("beta"), pt.matrix("L"), pt.scalar("sigma", dtype="float64")
    log_det, quad = one_factor_marginal(ZtZ, Zty, ZtX, beta, L, sigma)
    out = 0.7 * log_det - 1.3 * quad
    outputs = [out, *pytensor.grad(out, [beta, L, sigma])]
    point = (np.array([0.3, -0.2]), np.array([[0.9, 0.0], [0.4, 0.6]]), np.array(0.8))
    c_values = pytensor.function([beta, L, sigma], outputs)(*point)
    jax_values = pytensor.function([beta, L, sigma], outputs, mode="JAX")(*point)
    for c_value, jax_value in zip(c_values, jax_values, strict=True):
        np.testing.assert_allclose(np.asarray(jax_value), c_value, rtol=1e-10)


def one_factor_reference(ZtZ, Zty, ZtX, beta, L, sigma):
    """OneFactorMarginal's two sums through GroupCollapse, with M and w built by PyTensor."""
    Lt = L / sigma
    M = pt.eye(2) + pt.einsum("ka,jkm,mb->jab", Lt, ZtZ, Lt)
    return group_collapse(M, pt.dot((Zty - pt.dot(ZtX, beta)) / sigma, Lt))


@pytest.mark.parametrize("p", [0, 1, 3])
def test_one_factor_kernel_matches_its_reference_and_finite_differences(p):
    rng = np.random.default_rng(20 + p)
    J = 6
    ZtZ, Zty, ZtX = spd_stack(rng, J, 2), rng.normal(size=(J, 2)), rng.normal(size=(J, 2, p))
    beta0, sigma0 = rng.normal(size=p), np.array(0.8)
    L0 = np.array([[0.9, 0.0], [0.4, 0.6]])

    def f(beta, L, sigma):
        log_det, quad = one_factor_marginal(ZtZ, Zty, ZtX, beta, L, sigma)
        return 0.7 * log_det - 1.3 * quad

    if p:
        verify_grad(f, [beta0, L0, sigma0], rng=rng)
    else:  # (verify_grad cannot take an empty input)
        verify_grad(lambda L, sigma: f(np.zeros(0), L, sigma), [L0, sigma0], rng=rng)
    beta, L, sigma = pt.vector("beta"), pt.matrix("L"), pt.scalar("sigma", dtype="float64")
    reference = one_factor_reference(ZtZ, Zty, ZtX, beta, L, sigma)
    fused = one_factor_marginal(ZtZ, Zty, ZtX, beta, L, sigma)
    params = [beta, L, sigma]
    outputs = [
        [*terms, *pytensor.grad(0.7 * terms[0] - 1.3 * terms[1], params)]
        for terms in (reference, fused)
    ]
    expected = pytensor.function(params, outputs[0])(beta0, L0, sigma0)
    for mode in ("FAST_RUN", "NUMBA"):
        got = pytensor.function(params, outputs[1], mode=mode)(beta0, L0, sigma0)
        for value, want in zip(got, expected, strict=True):
            np.testing.assert_allclose(value, want, rtol=1e-11, atol=1e-13)
