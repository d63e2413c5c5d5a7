"""Helpers shared by the backend tests."""

from collections.abc import Callable, Sequence

import arviz as az
import numpy as np


def assert_change_of_variables(
    plain,
    other,
    to_other: Callable[[dict], dict],
    reported: Sequence[str],
    log_jacobian: Callable[[dict], float] = lambda p: 0.0,
) -> None:
    """At three random points p of the ``plain`` graph (its unconstrained values), the point
    ``to_other(p)`` of the ``other`` graph has the log density of p plus ``log_jacobian(p)``
    and the same ``reported`` variables: ``other`` is ``plain`` in other coordinates."""

    def values(g):
        outputs = g.replace_rvs_by_values([g[n] for n in reported])
        return g.compile_fn(outputs, inputs=g.value_vars, on_unused_input="ignore")

    logp, logp_plain = other.compile_logp(), plain.compile_logp()
    got, want = values(other), values(plain)
    rng = np.random.default_rng(7)
    for _ in range(3):
        p = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in plain.initial_point().items()}
        q = to_other(p)
        assert sorted(q) == sorted(other.initial_point())
        np.testing.assert_allclose(logp(q), logp_plain(p) + log_jacobian(p), rtol=1e-12)
        for var, a, b in zip(reported, got(q), want(p), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=var)


def mcse_distance(a, b, names: Sequence[str]) -> dict[str, float]:
    """Two independent fits of one posterior: for each of ``names``, the largest over its
    elements of |mean_a - mean_b| / sqrt(MCSE_a^2 + MCSE_b^2)."""
    out = {}
    for var in names:
        mean_a, mean_b = (x.posterior[var].mean(("chain", "draw")) for x in (a, b))
        mcse = np.hypot(*(az.mcse(x, var_names=[var])[var] for x in (a, b)))
        out[var] = float((np.abs(mean_a - mean_b) / mcse).max())
    return out


def assert_posteriors_agree(a, b, names: Sequence[str], k: float = 4.0) -> None:
    """For every element of each of ``names``, the posterior means of the fits ``a`` and
    ``b`` differ by less than ``k`` of their combined Monte Carlo standard errors
    (:func:`mcse_distance`; a group effect as a scalar: its error includes the intercept's,
    which it shares)."""
    for var, z in mcse_distance(a, b, names).items():
        assert z < k, f"{var}: {z:.2f} MCSE apart"
