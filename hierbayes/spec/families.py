"""Response families: a registry of names, each with its data check, likelihood and link.

| family | link | likelihood | response |
|---|---|---|---|
| ``gaussian`` | identity | Normal(eta, sigma) | numbers |
| ``bernoulli`` | logit | Bernoulli(logit^-1(eta)) | 0/1 (or booleans) |
| ``binomial`` | logit | Binomial(trials, logit^-1(eta)) | successes, 0 to ``trials`` |
| ``poisson`` | log | Poisson(exp(eta)) | non-negative integer counts |

An unknown name lists the valid ones. Each family also gives the IRLS working weights
(:meth:`Family.irls`) that the no-pooling and complete-pooling baselines use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln

from hierbayes.errors import DataError, SpecError, describe_rows, unknown_name

__all__ = ["Family", "GAUSSIAN", "BERNOULLI", "BINOMIAL", "POISSON", "FAMILIES", "get"]


def _numeric(column: str, values: pd.Series, family: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values) and family == "bernoulli":
        return values.to_numpy(dtype=float)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_complex_dtype(values)
    if not numeric or pd.api.types.is_bool_dtype(values):
        raise DataError(
            f"response column {column!r} has dtype {values.dtype}; the {family} family "
            "needs numbers: convert it with pd.to_numeric or choose another family"
        )
    return values.to_numpy(dtype=float)


@dataclass(frozen=True)
class Family:
    """A response distribution with its canonical link.

    ``has_sigma``: a residual SD is estimated (Gaussian without known SEs).
    ``needs_trials``: the likelihood takes a number of trials per row (binomial).
    """

    name: str
    link: str
    has_sigma: bool = False
    needs_trials: bool = False

    def check_response(
        self, column: str, values: pd.Series, index: pd.Index, trials: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the response as floats, or raise naming the column and the bad rows."""
        y = _numeric(column, values, self.name)
        bad, need = np.zeros(len(y), bool), ""
        if self.name == "bernoulli":
            bad, need = ~np.isin(y, (0.0, 1.0)), "0 or 1"
        elif self.name in ("binomial", "poisson"):
            bad, need = (y < 0) | (y != np.round(y)), "non-negative integer counts"
            if self.name == "binomial" and not bad.any() and trials is not None:
                above = y > trials
                if above.any():
                    raise DataError(
                        f"response column {column!r} exceeds its number of trials in "
                        f"{describe_rows(index[above])}: successes must lie in 0..trials; "
                        "check both columns"
                    )
        if bad.any():
            raise DataError(
                f"response column {column!r} has values that are not {need} in "
                f"{describe_rows(index[bad])}, as the {self.name} family needs: correct them "
                "or choose another family"
            )
        return y

    def mean(self, eta: np.ndarray) -> np.ndarray:
        """The inverse link (per trial for the binomial family).

        Examples
        --------
        >>> import numpy as np
        >>> POISSON.mean(np.log(np.array([2.0]))).tolist()
        [2.0]
        """
        if self.link == "identity":
            return eta
        if self.link == "logit":
            return expit(eta)
        return np.exp(eta)

    def log_density(
        self,
        y: np.ndarray,
        eta: np.ndarray,
        *,
        sigma: np.ndarray | float | None = None,
        trials: np.ndarray | None = None,
    ) -> np.ndarray:
        """Pointwise log-likelihood of ``y`` given the linear predictor (NumPy, broadcasting).

        The same densities as :meth:`likelihood`, for the log-likelihood that LOO uses.

        Examples
        --------
        >>> import numpy as np
        >>> round(float(GAUSSIAN.log_density(np.zeros(1), np.zeros(1), sigma=1.0)[0]), 6)
        -0.918939
        >>> round(float(BERNOULLI.log_density(np.ones(1), np.zeros(1))[0]), 6)  # log 1/2
        -0.693147
        """
        if self.name == "gaussian":
            r = (y - eta) / sigma
            return -0.5 * np.log(2.0 * np.pi) - np.log(sigma) - 0.5 * r**2
        if self.name == "poisson":
            return y * eta - np.exp(eta) - gammaln(y + 1.0)
        n = trials if self.name == "binomial" and trials is not None else np.ones_like(y)
        out = y * eta - n * np.logaddexp(0.0, eta)
        if self.name == "binomial":
            out = out + gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
        return out

    def link_value(self, mean: float) -> float:
        """The link of a mean: the centre of a default intercept prior."""
        if self.link == "identity":
            return mean
        if self.link == "logit":
            p = min(max(mean, 1e-3), 1 - 1e-3)
            return float(np.log(p / (1 - p)))
        return float(np.log(max(mean, 1e-3)))

    def irls(
        self, eta: np.ndarray, y: np.ndarray, trials: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Working response and weights of one IRLS step (canonical links).

        Examples
        --------
        >>> import numpy as np
        >>> z, w = BERNOULLI.irls(np.zeros(1), np.ones(1), None)
        >>> z.tolist(), w.tolist()
        ([2.0], [0.25])
        """
        if self.link == "identity":
            return y, np.ones_like(y)
        mu = self.mean(eta)
        if self.link == "logit":
            n = np.ones_like(y) if trials is None else trials
            w = np.maximum(n * mu * (1 - mu), 1e-10)
            return eta + (y - n * mu) / w, w
        w = np.maximum(mu, 1e-10)
        return eta + (y - mu) / w, w


GAUSSIAN = Family(name="gaussian", link="identity", has_sigma=True)
BERNOULLI = Family(name="bernoulli", link="logit")
BINOMIAL = Family(name="binomial", link="logit", needs_trials=True)
POISSON = Family(name="poisson", link="log")

#: Family name -> family.
FAMILIES: dict[str, Family] = {f.name: f for f in (GAUSSIAN, BERNOULLI, BINOMIAL, POISSON)}


def get(name: str | Family) -> Family:
    """Look a family up by name.

    Examples
    --------
    >>> get("poisson").link
    'log'
    """
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise SpecError(unknown_name("family", str(name), sorted(FAMILIES)))
    return FAMILIES[name]
