"""Distributional parameters: an auxiliary parameter with a linear predictor of its own.

``hb.Model("y ~ x + (1 | g)", data, sigma="~ x + (1 | g)")`` is brms' ``bf(y ~ x + (1 | g),
sigma ~ x + (1 | g))``: the residual SD gets its own regression on the log scale,

    log sigma_i = X^s_i beta^s + Z^s_i u^s_{g[i]},   u^s_j ~ Normal(0, T^s),

with its own group effects: the heterogeneous level-1 variance of HLM. The same option is
there for the main auxiliary parameter of other families: ``phi`` (beta), ``alpha`` (gamma
and the negative binomials); every one of them is positive, so the link is always log.

In the posterior, the coefficients are named ``<param>_<term>`` (``sigma_Intercept``,
``sigma_x``) and the grouping factors ``<param>_<factor>`` (``sd_sigma_g``, ``b_sigma_g``,
``u_sigma_g``, with dims ``sigma_g`` and ``sigma_g_term``); their prior keys are the same
names. A formula for a parameter the family does not have is refused, naming those it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.errors import SpecError
from hierbayes.spec.families import Family
from hierbayes.spec.formula import Formula, parse
from hierbayes.spec.namespace import Namespace
from hierbayes.spec.terms import FactorDesign, build_factors, check_predictors, evaluate_terms

__all__ = ["DparDesign", "MODELLED", "build_dpars", "parse_dpar"]

#: The auxiliary parameters that may have a formula (all positive: log link).
MODELLED = ("sigma", "phi", "alpha")


@dataclass(frozen=True, eq=False)
class DparDesign:
    """The linear predictor of one distributional parameter (log scale).

    ``fixed_names`` are the posterior names of its coefficients (``sigma_x``), ``terms``
    the formula's column names (``x``); ``factors`` are named ``<param>_<factor>`` and keep
    their data columns in ``FactorDesign.columns``.
    """

    name: str
    rhs: str
    formula: Formula
    X: np.ndarray
    fixed_names: tuple[str, ...]
    terms: tuple[str, ...]
    fixed_matrix: Any
    factors: tuple[FactorDesign, ...]


def parse_dpar(name: str, rhs: str, family: Family, response: str = "y") -> Formula:
    """Check that ``family`` has the parameter ``name`` and parse ``rhs`` (``"~ x"``).

    The formula is read as ``<response> ~ ...``, so that its variables are data columns.

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> parse_dpar("sigma", "~ x + (1 | g)", get("gaussian")).groups[0].factor
    'g'
    >>> parse_dpar("phi", "~ x", get("gaussian"))
    Traceback (most recent call last):
    ...
    hierbayes.errors.SpecError: phi='~ x': the gaussian family has no parameter 'phi'; ...
    """
    can = [a for a in family.aux if a in MODELLED]
    if name not in can:
        has = ", ".join(repr(a) for a in can) or "none"
        raise SpecError(
            f"{name}={rhs!r}: the {family.name} family has no parameter {name!r}; the "
            f"parameters it can model with a formula: {has}"
        )
    if not isinstance(rhs, str) or not rhs.strip().startswith("~"):
        raise SpecError(
            f"{name}={rhs!r}: a distributional parameter takes a one-sided formula, such as "
            f'{name}="~ x + (1 | g)"'
        )
    formula = parse(f"{response} {rhs.strip()}")
    if formula.offsets:
        raise SpecError(f"{name}={rhs!r}: offset() belongs to the model's main formula")
    return formula


def build_dpars(
    formulas: Mapping[str, Formula],
    data: pd.DataFrame,
    namespace: Namespace,
) -> tuple[DparDesign, ...]:
    """The design of each distributional parameter, from its parsed formula.

    The data have been checked (:func:`parse_dpar` reads the formulas).

    Examples
    --------
    >>> import pandas as pd
    >>> from hierbayes.spec.families import get
    >>> from hierbayes.spec.namespace import resolve
    >>> df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "g": ["a", "a", "b", "b"]})
    >>> f = parse_dpar("sigma", "~ x + (1 | g)", get("gaussian"))
    >>> (d,) = build_dpars({"sigma": f}, df, resolve("safe"))
    >>> d.fixed_names, d.factors[0].name, d.factors[0].columns
    (('sigma_Intercept', 'sigma_x'), 'sigma_g', ('g',))
    """
    out = []
    for name, formula in formulas.items():
        rhs = "~ " + formula.text.split("~", 1)[1].strip()
        where = f"terms of {name}={rhs!r}"
        X, terms, matrix = evaluate_terms(formula.fixed, data, where, namespace)
        check_predictors(X, terms, where)
        factors = build_factors(formula.groups, data, X, namespace)
        factors = [replace(f, name=f"{name}_{f.name}") for f in factors]
        if not terms and not factors:
            raise SpecError(f"{name}={rhs!r} has no terms to estimate")
        out.append(
            DparDesign(
                name=name,
                rhs=rhs,
                formula=formula,
                X=X,
                fixed_names=tuple(f"{name}_{t}" for t in terms),
                terms=terms,
                fixed_matrix=matrix,
                factors=tuple(factors),
            )
        )
    return tuple(out)
