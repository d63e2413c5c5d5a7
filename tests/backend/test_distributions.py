"""The exponential-family log densities of hierbayes.backend.distributions against PyMC's."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from hierbayes.backend.distributions import canonical_dist
from hierbayes.spec import families

ETA = np.array([-745.0, -40.0, -3.0, -1e-3, 0.0, 0.4, 5.0, 36.0, 700.0])


@pytest.mark.parametrize(
    ("name", "link", "pymc_dist"),
    [
        ("bernoulli", "logit", lambda e, n: pm.Bernoulli.dist(logit_p=e)),
        ("binomial", "logit", lambda e, n: pm.Binomial.dist(n=n, logit_p=e)),
        ("poisson", "log", lambda e, n: pm.Poisson.dist(mu=pt.exp(e))),
    ],
)
def test_canonical_log_density_is_pymcs(name, link, pymc_dist):
    """Value and gradient equal PyMC's own distribution's, to 1e-12, from eta = -745 to 700
    (binomial and Poisson from -40 to 36: beyond, PyMC's probability underflows to 0 and
    gives -inf, its mean overflows); draws come from PyMC's distribution."""
    family = families.get(name, link)
    eta_v = ETA if name == "bernoulli" else ETA[1:-1]
    rng = np.random.default_rng(5)
    n = rng.integers(1, 30, size=eta_v.size).astype(float)
    y = {
        "bernoulli": np.tile([0.0, 1.0], eta_v.size)[: eta_v.size],
        "binomial": np.floor(n * rng.uniform(size=eta_v.size)),
        "poisson": rng.poisson(3.0, size=eta_v.size).astype(float),
    }[name]
    eta = pt.vector("eta")
    ours = pm.logp(canonical_dist(family, eta, n), y)
    theirs = pm.logp(pymc_dist(eta, n), y)
    grads = [pt.grad(v.sum(), eta) for v in (ours, theirs)]
    got, want, g_got, g_want = (v.eval({eta: eta_v}) for v in (ours, theirs, *grads))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_got, g_want, rtol=1e-12, atol=1e-12)
    eta_d, n_d = np.full(20_000, 0.3), np.full(20_000, 5.0)
    draws = pm.draw(canonical_dist(family, pt.as_tensor(eta_d), n_d), random_seed=1)
    mean = {"bernoulli": 1 / (1 + np.exp(-0.3)), "binomial": 5 / (1 + np.exp(-0.3))}
    np.testing.assert_allclose(draws.mean(), mean.get(name, np.exp(0.3)), rtol=0.03)


def test_other_families_and_links_keep_pymcs_distribution():
    assert canonical_dist(families.get("bernoulli", "probit"), pt.vector(), None) is None
    assert canonical_dist(families.get("gaussian", "identity"), pt.vector(), None) is None
