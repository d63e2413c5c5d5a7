"""Numerical core of the pooling report, against direct dense computations."""

import numpy as np
import pytest

from hierbayes.core import pooling


@pytest.fixture
def grouped():
    rng = np.random.default_rng(5)
    J = 6
    codes = np.repeat(np.arange(J), [2, 5, 9, 3, 7, 12])
    x = rng.normal(size=codes.size)
    w_common = rng.normal(size=codes.size)
    y = 1 + 0.5 * x + 0.3 * w_common + rng.normal(size=J)[codes] + rng.normal(0, 0.4, codes.size)
    return codes, J, x, w_common, y


def test_wls_matches_lstsq():
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(50), rng.normal(size=50)])
    y = X @ [1.0, -2.0] + rng.normal(size=50)
    w = rng.uniform(0.5, 2, 50)
    coef, cov = pooling.wls(X, y, w)
    sw = np.sqrt(w)
    expected = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    np.testing.assert_allclose(coef, expected, rtol=1e-10)
    np.testing.assert_allclose(cov, np.linalg.inv(X.T @ np.diag(w) @ X), rtol=1e-10)


def test_grouped_wls_matches_each_group_alone(grouped):
    codes, J, x, _, y = grouped
    Z = np.column_stack([np.ones_like(x), x])
    fits = pooling.grouped_wls(Z, y, np.ones_like(y), codes, J)
    for j in range(J):
        rows = codes == j
        expected = np.linalg.lstsq(Z[rows], y[rows], rcond=None)[0]
        np.testing.assert_allclose(fits.coef[j], expected, rtol=1e-9)
        np.testing.assert_allclose(fits.cov[j], np.linalg.inv(Z[rows].T @ Z[rows]), rtol=1e-9)
    assert fits.valid.all()


def test_grouped_wls_rank_deficient_group_is_nan_not_a_crash():
    codes = np.array([0, 0, 0, 1])  # group 1 has one row: no slope
    Z = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 5.0]])
    fits = pooling.grouped_wls(Z, np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4), codes, 2)
    assert fits.valid.tolist() == [True, False]
    np.testing.assert_allclose(fits.coef[0], [1.0, 1.0])
    assert np.isnan(fits.coef[1]).all()


def test_no_pooling_with_common_slope_is_the_dummy_regression(grouped):
    """Gelman & Hill's no pooling, lm(y ~ w + factor(g) - 1), from a dense dummy matrix."""
    codes, J, _, w_common, y = grouped
    D = np.eye(J)[codes]  # dense indicators: fine in a test with 38 rows
    dense = np.column_stack([D, w_common])
    coef, rss, *_ = np.linalg.lstsq(dense, y, rcond=None)
    fits, se, sigma = pooling.no_pooling(
        y, np.ones((y.size, 1)), codes, J, X_common=w_common[:, None]
    )
    np.testing.assert_allclose(fits.coef[:, 0], coef[:J], rtol=1e-9)
    np.testing.assert_allclose(sigma, np.sqrt(rss[0] / (y.size - J - 1)), rtol=1e-9)
    counts = np.bincount(codes)
    np.testing.assert_allclose(se[:, 0], sigma / np.sqrt(counts), rtol=1e-9)


def test_no_pooling_group_means_and_pooled_sd(grouped):
    codes, J, _, _, y = grouped
    fits, se, sigma = pooling.no_pooling(y, np.ones((y.size, 1)), codes, J)
    means = np.array([y[codes == j].mean() for j in range(J)])
    rss = sum(((y[codes == j] - means[j]) ** 2).sum() for j in range(J))
    np.testing.assert_allclose(fits.coef[:, 0], means, rtol=1e-10)
    np.testing.assert_allclose(sigma, np.sqrt(rss / (y.size - J)), rtol=1e-10)


def test_no_pooling_with_known_se_is_each_estimate():
    y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
    s = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
    fits, se, sigma = pooling.no_pooling(y, np.ones((8, 1)), np.arange(8), 8, se=s)
    np.testing.assert_allclose(fits.coef[:, 0], y)
    np.testing.assert_allclose(se[:, 0], s)
    assert sigma == 1.0


def test_reliability_scalar_is_posterior_mean_of_tau2_over_tau2_plus_se2():
    rng = np.random.default_rng(2)
    tau = np.abs(rng.normal(0, 5, size=(1000, 1)))
    se = np.array([15.0, 10.0, 16.0])
    lam = pooling.reliability(tau, (se**2)[:, None, None], chunk=128)
    expected = np.mean(tau**2 / (tau**2 + se**2), axis=0)
    np.testing.assert_allclose(lam[:, 0], expected, rtol=1e-12)


def test_reliability_with_sigma_and_two_coefficients():
    rng = np.random.default_rng(3)
    sd = np.abs(rng.normal(1, 0.2, size=(50, 2)))
    sigma = np.abs(rng.normal(0.7, 0.05, size=50))
    A = rng.normal(size=(4, 2, 2))
    C = np.einsum("jab,jcb->jac", A, A) + np.eye(2)  # positive definite (Z_j'Z_j)^-1
    lam = pooling.reliability(sd, C, sigma, chunk=7)
    manual = np.zeros((4, 2))
    for s in range(50):
        T = np.diag(sd[s] ** 2)
        for j in range(4):
            manual[j] += np.diag(T @ np.linalg.inv(T + sigma[s] ** 2 * C[j])) / 50
    np.testing.assert_allclose(lam, manual, rtol=1e-10)


def test_pooling_factor_extremes():
    rng = np.random.default_rng(4)
    noise = rng.normal(size=(2000, 20, 1))
    assert pooling.pooling_factor(noise)[0] == pytest.approx(1.0, abs=0.01)  # all pooled
    sharp = np.linspace(-2, 2, 20)[None, :, None] + 1e-3 * noise
    assert pooling.pooling_factor(sharp)[0] == pytest.approx(0.0, abs=1e-4)


def test_shrinkage():
    out = pooling.shrinkage(
        np.array([28.0, 5.0, 3.0]), np.array([10.0, 6.0, 3.0]), np.array([7.0, 7.0, 3.0])
    )
    np.testing.assert_allclose(out[:2], [18 / 21, -1 / -2])
    assert np.isnan(out[2])


@pytest.mark.parametrize("family", ["poisson", "negativebinomial", "gamma"])
def test_irls_halves_steps_that_overshoot(family):
    """Counts and means near e^3, seen from eta = 0: a full first Fisher step overflows
    exp(eta) (before step-halving, hb.Model raised 'SVD did not converge' on 63 of 120 such
    data sets). Each group's fit equals statsmodels' GLM with the same fixed alpha."""
    import statsmodels.api as sm

    from hierbayes.spec.families import get

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(4), 20)
    x = rng.normal(size=80)
    mu = np.exp(3.0 + x + rng.normal(0, 0.8, 4)[g])
    y = {
        "poisson": rng.poisson(mu),
        "negativebinomial": rng.poisson(rng.gamma(2.0, mu / 2.0)),
        "gamma": rng.gamma(3.0, mu / 3.0),
    }[family].astype(float)
    aux = {"alpha": np.array(2.0 if family == "negativebinomial" else 3.0)}
    Z = np.column_stack([np.ones(80), x])
    fits = pooling.grouped_irls(Z, y, get(family), g, 4, aux=aux)
    sm_family = {
        "poisson": sm.families.Poisson(),
        "negativebinomial": sm.families.NegativeBinomial(alpha=0.5),  # statsmodels: 1 / ours
        "gamma": sm.families.Gamma(sm.families.links.Log()),
    }[family]
    for j in range(4):
        ref = sm.GLM(y[g == j], Z[g == j], family=sm_family).fit(tol=1e-12)
        np.testing.assert_allclose(fits.coef[j], ref.params, rtol=1e-6)
