"""Stacking weights of predictive distributions (Yao, Vehtari, Simpson & Gelman 2018).

Given each model k's leave-one-out log predictive density of each point i, lpd_ik, the
weights maximise sum_i log sum_k w_k exp(lpd_ik) over the simplex. ArviZ 0.23 exponentiates
lpd_ik as it is; a point's density underflows to 0 in every model once lpd_ik < -745, as a
whole group's does in leave-one-group-out (-1,400 for 1,000 rows), and its optimiser then
stays at the uniform start. Shifting each point by its largest lpd_ik changes the objective
by a constant only, so the weights are the same where ArviZ's work.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, minimize

__all__ = ["stacking_weights"]


def stacking_weights(lpd: np.ndarray) -> np.ndarray:
    """Stacking weights (K,) from pointwise log predictive densities ``lpd`` (N, K).

    Examples
    --------
    >>> import numpy as np
    >>> lpd = np.array([[-1400.0, -1440.0], [-1390.0, -1450.0]])  # model 0 better everywhere
    >>> stacking_weights(lpd).round(3).tolist()
    [1.0, 0.0]
    """
    lpd = np.asarray(lpd, dtype=float)
    K = lpd.shape[1]
    dens = np.exp(lpd - lpd.max(axis=1, keepdims=True))  # each row's best model at 1

    def score(w: np.ndarray) -> float:
        return -float(np.sum(np.log(dens @ w)))

    def gradient(w: np.ndarray) -> np.ndarray:
        return -np.sum(dens / (dens @ w)[:, None], axis=0)

    result = minimize(
        score,
        np.full(K, 1.0 / K),
        jac=gradient,
        bounds=Bounds(np.zeros(K), np.ones(K)),
        constraints=LinearConstraint(np.ones(K), 1.0, 1.0),
    )
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()
