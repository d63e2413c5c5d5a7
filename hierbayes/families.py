"""Response families: a registry of names, each with its data check and its likelihood.

Only the Gaussian family (identity link) is here so far; the registry is the one place
a family is added, and an unknown name lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm

from hierbayes.errors import DataError, SpecError, unknown_name

__all__ = ["Family", "GAUSSIAN", "FAMILIES", "get"]


@dataclass(frozen=True)
class Family:
    """A response distribution with its canonical link."""

    name: str
    link: str
    has_sigma: bool

    def check_response(self, column: str, values: pd.Series) -> np.ndarray:
        """Return the response as floats, or raise naming the column and bad rows."""
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DataError(
                f"response column {column!r} has dtype {values.dtype}; the {self.name} family "
                "needs numbers: convert it with pd.to_numeric or choose another family"
            )
        return values.to_numpy(dtype=float)

    def likelihood(self, name: str, mu: Any, *, sigma: Any, observed: np.ndarray, dims: str) -> Any:
        """Add the observed variable to the PyMC model in context."""
        return pm.Normal(name, mu=mu, sigma=sigma, observed=observed, dims=dims)


GAUSSIAN = Family(name="gaussian", link="identity", has_sigma=True)

#: Family name -> family.
FAMILIES: dict[str, Family] = {"gaussian": GAUSSIAN}


def get(name: str | Family) -> Family:
    """Look a family up by name.

    Examples
    --------
    >>> get("gaussian").link
    'identity'
    """
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise SpecError(unknown_name("family", str(name), sorted(FAMILIES)))
    return FAMILIES[name]
