"""Helpers shared by the backend tests."""

from collections.abc import Callable, Sequence

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
