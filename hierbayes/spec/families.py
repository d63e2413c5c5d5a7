"""Response families: a registry of names, each with its data check, density, links and mean.

| family | links (default first) | likelihood, mean mu = g^-1(eta) | auxiliary | response |
|---|---|---|---|---|
| ``gaussian`` | identity, log | Normal(mu, sigma) | sigma | numbers |
| ``student_t`` | identity | StudentT(nu, mu, sigma) | sigma, nu | numbers |
| ``lognormal`` | identity | log y ~ Normal(eta, sigma) | sigma | > 0 |
| ``gamma`` | log | Gamma, mean mu, shape alpha | alpha | > 0 |
| ``beta`` | logit, probit, cloglog | Beta(mu phi, (1 - mu) phi) | phi | in (0, 1) |
| ``bernoulli`` | logit, probit, cloglog | Bernoulli(mu) | | 0/1 |
| ``binomial`` | logit, probit, cloglog | Binomial(trials, mu) | | 0..trials |
| ``poisson`` | log | Poisson(mu) | | counts |
| ``negativebinomial`` | log | NB2: mean mu, variance mu + mu^2 / alpha | alpha | counts |
| ``zero_inflated_poisson`` | log | 0 with probability zi, else Poisson(mu) | zi | counts |
| ``zero_inflated_negativebinomial`` | log | 0 with probability zi, else NB2 | alpha, zi | counts |
| ``cumulative`` | logit, probit | P(y <= k) = F(c_k - eta), c ordered | cutpoints | ordinal |

``alpha`` of the negative binomial is PyMC's and Bambi's (larger is closer to Poisson);
statsmodels' NB2 ``alpha`` is its inverse. ``zi`` is the probability of a structural zero
(brms' ``zi``; PyMC's ``psi`` is 1 - zi). The ``cumulative`` model has no intercept: the
cutpoints take its place, as in ``ordinal::clm`` and ``MASS::polr``.

An unknown name lists the valid ones. Each family also gives the IRLS working response and
weights (:meth:`Family.irls`) that the no-pooling and complete-pooling baselines use, with
its auxiliary parameters held fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln, ndtr

from hierbayes.errors import DataError, SpecError, describe_rows, unknown_name
from hierbayes.spec import links as L
from hierbayes.spec.columns import is_numeric

__all__ = [
    "Family",
    "FAMILIES",
    "get",
    "level_scores",
    "ordinal_codes",
    "GAUSSIAN",
    "BERNOULLI",
    "BINOMIAL",
    "POISSON",
]

#: Response checks: support -> (test of a bad value, what the values must be).
_SUPPORT = {
    "real": (lambda y: np.zeros(len(y), bool), "numbers"),
    "positive": (lambda y: y <= 0, "positive numbers (> 0)"),
    "unit": (lambda y: (y <= 0) | (y >= 1), "strictly between 0 and 1"),
    "binary": (lambda y: ~np.isin(y, (0.0, 1.0)), "0 or 1"),
    "count": (lambda y: (y < 0) | (y != np.round(y)), "non-negative integer counts"),
}
_SUPPORT["binomial"] = _SUPPORT["count"]

_ADVICE = {
    "positive": "; a value of 0 needs a hurdle model, which hierbayes does not have yet",
    "unit": "; values of exactly 0 or 1 need a zero-one-inflated beta model, which "
    "hierbayes does not have yet: squeeze them, e.g. (y * (n - 1) + 0.5) / n",
}


def _numeric(column: str, values: pd.Series, family: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values) and family == "bernoulli":
        return values.to_numpy(dtype=float)
    if not is_numeric(values) or pd.api.types.is_complex_dtype(values):
        raise DataError(
            f"response column {column!r} has dtype {values.dtype}; the {family} family "
            "needs numbers: convert it with pd.to_numeric or choose another family"
        )
    return values.to_numpy(dtype=float)


def ordinal_codes(column: str, values: pd.Series, index: pd.Index) -> tuple[np.ndarray, tuple]:
    """An ordinal response as codes 0..K-1 and its K levels, in order.

    An ordered categorical keeps its categories; integers take every value from the smallest
    to the largest. A level with no row is an error: its cutpoint would be unidentified.

    Examples
    --------
    >>> import pandas as pd
    >>> codes, levels = ordinal_codes("y", pd.Series([2, 3, 5, 4, 2]), pd.RangeIndex(5))
    >>> codes.astype(int).tolist(), levels
    ([0, 1, 3, 2, 0], (2, 3, 4, 5))
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        if not values.cat.ordered:
            raise DataError(
                f"response column {column!r} is an unordered categorical: the cumulative "
                "family needs an order; use values.cat.as_ordered() or "
                "pd.Categorical(values, categories=[...], ordered=True)"
            )
        codes, levels = values.cat.codes.to_numpy(), tuple(values.cat.categories)
    else:
        numeric = is_numeric(values)
        y = values.to_numpy(dtype=float) if numeric else None
        if y is None or np.any(y != np.round(y)):
            bad = np.ones(len(values), bool) if y is None else y != np.round(y)
            raise DataError(
                f"response column {column!r} has values that are not whole numbers in "
                f"{describe_rows(index[bad])}: the cumulative family needs integers or an "
                "ordered categorical (pd.Categorical(..., ordered=True))"
            )
        low = int(y.min())
        codes, levels = (y - low).astype(np.int64), tuple(range(low, int(y.max()) + 1))
    seen = np.bincount(codes, minlength=len(levels))
    if len(levels) < 2 or (seen == 0).any():
        missing = [levels[k] for k in np.flatnonzero(seen == 0)]
        what = f"levels {missing} have no rows" if missing else "it has one level"
        raise DataError(
            f"response column {column!r}: {what}; every level of an ordinal response needs "
            "data to place its cutpoint. Merge empty levels into a neighbour, or drop unused "
            "categories with values.cat.remove_unused_categories()"
        )
    return codes.astype(float), levels


def level_scores(levels: tuple) -> np.ndarray:
    """The values an ordinal response's levels stand for: its integers, or positions 1..K of
    an ordered categorical's categories (what predictions of an ordinal response report).

    Examples
    --------
    >>> level_scores((2, 3, 4)).tolist(), level_scores(("low", "high")).tolist()
    ([2.0, 3.0, 4.0], [1.0, 2.0])
    """
    if all(isinstance(v, int | np.integer) for v in levels):
        return np.asarray(levels, dtype=float)
    return np.arange(1.0, len(levels) + 1.0)


def _nb(y, mu, alpha):
    return (
        gammaln(y + alpha)
        - gammaln(alpha)
        - gammaln(y + 1.0)
        + alpha * (np.log(alpha) - np.log(alpha + mu))
        + y * (np.log(mu) - np.log(alpha + mu))
    )


def _zero_inflated(y, zi, log_p):
    """log p(y) of zero inflation over a count density whose log is ``log_p``."""
    zero = np.logaddexp(np.log(zi), np.log1p(-zi) + log_p)
    return np.where(y == 0, zero, np.log1p(-zi) + log_p)


def _cumulative_cdf(link: str, x):
    return expit(x) if link == "logit" else ndtr(x)


def category_probs(link: str, eta: np.ndarray, cutpoints: np.ndarray) -> np.ndarray:
    """P(y = k | eta) over the K levels: F(c_k - eta) - F(c_{k-1} - eta), last axis k.

    ``cutpoints`` (..., K - 1) broadcasts against ``eta[..., None]``.

    Examples
    --------
    >>> import numpy as np
    >>> category_probs("logit", np.zeros(1), np.array([0.0])).tolist()
    [[0.5, 0.5]]
    """
    F = _cumulative_cdf(link, cutpoints - np.asarray(eta)[..., None])
    shape = F.shape[:-1] + (1,)
    F = np.concatenate([np.zeros(shape), F, np.ones(shape)], axis=-1)
    return np.diff(F, axis=-1)


def _cumulative(link: str, y, eta, cutpoints):
    p = category_probs(link, eta, cutpoints)  # (..., N, K)
    k = np.broadcast_to(np.asarray(y, dtype=np.int64), p.shape[:-1])
    return np.log(np.take_along_axis(p, k[..., None], axis=-1)[..., 0])


@dataclass(frozen=True)
class Family:
    """A response distribution, its link and its auxiliary parameters.

    ``links``: the links it takes, the default first. ``support``: what the response must
    hold (``_SUPPORT``, or ``"ordinal"``). ``aux``: the auxiliary parameters, by their names
    in the posterior. ``needs_trials``: the likelihood takes a number of trials per row.
    """

    name: str
    links: tuple[str, ...]
    support: str
    aux: tuple[str, ...] = ()
    needs_trials: bool = False
    link: str = ""

    def __post_init__(self) -> None:
        if not self.link:
            object.__setattr__(self, "link", self.links[0])

    @property
    def has_sigma(self) -> bool:
        return "sigma" in self.aux

    @property
    def ordinal(self) -> bool:
        return self.support == "ordinal"

    @property
    def mean_aux(self) -> tuple[str, ...]:
        """The auxiliary parameters the mean depends on (:meth:`mean`)."""
        if self.name == "lognormal":
            return ("sigma",)
        return tuple(a for a in self.aux if a in ("zi", "cutpoints"))

    def with_link(self, link: str | None) -> Family:
        """The family with another of its links (``None``: the default).

        Examples
        --------
        >>> get("bernoulli").with_link("probit").link
        'probit'
        """
        if link is None:
            return replace(self, link=self.links[0])
        L.get(link, self.links, self.name)
        return replace(self, link=link)

    def check_response(
        self, column: str, values: pd.Series, index: pd.Index, trials: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the response as floats, or raise naming the column and the bad rows."""
        y = _numeric(column, values, self.name)
        bad_of, need = _SUPPORT[self.support]
        bad = bad_of(y)
        if bad.any():
            raise DataError(
                f"response column {column!r} has values that are not {need} in "
                f"{describe_rows(index[bad])}, as the {self.name} family needs: correct them "
                f"or choose another family{_ADVICE.get(self.support, '')}"
            )
        if self.needs_trials and trials is not None and (y > trials).any():
            raise DataError(
                f"response column {column!r} exceeds its number of trials in "
                f"{describe_rows(index[y > trials])}: successes must lie in 0..trials; "
                "check both columns"
            )
        return y

    def link_response(self, y: np.ndarray) -> np.ndarray:
        """The response on the scale of an identity-link linear predictor (log y: lognormal)."""
        return np.log(y) if self.name == "lognormal" else y

    def inverse_link(self, eta: np.ndarray) -> np.ndarray:
        """g^-1(eta): the mean of a row, before zero inflation (per trial: binomial).

        Examples
        --------
        >>> import numpy as np
        >>> POISSON.inverse_link(np.log(np.array([2.0]))).tolist()
        [2.0]
        """
        return L.LINKS[self.link].inverse(eta)

    def mean(self, eta: np.ndarray, aux: Mapping[str, Any] | None = None) -> np.ndarray:
        """E[y | eta] on the response's scale (per trial for the binomial family).

        ``aux`` holds the auxiliary parameters, broadcasting against ``eta``; the cumulative
        family's mean is the expected level position 0..K-1 (see :func:`category_probs`).
        """
        aux = aux or {}
        if self.name == "lognormal":
            return np.exp(eta + 0.5 * aux["sigma"] ** 2)
        if self.ordinal:
            p = category_probs(self.link, eta, aux["cutpoints"])
            return p @ np.arange(p.shape[-1], dtype=float)
        mu = self.inverse_link(eta)
        return mu * (1.0 - aux["zi"]) if "zi" in self.aux else mu

    def log_density(
        self,
        y: np.ndarray,
        eta: np.ndarray,
        aux: Mapping[str, Any] | None = None,
        *,
        trials: np.ndarray | None = None,
    ) -> np.ndarray:
        """Pointwise log-likelihood of ``y`` given the linear predictor (NumPy, broadcasting).

        The densities of :func:`hierbayes.backend.distributions.likelihood`, for LOO and the
        baselines. ``aux`` maps each auxiliary parameter (``sigma``, ``nu``, ...) to its
        value(s); for the gaussian family with known standard errors, ``sigma`` is the SE.

        Examples
        --------
        >>> import numpy as np
        >>> round(float(GAUSSIAN.log_density(np.zeros(1), np.zeros(1), {"sigma": 1.0})[0]), 6)
        -0.918939
        >>> round(float(BERNOULLI.log_density(np.ones(1), np.zeros(1))[0]), 6)  # log 1/2
        -0.693147
        """
        a = aux or {}
        name = self.name
        if name in ("gaussian", "lognormal"):
            r = (self.link_response(y) - self.inverse_link(eta)) / a["sigma"]
            out = -0.5 * np.log(2.0 * np.pi) - np.log(a["sigma"]) - 0.5 * r**2
            return out - np.log(y) if name == "lognormal" else out
        if name == "student_t":
            nu, sigma = a["nu"], a["sigma"]
            r = (y - eta) / sigma
            return (
                gammaln((nu + 1.0) / 2.0)
                - gammaln(nu / 2.0)
                - 0.5 * np.log(nu * np.pi)
                - np.log(sigma)
                - (nu + 1.0) / 2.0 * np.log1p(r**2 / nu)
            )
        if self.ordinal:
            return _cumulative(self.link, y, eta, np.asarray(a["cutpoints"]))
        mu = self.inverse_link(eta)
        if name == "gamma":
            alpha = a["alpha"]
            rate = alpha / mu
            return alpha * np.log(rate) - gammaln(alpha) + (alpha - 1.0) * np.log(y) - rate * y
        if name == "beta":
            phi = a["phi"]
            p, q = mu * phi, (1.0 - mu) * phi
            return (
                gammaln(phi)
                - gammaln(p)
                - gammaln(q)
                + (p - 1.0) * np.log(y)
                + (q - 1.0) * np.log1p(-y)
            )
        if name in ("poisson", "zero_inflated_poisson"):
            out = y * np.log(mu) - mu - gammaln(y + 1.0)
        elif name in ("negativebinomial", "zero_inflated_negativebinomial"):
            out = _nb(y, mu, a["alpha"])
        else:  # bernoulli, binomial
            n = trials if self.needs_trials and trials is not None else np.ones_like(y)
            if self.link == "logit":
                out = y * eta - n * np.logaddexp(0.0, eta)
            else:
                mu = np.clip(mu, 1e-300, 1.0 - 1e-16)
                out = y * np.log(mu) + (n - y) * np.log1p(-mu)
            if self.needs_trials:
                out = out + gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
        return _zero_inflated(y, a["zi"], out) if "zi" in self.aux else out

    def sample(
        self,
        eta: np.ndarray,
        aux: Mapping[str, Any],
        trials: np.ndarray | float,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Draws of the response given ``eta`` (an ordinal response: level codes 0..K-1).

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = get("negativebinomial").sample(np.full(20000, np.log(4.0)), {"alpha": 2.0}, 1, rng)
        >>> round(float(y.mean()), 1), round(float(y.var()), 0)  # mu 4, variance 4 + 16 / 2
        (4.0, 12.0)
        """
        name = self.name
        if name == "lognormal":
            return np.exp(rng.normal(eta, aux["sigma"]))
        if self.ordinal:
            p = category_probs(self.link, eta, aux["cutpoints"])
            u = rng.uniform(size=p.shape[:-1] + (1,))
            return (np.cumsum(p, axis=-1)[..., :-1] < u).sum(axis=-1).astype(float)
        mu = self.inverse_link(eta)
        if name == "gaussian":
            out = rng.normal(mu, aux["sigma"])
        elif name == "student_t":
            out = mu + aux["sigma"] * rng.standard_t(aux["nu"], size=np.shape(mu))
        elif name == "gamma":
            out = rng.gamma(aux["alpha"], mu / aux["alpha"])
        elif name == "beta":
            out = rng.beta(mu * aux["phi"], (1.0 - mu) * aux["phi"])
        elif name in ("bernoulli", "binomial"):
            n = np.asarray(trials if self.needs_trials else 1, dtype=np.int64)
            out = rng.binomial(n, mu).astype(float)
        elif "alpha" in self.aux:  # the negative binomials: a gamma mixture of Poissons
            out = rng.poisson(rng.gamma(aux["alpha"], mu / aux["alpha"])).astype(float)
        else:
            out = rng.poisson(mu).astype(float)
        if "zi" in self.aux:
            out = np.where(rng.uniform(size=out.shape) < aux["zi"], 0.0, out)
        return out

    def link_value(self, mean: float) -> float:
        """The link of a mean: the centre of a default intercept prior."""
        link = L.LINKS[self.link]
        if link.domain == "unit":
            mean = min(max(mean, 1e-3), 1 - 1e-3)
        elif link.domain == "positive":
            mean = max(mean, 1e-3)
        return float(link.link(mean))

    def irls(
        self,
        eta: np.ndarray,
        y: np.ndarray,
        trials: np.ndarray | None,
        aux: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Working response and weights of one IRLS (Fisher scoring) step, ``aux`` held fixed.

        GLM families use w = (dmu/deta)^2 / Var(y), z = eta + (y - mu) / (dmu/deta); the
        others a Newton step on the log-density, w = -d^2 log p / d eta^2 (central
        differences), z = eta + (d log p / d eta) / w.

        Examples
        --------
        >>> import numpy as np
        >>> z, w = BERNOULLI.irls(np.zeros(1), np.ones(1), None)
        >>> z.tolist(), w.tolist()
        ([2.0], [0.25])
        """
        aux = aux or {}
        variance = _VARIANCE.get(self.name)
        if variance is None:  # Newton on the log-density
            h = 1e-4
            lp = self.log_density(y, eta + h, aux, trials=trials)
            l0 = self.log_density(y, eta, aux, trials=trials)
            lm = self.log_density(y, eta - h, aux, trials=trials)
            w = np.maximum(-(lp - 2.0 * l0 + lm) / h**2, 1e-10)
            return eta + (lp - lm) / (2.0 * h) / w, w
        y = self.link_response(y)
        n = np.ones_like(y) if trials is None or not self.needs_trials else trials
        mu = n * self.inverse_link(eta)
        dmu = n * L.LINKS[self.link].derivative(eta)
        dmu = np.where(np.abs(dmu) < 1e-300, 1e-300, dmu)
        w = np.maximum(dmu**2 / np.maximum(variance(mu, n, aux), 1e-300), 1e-10)
        return eta + (y - mu) / dmu, w


#: Var(y) as a function of the mean (and trials, aux), for the GLM families' IRLS.
_VARIANCE = {
    "gaussian": lambda mu, n, a: np.ones_like(mu),
    "student_t": lambda mu, n, a: np.ones_like(mu),
    "lognormal": lambda mu, n, a: np.ones_like(mu),
    "bernoulli": lambda mu, n, a: mu * (1.0 - mu / n),
    "binomial": lambda mu, n, a: mu * (1.0 - mu / n),
    "poisson": lambda mu, n, a: mu,
    "gamma": lambda mu, n, a: mu**2 / a.get("alpha", 1.0),
    "negativebinomial": lambda mu, n, a: mu + mu**2 / a.get("alpha", 1e8),
}

GAUSSIAN = Family("gaussian", ("identity", "log"), "real", ("sigma",))
BERNOULLI = Family("bernoulli", ("logit", "probit", "cloglog"), "binary")
BINOMIAL = Family("binomial", ("logit", "probit", "cloglog"), "binomial", needs_trials=True)
POISSON = Family("poisson", ("log",), "count")

#: Family name -> family, with its default link.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        GAUSSIAN,
        Family("student_t", ("identity",), "real", ("sigma", "nu")),
        Family("lognormal", ("identity",), "positive", ("sigma",)),
        Family("gamma", ("log",), "positive", ("alpha",)),
        Family("beta", ("logit", "probit", "cloglog"), "unit", ("phi",)),
        BERNOULLI,
        BINOMIAL,
        POISSON,
        Family("negativebinomial", ("log",), "count", ("alpha",)),
        Family("zero_inflated_poisson", ("log",), "count", ("zi",)),
        Family("zero_inflated_negativebinomial", ("log",), "count", ("alpha", "zi")),
        Family("cumulative", ("logit", "probit"), "ordinal", ("cutpoints",)),
    )
}


def get(name: str | Family, link: str | None = None) -> Family:
    """Look a family up by name, with its default link or ``link``.

    Examples
    --------
    >>> get("poisson").link
    'log'
    >>> get("binomial", "cloglog").link
    'cloglog'
    """
    if isinstance(name, Family):
        return name if link is None else name.with_link(link)
    if name not in FAMILIES:
        raise SpecError(unknown_name("family", str(name), sorted(FAMILIES)))
    return FAMILIES[name] if link is None else FAMILIES[name].with_link(link)
