"""The complete-pooling baseline of a design: one fit to all the data.

Weighted least squares for the identity link (weights 1/se^2 with known standard errors),
a GLM by IRLS otherwise; the offset enters with coefficient 1. The pooling report prints it,
and the planner measures residuals against it.
"""

from __future__ import annotations

import numpy as np

from hierbayes.core import pooling
from hierbayes.spec.design import Design

__all__ = ["complete_pooling"]


def complete_pooling(design: Design) -> np.ndarray:
    """One fit to all the data: weighted least squares, or a GLM by IRLS (coefficients of X).

    Examples
    --------
    >>> import hierbayes as hb
    >>> d = hb.Model("y ~ 1", hb.datasets.load("eight_schools"), se="sigma").design
    >>> complete_pooling(d).round(2).tolist()
    [7.69]
    """
    if not design.fixed_names:
        return np.zeros(0)
    if design.family.link == "identity":
        w = np.ones(design.n_obs) if design.se is None else 1.0 / design.se**2
        return pooling.wls(design.X, design.y_adjusted, w)[0]
    fit = pooling.grouped_irls(
        design.X,
        design.y,
        design.family,
        np.zeros(design.n_obs, dtype=np.int64),
        1,
        trials=design.trials,
        offset=None if design.offset is None else design.offset,
    )
    return fit.coef[0]
