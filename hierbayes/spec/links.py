"""Link functions: a registry of names, each with its inverse and derivative (NumPy).

A family's linear predictor ``eta`` maps to its mean ``mu = g^-1(eta)``:

| link | g(mu) | g^-1(eta) |
|---|---|---|
| ``identity`` | mu | eta |
| ``log`` | log mu | exp(eta) |
| ``logit`` | log(mu / (1 - mu)) | 1 / (1 + exp(-eta)) |
| ``probit`` | Phi^-1(mu) | Phi(eta), the standard normal CDF |
| ``cloglog`` | log(-log(1 - mu)) | 1 - exp(-exp(eta)) |

The PyTensor forms of the same inverses live in :mod:`hierbayes.backend.distributions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit, ndtr, ndtri
from scipy.stats import norm

from hierbayes.errors import SpecError, unknown_name

__all__ = ["Link", "LINKS", "get"]


@dataclass(frozen=True)
class Link:
    """A link: its name, g (``link``), g^-1 (``inverse``) and dmu/deta (``derivative``)."""

    name: str
    link: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    #: the means the link maps: "real", "positive" or "unit" (0, 1)
    domain: str


def _cloglog(mu):
    return np.log(-np.log1p(-mu))


def _inv_cloglog(eta):
    return -np.expm1(-np.exp(eta))


#: Link name -> link.
LINKS: dict[str, Link] = {
    link.name: link
    for link in (
        Link("identity", lambda m: m, lambda e: e, np.ones_like, "real"),
        Link("log", np.log, np.exp, np.exp, "positive"),
        Link("logit", logit, expit, lambda e: expit(e) * expit(-e), "unit"),
        Link("probit", ndtri, ndtr, norm.pdf, "unit"),
        Link("cloglog", _cloglog, _inv_cloglog, lambda e: np.exp(e - np.exp(e)), "unit"),
    )
}


def get(name: str, valid: tuple[str, ...] | None = None, family: str = "") -> Link:
    """Look a link up by name; ``valid`` restricts it to a family's links.

    Examples
    --------
    >>> float(get("probit").inverse(0.0))
    0.5
    >>> get("log", ("logit", "probit"), "bernoulli")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hierbayes.errors.SpecError: unknown link 'log' for the bernoulli family. Valid: ...
    """
    if name not in LINKS:
        raise SpecError(unknown_name("link", str(name), sorted(LINKS)))
    if valid is not None and name not in valid:
        raise SpecError(
            f"unknown link {name!r} for the {family} family. Valid: "
            + ", ".join(repr(v) for v in valid)
        )
    return LINKS[name]
