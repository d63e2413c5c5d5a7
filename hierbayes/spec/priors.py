"""Prior specifications: small immutable descriptions, turned into PyMC variables at build time.

A prior is a frozen dataclass whose arguments are checked when it is made, so a bad
prior fails where it is written, not deep inside PyMC. :meth:`Prior.rv` adds the
variable to the PyMC model being built.

Priors for standard deviations (``"sd"``, ``"sigma"``) must have positive support:
:class:`HalfCauchy`, :class:`HalfStudentT`, :class:`HalfNormal`, :class:`Exponential`,
:class:`InverseGamma` (placed on the variance), :class:`HalfFlat` and :class:`Gamma`; so
must a family's ``nu``, ``phi`` and ``alpha``. Coefficients take :class:`Normal` or
:class:`StudentT`; the zero-inflation probability ``zi`` takes :class:`Beta`, and an ordinal
model's ``cutpoints`` :class:`OrderedNormal` (or a Normal or StudentT for each). Priors can
also be written as strings, ``"halfcauchy:5"`` or ``"halft:3,5"`` (see :func:`from_string`),
which is how the CLI and the TOML model specs spell them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from hierbayes.errors import SpecError, unknown_name

__all__ = [
    "Prior",
    "HalfCauchy",
    "HalfStudentT",
    "HalfNormal",
    "Exponential",
    "InverseGamma",
    "HalfFlat",
    "Normal",
    "StudentT",
    "LKJ",
    "Gamma",
    "Beta",
    "OrderedNormal",
    "REGISTRY",
    "from_string",
    "from_value",
]


def _check(cls_name: str, name: str, value: Any, *, positive: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(value)
    except OverflowError:  # an int beyond float's range, e.g. 10**400
        ok = False
    if ok and positive:
        ok = value > 0
    if not ok:
        need = "a positive finite number" if positive else "a finite number"
        raise SpecError(f"{cls_name}: {name} must be {need}, got {value!r}")


@dataclass(frozen=True)
class Prior:
    """Base class of prior specifications.

    Subclasses declare their arguments as dataclass fields and list in ``_positive``
    those that must be > 0; every argument must be a finite number.
    """

    support: ClassVar[str] = "real"
    _positive: ClassVar[tuple[str, ...]] = ()
    warning: ClassVar[str | None] = None
    #: The arguments that set a location or a scale, which default priors take from the
    #: data (the others set a shape: a Student-t's nu, a Beta's alpha and beta).
    location_scale: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(
                type(self).__name__,
                f.name,
                getattr(self, f.name),
                positive=f.name in self._positive,
            )

    def __str__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))
        return f"{type(self).__name__}({args})"

    def args(self) -> dict[str, float]:
        """The arguments by name, as the distribution of the same name takes them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Normal(Prior):
    """Normal(mu, sigma) on a coefficient.

    Examples
    --------
    >>> Normal(0, 5)
    Normal(mu=0, sigma=5)
    """

    mu: float = 0.0
    sigma: float = 1.0
    _positive: ClassVar[tuple[str, ...]] = ("sigma",)
    location_scale: ClassVar[tuple[str, ...]] = ("mu", "sigma")


@dataclass(frozen=True)
class StudentT(Prior):
    """Student-t(nu, mu, sigma) on a coefficient.

    Examples
    --------
    >>> StudentT(3, 0, 2.5)
    StudentT(nu=3, mu=0, sigma=2.5)
    """

    nu: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0
    _positive: ClassVar[tuple[str, ...]] = ("nu", "sigma")
    location_scale: ClassVar[tuple[str, ...]] = ("mu", "sigma")


@dataclass(frozen=True)
class HalfCauchy(Prior):
    """Half-Cauchy(beta) on a standard deviation (Gelman 2006's recommendation for few groups).

    Examples
    --------
    >>> HalfCauchy(5)
    HalfCauchy(beta=5)
    """

    beta: float = 1.0
    support: ClassVar[str] = "positive"
    _positive: ClassVar[tuple[str, ...]] = ("beta",)
    location_scale: ClassVar[tuple[str, ...]] = ("beta",)


@dataclass(frozen=True)
class HalfStudentT(Prior):
    """Half-Student-t(nu, sigma) on a standard deviation.

    Examples
    --------
    >>> HalfStudentT(3, 5)
    HalfStudentT(nu=3, sigma=5)
    """

    nu: float = 3.0
    sigma: float = 1.0
    support: ClassVar[str] = "positive"
    _positive: ClassVar[tuple[str, ...]] = ("nu", "sigma")
    location_scale: ClassVar[tuple[str, ...]] = ("sigma",)


@dataclass(frozen=True)
class HalfNormal(Prior):
    """Half-normal(sigma) on a standard deviation.

    Examples
    --------
    >>> HalfNormal(5)
    HalfNormal(sigma=5)
    """

    sigma: float = 1.0
    support: ClassVar[str] = "positive"
    _positive: ClassVar[tuple[str, ...]] = ("sigma",)
    location_scale: ClassVar[tuple[str, ...]] = ("sigma",)


@dataclass(frozen=True)
class Exponential(Prior):
    """Exponential(lam) on a standard deviation (mean 1 / lam).

    Examples
    --------
    >>> Exponential(0.2)
    Exponential(lam=0.2)
    """

    lam: float = 1.0
    support: ClassVar[str] = "positive"
    _positive: ClassVar[tuple[str, ...]] = ("lam",)
    location_scale: ClassVar[tuple[str, ...]] = ("lam",)


@dataclass(frozen=True)
class InverseGamma(Prior):
    """Inverse-gamma(alpha, beta) on the *variance*; the SD is its square root.

    Kept for comparison with older analyses: with small ``alpha, beta`` it is not
    uninformative and pulls a group SD towards zero when groups are few (Gelman 2006;
    BDA3 section 5.7), so using it issues a :class:`~hierbayes.errors.PriorWarning`.

    Examples
    --------
    >>> InverseGamma(1, 1)
    InverseGamma(alpha=1, beta=1)
    """

    alpha: float = 1.0
    beta: float = 1.0
    support: ClassVar[str] = "positive"
    _positive: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    location_scale: ClassVar[tuple[str, ...]] = ("beta",)
    warning: ClassVar[str | None] = (
        "an InverseGamma prior on a variance can pull a group SD towards zero when "
        "groups are few (Gelman 2006; BDA3 5.7); consider HalfCauchy or HalfStudentT"
    )


@dataclass(frozen=True)
class HalfFlat(Prior):
    """Improper flat prior on (0, inf).

    With few groups the posterior of a group SD under this prior can itself be
    improper (BDA3 section 5.7); using it issues a :class:`~hierbayes.errors.PriorWarning`.

    Examples
    --------
    >>> HalfFlat()
    HalfFlat()
    """

    support: ClassVar[str] = "positive"
    warning: ClassVar[str | None] = (
        "HalfFlat is improper: with few groups the posterior of a group SD may be "
        "improper too (BDA3 5.7); consider HalfCauchy or HalfStudentT"
    )


@dataclass(frozen=True)
class LKJ(Prior):
    """LKJ(eta) on a correlation matrix of group-level effects (prior key ``"corr"``).

    Examples
    --------
    >>> LKJ(2)
    LKJ(eta=2)
    """

    eta: float = 1.0
    support: ClassVar[str] = "correlation"
    _positive: ClassVar[tuple[str, ...]] = ("eta",)


@dataclass(frozen=True)
class Gamma(Prior):
    """Gamma(alpha, beta) (shape, rate; mean alpha / beta) on a positive parameter.

    The default prior of the student_t family's ``nu`` is ``Gamma(2, 0.1)`` (Juarez & Steel
    2010; brms' default).

    Examples
    --------
    >>> Gamma(2, 0.1)
    Gamma(alpha=2, beta=0.1)
    """

    alpha: float = 2.0
    beta: float = 0.1
    support: ClassVar[str] = "positive"
    _positive: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    location_scale: ClassVar[tuple[str, ...]] = ("beta",)


@dataclass(frozen=True)
class Beta(Prior):
    """Beta(alpha, beta) on a probability (the zero-inflation probability ``zi``).

    Examples
    --------
    >>> Beta(1, 1)
    Beta(alpha=1, beta=1)
    """

    alpha: float = 1.0
    beta: float = 1.0
    support: ClassVar[str] = "unit"
    _positive: ClassVar[tuple[str, ...]] = ("alpha", "beta")


@dataclass(frozen=True)
class OrderedNormal(Prior):
    """Normal(mu_k, sigma) on each cutpoint c_k of an ordinal model, with c_1 < c_2 < ....

    ``mu`` holds one centre per cutpoint (a list in TOML). A plain :class:`Normal` or
    :class:`StudentT` for ``"cutpoints"`` puts the same prior on each.

    Examples
    --------
    >>> OrderedNormal((-1.0, 0.5), 2.5)
    OrderedNormal(mu=(-1.0, 0.5), sigma=2.5)
    """

    mu: tuple[float, ...] = (0.0,)
    sigma: float = 2.5
    support: ClassVar[str] = "ordered"

    def __post_init__(self) -> None:
        mu = self.mu if isinstance(self.mu, list | tuple) else (self.mu,)
        for value in mu:
            _check("OrderedNormal", "mu", value, positive=False)
        if list(mu) != sorted(mu):
            raise SpecError(f"OrderedNormal: mu must be increasing, got {list(mu)}")
        object.__setattr__(self, "mu", tuple(float(v) for v in mu))
        _check("OrderedNormal", "sigma", self.sigma, positive=True)

    def __str__(self) -> str:
        mu = ", ".join(f"{v:g}" for v in self.mu)
        return f"OrderedNormal(mu=({mu}), sigma={self.sigma:g})"


#: Lower-case names (as used in strings, TOML and the CLI) -> prior class.
REGISTRY: dict[str, type[Prior]] = {
    "normal": Normal,
    "studentt": StudentT,
    "t": StudentT,
    "halfcauchy": HalfCauchy,
    "halfstudentt": HalfStudentT,
    "halft": HalfStudentT,
    "halfnormal": HalfNormal,
    "exponential": Exponential,
    "inversegamma": InverseGamma,
    "invgamma": InverseGamma,
    "halfflat": HalfFlat,
    "flat": HalfFlat,
    "lkj": LKJ,
    "gamma": Gamma,
    "beta": Beta,
    "orderednormal": OrderedNormal,
}


def _lookup(name: str) -> type[Prior]:
    key = str(name).strip().lower().replace("_", "").replace("-", "")
    if key not in REGISTRY:
        raise SpecError(unknown_name("prior", str(name), sorted(REGISTRY)))
    return REGISTRY[key]


def from_string(text: str) -> Prior:
    """Parse ``"name:arg1,arg2"`` into a prior; arguments are positional.

    Examples
    --------
    >>> from_string("halfcauchy:5")
    HalfCauchy(beta=5.0)
    >>> from_string("halft:3,5")
    HalfStudentT(nu=3.0, sigma=5.0)
    >>> from_string("halfflat")
    HalfFlat()
    """
    name, colon, args = str(text).partition(":")
    cls = _lookup(name)
    if colon and not args.strip():
        raise SpecError(
            f"prior {text!r}: nothing after ':'; give the arguments, as in 'halft:3,5', or "
            f"write {name!r} alone for the defaults"
        )
    try:
        values = [float(a) for a in args.split(",")] if args.strip() else []
    except ValueError:
        raise SpecError(f"prior {text!r}: arguments must be numbers, as in 'halft:3,5'") from None
    names = [f.name for f in fields(cls)]
    if len(values) > len(names):
        raise SpecError(
            f"prior {text!r}: {cls.__name__} takes at most {len(names)} arguments {names}"
        )
    return cls(*values)


def from_value(value: Prior | str | dict[str, Any]) -> Prior:
    """Accept a prior, a string (``"halfcauchy:5"``) or a table (``{"dist": "halfcauchy", ...}``).

    Examples
    --------
    >>> from_value({"dist": "normal", "mu": 0, "sigma": 5})
    Normal(mu=0, sigma=5)
    """
    if isinstance(value, Prior):
        return value
    if isinstance(value, str):
        return from_string(value)
    if isinstance(value, dict):
        args = dict(value)
        cls = _lookup(args.pop("dist", ""))
        valid = {f.name for f in fields(cls)}
        extra = sorted(set(args) - valid)
        if extra:
            raise SpecError(f"{cls.__name__} has no argument {extra}; valid: {sorted(valid)}")
        return cls(**args)
    raise SpecError(
        f"cannot read a prior from {value!r}: give a hb.priors object, 'name:args' or a table"
    )
