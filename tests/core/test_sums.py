"""Mixed-model estimates from per-group Gram matrices, against the rows and statsmodels."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from hierbayes.core import pooling, sums

# statsmodels' own optimum is refined far past its default (gtol 1e-10 with BFGS), so the two
# optimisers agree to 1e-8 or better here (3e-8 at worst); these leave a margin of 30 or more.
RTOL, ATOL = 1e-5, 1e-6


def _gram(A, codes, J):
    """Per-group A_j'A_j by an einsum over each group's rows: (J, k, k)."""
    return np.stack([np.einsum("ni,nk->ik", A[codes == j], A[codes == j]) for j in range(J)])


def _simulate(seed, J=40, slope=True, T=((1.0, 0.4), (0.4, 0.5))):
    """y ~ 1 + x + (1 + x | g) (or (1 | g)) with unequal group sizes; A = [1, x, y]."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 16, J)
    codes = np.repeat(np.arange(J), sizes)
    x = rng.normal(size=codes.size)
    T = np.asarray(T) if slope else np.asarray(T)[:1, :1]
    u = rng.multivariate_normal(np.zeros(len(T)), T, J)
    y = 1.0 + 0.5 * x + u[codes, 0] + (u[codes, 1] * x if slope else 0) + rng.normal(0, 0.7, x.size)
    return np.column_stack([np.ones_like(x), x, y]), codes, sizes


def _statsmodels(A, codes, x_cols, z_cols, diagonal=False):
    X, Z = A[:, x_cols], A[:, z_cols]
    free = (
        MixedLMParams.from_components(np.ones(X.shape[1]), np.eye(Z.shape[1])) if diagonal else None
    )
    model = MixedLM(A[:, -1], X, groups=codes, exog_re=Z)
    return model, model.fit(reml=True, free=free, method=["bfgs"], gtol=1e-10)


def _check_against_statsmodels(fit, model, result, A, codes):
    J = fit.u.shape[0]
    np.testing.assert_allclose(fit.beta, result.fe_params, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(fit.T, np.asarray(result.cov_re), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(fit.sigma**2, result.scale, rtol=RTOL)
    np.testing.assert_allclose(fit.reml_loglik, result.llf, rtol=1e-9)
    blup = np.array([np.asarray(result.random_effects[j]) for j in range(J)])
    np.testing.assert_allclose(fit.u, blup, rtol=RTOL, atol=ATOL)
    blup_cov = np.array([np.asarray(result.random_effects_cov[j]) for j in range(J)])
    np.testing.assert_allclose(fit.u_cov, blup_cov, rtol=RTOL, atol=ATOL)
    # cov_beta is sigma^2 (X'V0^-1 X)^-1: the inverse of statsmodels' fixed-effects Hessian
    # block. Its cov_params() inverts the whole Hessian, whose cross block between beta and
    # the covariance parameters is not zero on a finite sample (0.08% here unstructured, 1%
    # with the diagonal constraint), so against that only a loose check.
    p = fit.beta.size
    hess, _ = model.hessian(result.params_object)
    np.testing.assert_allclose(fit.cov_beta, np.linalg.inv(-hess[:p, :p]), rtol=RTOL)
    sm_cov = np.asarray(result.cov_params())[:p, :p]
    np.testing.assert_allclose(fit.cov_beta, sm_cov, rtol=3e-2, atol=3e-2 * np.abs(sm_cov).max())


def test_reml_unstructured_matches_statsmodels():
    A, codes, sizes = _simulate(1)
    fit = sums.reml_sums(_gram(A, codes, 40), sizes, [0, 1], [0, 1], 2)
    assert fit.converged
    assert abs(fit.T[0, 1]) > 0.1  # a correlated T, estimated as such
    model, result = _statsmodels(A, codes, [0, 1], [0, 1])
    _check_against_statsmodels(fit, model, result, A, codes)


def test_reml_random_intercept_matches_statsmodels():
    A, codes, sizes = _simulate(2, J=25, slope=False)
    fit = sums.reml_sums(_gram(A, codes, 25), sizes, [0, 1], [0], 2, blocks=((0,),))
    assert fit.converged and fit.u.shape == (25, 1)
    model, result = _statsmodels(A, codes, [0, 1], [0])
    _check_against_statsmodels(fit, model, result, A, codes)


def test_reml_diagonal_blocks_match_statsmodels_free():
    A, codes, sizes = _simulate(3, T=((1.0, 0.0), (0.0, 0.6)))
    fit = sums.reml_sums(_gram(A, codes, 40), sizes, [0, 1], [0, 1], 2, blocks=((0,), (1,)))
    assert fit.converged and fit.T[0, 1] == 0.0
    model, result = _statsmodels(A, codes, [0, 1], [0, 1], diagonal=True)
    _check_against_statsmodels(fit, model, result, A, codes)


def test_reml_sums_do_not_depend_on_row_order():
    A, codes, sizes = _simulate(4)
    order = np.random.default_rng(40).permutation(codes.size)
    fits = [
        sums.reml_sums(_gram(a, c, 40), sizes, [0, 1], [0, 1], 2)
        for a, c in [(A, codes), (A[order], codes[order])]
    ]
    for name in ("beta", "cov_beta", "T", "sigma", "u", "u_cov", "reml_loglik"):
        np.testing.assert_allclose(
            getattr(fits[0], name), getattr(fits[1], name), rtol=1e-7, atol=1e-9, err_msg=name
        )


def test_reml_rejects_blocks_that_do_not_partition_the_terms():
    A, codes, sizes = _simulate(5, J=10)
    with pytest.raises(ValueError, match="partition"):
        sums.reml_sums(_gram(A, codes, 10), sizes, [0, 1], [0, 1], 2, blocks=((0,),))


@pytest.mark.parametrize("n_common", [0, 1, 2])
def test_no_pooling_sums_matches_rows(n_common):
    rng = np.random.default_rng(6 + n_common)
    sizes = np.array([1, 5, 9, 3, 7, 12, 4, 0, 6])  # 1 row: fewer than q; 0 rows: empty
    J = sizes.size
    codes = np.repeat(np.arange(J), sizes)
    x = rng.normal(size=codes.size)
    x[codes == 6] = 0.3  # no spread in x: a singular Z_j'Z_j, invalid like the 1-row group
    common = rng.normal(size=(codes.size, 2))
    y = 1 + 0.5 * x + common @ [0.3, -0.2] + rng.normal(size=J)[codes] + rng.normal(size=x.size)
    A = np.column_stack([np.ones_like(x), x, common, y])
    common_cols = [2, 3][:n_common]
    coef, cov, valid, se, sigma = sums.no_pooling_sums(
        _gram(A, codes, J), sizes, [0, 1], 4, common_cols=common_cols
    )
    fits, rows_se, rows_sigma = pooling.no_pooling(
        y, A[:, :2], codes, J, X_common=A[:, common_cols] if n_common else None
    )
    assert valid.tolist() == fits.valid.tolist() == [False] + [True] * 5 + [False] * 2 + [True]
    np.testing.assert_allclose(coef, fits.coef, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(cov, fits.cov, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(se, rows_se, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sigma, rows_sigma, rtol=1e-10)
    assert np.isnan(coef[~valid]).all() and np.isnan(se[~valid]).all()


def test_group_loglik_sums_matches_dense_normal():
    A, codes, sizes = _simulate(8, J=6)
    G = _gram(A, codes, 6)
    rng = np.random.default_rng(9)
    beta = rng.normal(size=(3, 2))
    L = np.tril(rng.normal(size=(3, 2, 2)))
    L[2, 1, 1] = 0.0  # a singular T
    sigma = rng.uniform(0.3, 1.5, 3)
    ll = sums.group_loglik_sums(G, sizes, [0, 1], [0, 1], 2, beta, L, sigma, chunk=2)
    assert ll.shape == (3, 6)
    for s in range(3):
        for j in range(6):
            rows = A[codes == j]
            cov = rows[:, :2] @ L[s] @ L[s].T @ rows[:, :2].T + sigma[s] ** 2 * np.eye(len(rows))
            expected = multivariate_normal(rows[:, :2] @ beta[s], cov).logpdf(rows[:, 2])
            np.testing.assert_allclose(ll[s, j], expected, rtol=1e-9, atol=1e-9)
    single = sums.group_loglik_sums(G, sizes, [0, 1], [0, 1], 2, beta[1], L[1], sigma[1])
    np.testing.assert_allclose(single, ll[1], rtol=1e-12)


@pytest.mark.parametrize("q", [1, 3])
def test_group_loglik_sums_other_numbers_of_varying_terms(q):
    """q = 1 and q = 3 take the other branches of the log-determinant (q = 2 above)."""
    rng = np.random.default_rng(q)
    sizes = rng.integers(1, 9, size=5)
    codes = np.repeat(np.arange(5), sizes)
    A = np.column_stack([np.ones(codes.size), rng.normal(size=(codes.size, 3))])  # 1, x, w, y
    G = _gram(A, codes, 5)
    beta, sigma = rng.normal(size=(2, 3)), rng.uniform(0.5, 1.5, 2)
    L = np.tril(rng.normal(size=(2, q, q)))
    ll = sums.group_loglik_sums(G, sizes, [0, 1, 2], list(range(q)), 3, beta, L, sigma)
    for s in range(2):
        for j in range(5):
            rows = A[codes == j]
            Z = rows[:, :q]
            cov = Z @ L[s] @ L[s].T @ Z.T + sigma[s] ** 2 * np.eye(len(rows))
            expected = multivariate_normal(rows[:, :3] @ beta[s], cov).logpdf(rows[:, 3])
            np.testing.assert_allclose(ll[s, j], expected, rtol=1e-9, atol=1e-9)
