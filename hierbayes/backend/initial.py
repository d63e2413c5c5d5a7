"""Where each chain of NUTS starts (nutpie's and PyMC's samplers).

PyMC jitters every parameter's start by U(-1, 1) on its unconstrained scale. For the
coefficient of a predictor on a large scale that is far too much: in lme4's VerbAgg data
(``Anger`` from 11 to 39) it moves the linear predictor by up to +-39, the log density at
the start falls to about -55,000 with gradients near 78,000, and one chain of four adapted
its step size to 1e-259 and never moved (R-hat 1.53, 1,000 divergences).

So when a predictor's root mean square exceeds :data:`MAX_RMS`, each population-level
coefficient is jittered by U(-1, 1) / max(1, rms(x_j)), which moves the linear predictor by
about as much as a unit-scale predictor's coefficient does; every other parameter is jittered
as PyMC does, from PyMC's own start (the prior's support point). When every predictor is on
a unit scale, PyMC's own jittered starts are kept as they are. nutpie starts the same way
(:func:`scaled_start` gives it its initial-point function); numpyro starts as it does.

(Two variants were tried on a funnel model, ``y ~ x + (x | g) + (1 | h)`` with h's true SD
0, 2 x 200 draws, seeds 1-9: coefficients started at the complete-pooling estimate gave up
to 102 divergences, the jitter above applied to unit-scale predictors too up to 205, PyMC's
starts 0-2.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pymc as pm
from pymc.initial_point import make_initial_point_fn

from hierbayes.spec.design import Design
from hierbayes.spec.names import SHIFTED_INTERCEPT

__all__ = ["MAX_RMS", "add_jitter", "initial_values", "jitter_scales", "scaled_start"]

#: PyMC's own starts are kept when no predictor's root mean square exceeds this.
MAX_RMS = 2.0


def jitter_scales(design: Design, sheared: bool = False) -> dict[str, float]:
    """The jitter half-width of each population-level coefficient, ``1 / max(1, rms(x_j))``,
    when some predictor's root mean square exceeds :data:`MAX_RMS`; else empty (the
    samplers' own U(-1, 1) jitter is kept). ``sheared``: the graph samples
    ``Intercept_shifted`` in the intercept's place (:mod:`hierbayes.backend.graph`).

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("exam").assign(lrt100=lambda d: 100 * d["standLRT"])
    >>> scales = jitter_scales(hb.Model("normexam ~ lrt100 + (1 | school)", df).design)
    >>> {k: round(v, 4) for k, v in scales.items()}
    {'Intercept': 1.0, 'lrt100': 0.0101}
    >>> jitter_scales(hb.Model("normexam ~ standLRT", df).design)
    {}
    """
    rms = design.column_rms()
    if not (rms > MAX_RMS).any():
        return {}
    scale = 1.0 / np.maximum(1.0, rms)
    names = [SHIFTED_INTERCEPT if sheared and n == "Intercept" else n for n in design.fixed_names]
    return {name: float(s) for name, s in zip(names, scale, strict=True)}


def add_jitter(point: dict[str, np.ndarray], scales: Mapping[str, float], seed: int) -> None:
    """Move each coefficient named in ``scales`` by U(-1, 1) times its scale, in place."""
    rng = np.random.default_rng(int(seed))
    for name, s in scales.items():
        point[name] = np.asarray(point[name] + rng.uniform(-1.0, 1.0) * s)


def scaled_start(model: pm.Model, scales: Mapping[str, float], **options: Any) -> Callable:
    """PyMC's initial-point function of ``model`` (``options`` go to
    :func:`pymc.initial_point.make_initial_point_fn`), with the coefficients in ``scales``
    jittered by :func:`add_jitter` and every other free variable as PyMC jitters it."""
    jittered = {rv for rv in model.free_RVs if rv.name not in scales}
    start = make_initial_point_fn(model=model, jitter_rvs=jittered, **options)
    if not scales:
        return start

    def scaled(seed: int) -> dict[str, np.ndarray]:
        point = start(seed)
        add_jitter(point, scales, seed)
        return point

    return scaled


def initial_values(
    model: pm.Model, scales: Mapping[str, float], chains: int, random_seed: int
) -> list[dict[str, np.ndarray]] | None:
    """One start per chain for PyMC's sampler (values on the parameters' own scale, by
    variable name), or None when PyMC's own starts do (``scales`` empty).

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("exam").assign(lrt100=lambda d: 100 * d["standLRT"])
    >>> m = hb.Model("normexam ~ lrt100 + (1 | school)", df)
    >>> starts = initial_values(m.build(), jitter_scales(m.design), 4, random_seed=1)
    >>> bound = 1 / (df["lrt100"] ** 2).mean() ** 0.5
    >>> all(abs(float(s["lrt100"])) <= bound for s in starts)
    True
    >>> initial_values(m.build(), {}, 4, 1) is None
    True
    """
    if not scales:
        return None
    start = scaled_start(model, scales, return_transformed=False)
    return [start(int(seed)) for seed in np.random.SeedSequence(random_seed).generate_state(chains)]
