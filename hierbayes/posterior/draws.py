"""Posterior draws as arrays, and the two quantities computed from them in several places.

Each array has the draws of all chains stacked first, (S, ...), chain by chain. The
covariance of a factor's effects, ``T_s = diag(sd_s) corr_s diag(sd_s)``, and the linear
predictor, ``eta_s = offset + X beta_s + sum_f Z u_fs[codes]``, live here once.
"""

from __future__ import annotations

from collections.abc import Sequence

import arviz as az
import numpy as np

from hierbayes.errors import SpecError
from hierbayes.spec.design import Design, FactorDesign
from hierbayes.spec.dpars import DparDesign

__all__ = [
    "RowDraws",
    "aux_draws",
    "fixed_draws",
    "group_covariance",
    "linear_predictor",
    "posterior_draws",
]


def posterior_draws(idata: az.InferenceData, name: str) -> np.ndarray:
    """Posterior draws of ``name`` with chain and draw stacked first: (S, ...).

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> idata = az.from_dict(posterior={"mu": np.arange(6.0).reshape(2, 3)})
    >>> posterior_draws(idata, "mu").tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    if name not in idata.posterior:
        raise SpecError(f"the posterior has no variable {name!r}; was it built by hierbayes?")
    da = idata.posterior[name].transpose("chain", "draw", ...)
    # a reshape, not xarray's stack: a new dimension could clash with a user's (a factor
    # named "sample", as in lme4's Penicillin data)
    return da.values.reshape(-1, *da.shape[2:])


def fixed_draws(idata: az.InferenceData, design: Design) -> np.ndarray:
    """Posterior draws of the population-level coefficients, (S, p); (S, 0) when there are none.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("y ~ 1", hb.datasets.load("eight_schools")).design
    >>> fixed_draws(az.from_dict(posterior={"Intercept": np.ones((2, 3))}), d).shape
    (6, 1)
    """
    post = idata.posterior
    if not design.fixed_names:
        return np.zeros((post.sizes["chain"] * post.sizes["draw"], 0))
    return np.stack([posterior_draws(idata, n) for n in design.fixed_names], axis=-1)


def aux_draws(
    idata: az.InferenceData,
    design: Design,
    se: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The family's auxiliary parameters (or those in ``names``), shaped to broadcast
    against eta (S, N).

    Scalars come as (S, 1), cutpoints as (S, 1, K - 1). With known standard errors,
    ``sigma`` is ``se`` (the design's by default), (N,). A parameter with a formula of its own
    comes as :class:`RowDraws`, sliced by draws like the (S, N) array it stands for.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> d = hb.Model("y ~ 1", hb.datasets.load("eight_schools")).design
    >>> aux_draws(az.from_dict(posterior={"sigma": np.ones((2, 3))}), d)["sigma"].shape
    (6, 1)
    """
    out: dict[str, np.ndarray] = {}
    names = design.family.aux if names is None else names
    for name in names:
        if name not in design.aux:
            continue
        values = posterior_draws(idata, name)
        out[name] = values[:, None, :] if name == "cutpoints" else values[:, None]
    if design.family.has_sigma and design.se is not None and "sigma" in names:
        out["sigma"] = design.se if se is None else se
    for d in design.dpars:
        if d.name in names:
            out[d.name] = RowDraws(idata, d)
    return out


class RowDraws:
    """Draws of a distributional parameter, exp(X^d beta^d + Z^d u^d), per draw and row.

    (S, N) numbers can be too many to hold at once, so they are computed a slice of draws at
    a time: ``values[sl]`` gives (s, N) for the draws in ``sl``. ``X`` and ``effects``
    replace the design's own rows (new data: :func:`hierbayes.analysis.predict.predict`).
    """

    ndim = 2

    def __init__(
        self,
        idata: az.InferenceData,
        d: DparDesign,
        X: np.ndarray | None = None,
        effects: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.X = d.X if X is None else X
        post = idata.posterior
        S = post.sizes["chain"] * post.sizes["draw"]
        draws = [posterior_draws(idata, n) for n in d.fixed_names]
        self.beta = np.stack(draws, axis=-1) if draws else np.zeros((S, 0))
        if effects is None:
            effects = [(posterior_draws(idata, f"u_{f.name}"), f.codes, f.Z) for f in d.factors]
        self.effects = list(effects)

    def __getitem__(self, sl: slice) -> np.ndarray:
        parts = [(u[sl], codes, Z) for u, codes, Z in self.effects]
        return np.exp(linear_predictor(self.X, 0.0, self.beta[sl], parts))

    def group_rms(self, codes: np.ndarray, n_groups: int, chunk: int = 256) -> np.ndarray:
        """Root mean square over each group's rows, per draw: (S, J).

        Examples
        --------
        >>> import arviz as az, numpy as np, pandas as pd, hierbayes as hb
        >>> df = pd.DataFrame({"y": [1.0, 2, 4, 3], "g": ["a", "a", "b", "b"]})
        >>> d = hb.Model("y ~ 1", df, sigma="~ 1").design.dpars[0]
        >>> idata = az.from_dict(posterior={"sigma_Intercept": np.log([[2.0, 3.0]])})
        >>> RowDraws(idata, d).group_rms(np.array([0, 0, 1, 1]), 2).round(6).tolist()
        [[2.0, 2.0], [3.0, 3.0]]
        """
        S = self.beta.shape[0]
        counts = np.bincount(codes, minlength=n_groups)
        out = np.empty((S, n_groups))
        for start in range(0, S, chunk):
            sl = slice(start, min(start + chunk, S))
            squares = self[sl] ** 2  # (s, N)
            sums = np.stack(
                [np.bincount(codes, weights=row, minlength=n_groups) for row in squares]
            )
            out[sl] = np.sqrt(sums / counts)
        return out


def group_covariance(idata: az.InferenceData, factor: FactorDesign) -> np.ndarray:
    """T_s = diag(sd_s) corr_s diag(sd_s), (S, q, q); corr is I for uncorrelated effects.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> f = hb.Model("y ~ 1 + (1 | school)", hb.datasets.load("eight_schools")).design.factors[0]
    >>> idata = az.from_dict(posterior={"sd_school": np.full((1, 2, 1), 3.0)})
    >>> group_covariance(idata, f)[:, 0, 0].tolist()
    [9.0, 9.0]
    """
    sd = posterior_draws(idata, f"sd_{factor.name}")
    corr = (
        posterior_draws(idata, f"corr_{factor.name}") if factor.correlated else np.eye(sd.shape[1])
    )
    return sd[:, :, None] * corr * sd[:, None, :]


def linear_predictor(
    X: np.ndarray,
    offset: np.ndarray | float,
    beta: np.ndarray,
    effects: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> np.ndarray:
    """eta = offset + X beta + sum_f Z u_f[codes], (s, N).

    ``beta`` is (s, p); each effect is ``(u, codes, Z)``: u (s, J, q) the group effects,
    codes (N,) each row's group, Z (N, q) the group-level columns.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.array([[[1.0], [2.0]]])  # one draw, two groups
    >>> linear_predictor(np.ones((3, 1)), 0.5, np.array([[10.0]]),
    ...                  [(u, np.array([0, 1, 1]), np.ones((3, 1)))]).tolist()
    [[11.5, 12.5, 12.5]]
    """
    eta = beta @ X.T + offset
    for u, codes, Z in effects:
        eta += np.einsum("snk,nk->sn", u[:, codes], Z)
    return eta
