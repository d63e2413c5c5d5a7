"""Model options as an immutable spec, and the priors it resolves to for given data.

Prior keys
----------
``"Intercept"``
    The population-level intercept.
``<term>``
    A population-level coefficient, by its column name (``"x"``, ``"C(k)[b]"``).
``"sd"``
    Every group-level SD.
``"sd_<factor>"``
    The group-level SDs of one grouping factor, e.g. ``"sd_school"`` (more specific than
    ``"sd"``; for a nested factor ``(1 | a/b)`` the keys are ``"sd_a"`` and ``"sd_a:b"``).
``"corr"``, ``"corr_<factor>"``
    The LKJ prior on the correlation matrix of correlated effects ``(x | g)``.
``"sigma"``
    The residual SD (not estimated when known standard errors are given with ``se=``); the
    scale of the student_t family; the SD of log y for the lognormal family.
``"nu"``, ``"phi"``, ``"alpha"``, ``"zi"``, ``"cutpoints"``
    The other families' auxiliary parameters (:mod:`hierbayes.spec.families`): student_t's
    degrees of freedom, beta's precision, gamma's shape and the negative binomial's
    ``alpha``, the zero-inflation probability, an ordinal model's cutpoints.

Default priors (weakly informative, scaled by the data)
-------------------------------------------------------
With ``s`` the sample SD of the response (the mean known SE if the response is constant):
``Intercept ~ Normal(link(mean(y)) - mean(offset), 2.5 s)`` (no offset: 0); a coefficient of
column ``x`` ``~ Normal(0, 2.5 s / sd(x))`` (rstanarm's autoscaling; it assumes predictors
roughly centred, so give your own prior otherwise); every SD (``sd``, ``sigma``)
``~ HalfStudentT(3, s)`` (brms' choice of family); correlations of ``(x | g)`` effects
``~ LKJ(2)``, which mildly favours small correlations (the Stan prior-choice recommendation).
For a GLM, ``s`` is 1 (the link scale) and the intercept's centre is the link of the mean.

Auxiliary parameters: ``nu ~ Gamma(2, 0.1)`` (Juarez & Steel 2010, brms' default: mean 20,
with a tenth of its mass below 5); ``zi ~ Beta(1, 1)``; gamma's shape, the negative
binomial's ``alpha`` and beta's ``phi`` ``~ HalfStudentT(3, 5 m)`` with ``m`` the method-of-
moments value of the pooled response (mean^2 / var, mean^2 / (var - mean) and
mean (1 - mean) / var - 1, clipped to [0.1, 1000]); pooled moments include the
between-group spread, so ``m`` understates the parameter and the scale 5 m leaves room above
it. Cutpoints ``~ OrderedNormal(mu_k, 2.5)`` (1.5 for probit) centred at the link of the
cumulative proportion of rows at or below level k; the prior holds for the cutpoints at the
mean of the predictors, c_k - mean(X) beta (what the graph samples, as brms and rstanarm
put an intercept's prior on centred predictors), so 0/1 or uncentred predictors do not
shift it.

A distributional parameter's regression (``sigma="~ x + (1 | g)"``, on the log scale):
``<param>_Intercept ~ Normal(log m, 2.5)`` with ``m`` the typical value above (``s`` for
sigma), each coefficient ``~ Normal(0, 2.5 / sd(x))``, each group SD ``~ HalfStudentT(3, 1)``.
Defaults are rounded to 3 significant figures and printed in the model's repr.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

import numpy as np

from hierbayes.errors import IdentifiabilityWarning, PriorWarning, SpecError, unknown_name
from hierbayes.spec import priors as P
from hierbayes.spec.design import Design, row_moments
from hierbayes.spec.dpars import MODELLED

__all__ = ["PARAMETERIZATIONS", "ModelSpec", "resolve_priors", "check_design"]

#: Graph forms a builder can emit; "auto" picks among the others from the data
#: (:mod:`hierbayes.backend.plan`).
PARAMETERIZATIONS = ("auto", "marginal", "centered", "non-centered")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a model except its data.

    Examples
    --------
    >>> ModelSpec("y ~ 1 + (1 | school)", se="sigma").parameterization
    'auto'
    """

    formula: str
    se: str | None = None
    family: str = "gaussian"
    trials: str | None = None
    parameterization: str = "auto"
    offset: str | None = None
    priors: Mapping[str, P.Prior] = field(default_factory=dict)
    link: str | None = None
    weights: str | None = None
    dpars: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parameterization not in PARAMETERIZATIONS:
            raise SpecError(
                unknown_name("parameterization", str(self.parameterization), PARAMETERIZATIONS)
            )
        if self.priors is None:
            object.__setattr__(self, "priors", {})
        if not isinstance(self.priors, Mapping):
            raise SpecError(
                f"priors must be a dict of key -> prior, got {type(self.priors).__name__}"
            )
        object.__setattr__(self, "priors", {k: P.from_value(v) for k, v in self.priors.items()})
        if not isinstance(self.dpars, Mapping) or set(self.dpars) - set(MODELLED):
            raise SpecError(
                f"dpars must map some of {', '.join(MODELLED)} to formulas, got {self.dpars!r}"
            )
        object.__setattr__(self, "dpars", {k: str(v) for k, v in self.dpars.items()})


_SUPPORT_ADVICE = {
    "positive": (
        "a standard deviation",
        "HalfCauchy, HalfStudentT, HalfNormal, Exponential, InverseGamma or HalfFlat",
    ),
    "real": ("a coefficient", "Normal or StudentT"),
    "correlation": ("a correlation matrix", "LKJ"),
    "unit": ("a probability", "Beta"),
    "ordered": ("ordered cutpoints", "OrderedNormal, or Normal or StudentT for each"),
}

#: The support each prior key needs (keys not listed are coefficients: "real").
_NEEDS = {
    "sd": "positive",
    "sigma": "positive",
    "nu": "positive",
    "phi": "positive",
    "alpha": "positive",
    "zi": "unit",
    "corr": "correlation",
    "cutpoints": "ordered",
}


def _sig(x: float) -> float:
    """Round to 3 significant figures, for readable default priors."""
    return 0.0 if x == 0 else round(x, 2 - int(math.floor(math.log10(abs(x)))))


def _defaults(design: Design) -> dict[str, P.Prior]:
    s = design.scale
    out: dict[str, P.Prior] = {}
    for k, name in enumerate(design.fixed_names):
        if name == "Intercept":
            mean = design.response_mean()
            centre = design.family.link_value(mean) - design.offset_mean()
            out[name] = P.Normal(_sig(centre), _sig(2.5 * s))
        else:
            out[name] = P.Normal(0.0, _sig(2.5 * s / design.column_sd(k)))
    for f in design.factors:
        out[f"sd_{f.name}"] = P.HalfStudentT(3.0, _sig(s))
        if f.correlated:
            out[f"corr_{f.name}"] = P.LKJ(2.0)
    out.update(_aux_defaults(design))
    out.update(_dpar_defaults(design))
    return out


def _typical(design: Design, key: str) -> float:
    """A method-of-moments value of a positive auxiliary parameter from the pooled response
    (sigma: the response's scale), clipped to [0.1, 1000] (module docstring)."""
    if key == "sigma":
        return design.scale
    m, sd = row_moments(design.y, design.multiplicity)
    v = sd**2 if sd > 0 else 1e-12
    if key == "phi":
        value = m * (1.0 - m) / v - 1.0
    elif design.family.name == "gamma":
        value = m**2 / v
    else:  # the negative binomials' alpha
        value = m**2 / (v - m) if v > m else 1000.0
    return min(max(value, 0.1), 1000.0)


def _aux_defaults(design: Design) -> dict[str, P.Prior]:
    """Default priors of the family's auxiliary parameters (module docstring)."""
    out: dict[str, P.Prior] = {}
    for key in design.aux:
        if key == "sigma":
            out[key] = P.HalfStudentT(3.0, _sig(design.scale))
        elif key == "nu":
            out[key] = P.Gamma(2.0, 0.1)
        elif key == "zi":
            out[key] = P.Beta(1.0, 1.0)
        elif key in ("phi", "alpha"):
            out[key] = P.HalfStudentT(3.0, _sig(5.0 * _typical(design, key)))
        elif key == "cutpoints":
            K = len(design.response_levels)
            counts = np.bincount(design.y.astype(np.int64), design.multiplicity, minlength=K)
            share = np.cumsum(counts)[:-1] / design.n_rows
            centre = [_sig(design.family.link_value(float(p))) for p in share]
            spread = 2.5 if design.family.link == "logit" else 1.5
            out[key] = P.OrderedNormal(tuple(np.maximum.accumulate(centre)), spread)
    return out


def _dpar_defaults(design: Design) -> dict[str, P.Prior]:
    """Default priors of distributional parameters' regressions (log scale, module docstring)."""
    out: dict[str, P.Prior] = {}
    for d in design.dpars:
        for k, (name, term) in enumerate(zip(d.fixed_names, d.terms, strict=True)):
            if term == "Intercept":
                out[name] = P.Normal(_sig(math.log(_typical(design, d.name))), 2.5)
            else:
                out[name] = P.Normal(
                    0.0, _sig(2.5 / row_moments(d.X[:, k], design.multiplicity)[1])
                )
        for f in d.factors:
            out[f"sd_{f.name}"] = P.HalfStudentT(3.0, 1.0)
            if f.correlated:
                out[f"corr_{f.name}"] = P.LKJ(2.0)
    return out


def resolve_priors(user: Mapping[str, P.Prior], design: Design) -> dict[str, P.Prior]:
    """Every prior the graph needs: the user's where given, the defaults elsewhere.

    Raises :class:`~hierbayes.errors.SpecError` for an unknown key (suggesting the closest)
    or a prior whose support does not fit its key (a Normal on an SD, say).
    """
    resolved = _defaults(design)
    factors = [*design.factors, *(f for d in design.dpars for f in d.factors)]
    general = {"sd"} | ({"corr"} if any(f.correlated for f in factors) else set())
    valid = sorted(set(resolved) | general)
    for key in user:
        if key not in valid:
            hint = ""
            if key == "sigma" and design.se is not None:
                hint = " (the residual SD is not estimated when se= gives known standard errors)"
            close = get_close_matches(key, valid, n=1)
            if close and not hint:
                hint = f"; did you mean {close[0]!r}?"
            raise SpecError(f"unknown prior key {key!r}{hint} Valid keys: {', '.join(valid)}")
    for key, default in resolved.items():
        kind = key.split("_", 1)[0] if key.startswith(("sd_", "corr_")) else key
        chosen = user.get(key, user.get(kind, default))
        coefficient = key in design.fixed_names or any(key in d.fixed_names for d in design.dpars)
        need = "real" if coefficient else _NEEDS.get(kind, "real")
        if chosen.support != need and not (need == "ordered" and chosen.support == "real"):
            what, use = _SUPPORT_ADVICE[need]
            raise SpecError(f"prior {chosen} for {key!r} does not suit {what}: use {use}")
        resolved[key] = chosen
    return resolved


def check_design(design: Design, priors: Mapping[str, P.Prior], *, stacklevel: int = 3) -> None:
    """Warn about priors known to misbehave and group SDs that few groups can hardly inform."""
    warned: set[str] = set()
    for key, prior in priors.items():
        if prior.warning and type(prior).__name__ not in warned:
            warned.add(type(prior).__name__)
            warnings.warn(
                f"prior for {key!r}: {prior.warning}", PriorWarning, stacklevel=stacklevel
            )
    for f in [*design.factors, *(f for d in design.dpars for f in d.factors)]:
        if f.n_groups < 5:
            warnings.warn(
                f"grouping factor {f.name!r} has only {f.n_groups} groups: its SD is weakly "
                "identified and its posterior follows the prior closely (BDA3 5.7); "
                "choose its prior (key 'sd_" + f.name + "') with care",
                IdentifiabilityWarning,
                stacklevel=stacklevel,
            )


def describe(priors: Mapping[str, Any]) -> str:
    """One line per prior, for reprs."""
    return "\n".join(f"    {key}: {prior}" for key, prior in priors.items())
