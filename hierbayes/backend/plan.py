"""``parameterization="auto"``: pick each grouping term's graph form from the data.

Marginal where the model allows it (a Gaussian model: the group effects of one factor, or
of two nested factors, are integrated out; with crossed factors those of the factor with the
most groups, the others sampled as below; see :mod:`hierbayes.backend.marginal` and
:mod:`hierbayes.backend.marginal_multi`). Otherwise, and for those sampled factors, group by
group: centered where the group's own data pin its effects down, non-centered elsewhere
(with crossed factors, a ``(1 | f)`` factor's mean is sampled with the intercept:
:func:`shear_factors`; with nested ones, a ``(1 | f)`` factor's centered groups are sampled
around their enclosing group's coefficient: :func:`nested_factors`). A group
is informative when its reliability

    lambda_jk = tau_k^2 I_jk / (1 + tau_k^2 I_jk)

exceeds 1/2 for every varying coefficient k, with I_jk the information about coefficient k
in group j's data and tau_k a quick empirical-Bayes estimate of its group-level SD. Above
1/2 the likelihood outweighs the prior, which is when the centered geometry is the easy one
(Papaspiliopoulos, Roberts & Skold 2007; Betancourt & Girolami 2015).

The quick estimate starts from the complete-pooling fit (linear predictor eta_i, mean mu_i).
Per observation, the score is ``(y_i - mu_i) / phi_i`` and the information weight
``w_i = 1 / phi_i`` (Gaussian: phi_i = se_i^2, or the pooled within-group residual
variance) or ``w_i = Var(mu_i)`` (binomial ``n p (1 - p)``, Poisson ``mu``, phi = 1). Then
``I_jk = sum_i w_i Z_ik^2``, the one-step estimate ``bhat_jk = sum_i Z_ik score_i / I_jk``
and the moment estimate ``tau_k^2 = max(0, mean_j bhat_jk^2 - mean_j 1 / I_jk)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hierbayes.backend.marginal import marginal_unavailable
from hierbayes.backend.marginal_multi import marginal_layout
from hierbayes.errors import SpecError
from hierbayes.spec.baselines import complete_pooling_fit
from hierbayes.spec.design import Design, FactorDesign
from hierbayes.spec.terms import nesting

__all__ = ["Plan", "nested_factors", "plan", "reliability", "shear_factors"]

#: A group is sampled centered when every coefficient's reliability exceeds this.
CENTERED_ABOVE = 0.5


@dataclass(frozen=True)
class Plan:
    """The graph form of each grouping factor, as ``build_model`` takes it.

    ``graph`` is ``"marginal"``, ``"centered"``, ``"non-centered"`` or, per factor, a boolean
    array over its groups (True: centered). ``forms`` describes each factor in words; with
    ``"marginal"`` it names the factors integrated out and those sampled
    (:func:`hierbayes.backend.marginal_multi.marginal_layout`). ``shear`` names the factors
    whose mean is sampled with the intercept (:func:`shear_factors`); ``nested`` maps a
    factor whose centered groups are sampled around their enclosing group's coefficient to
    the enclosing factor (:func:`nested_factors`). ``sampled``: with ``"marginal"`` and
    crossed factors, the centered groups of each factor that is sampled (empty: all
    non-centered).
    """

    requested: str
    graph: str | dict[str, np.ndarray]
    forms: dict[str, str] = field(default_factory=dict)
    shear: tuple[str, ...] = ()
    sampled: dict[str, np.ndarray] = field(default_factory=dict)
    nested: dict[str, str] = field(default_factory=dict)

    @property
    def marginal(self) -> bool:
        return self.graph == "marginal"

    def describe(self) -> str:
        """One line, e.g. ``"auto: school marginal"`` or ``"auto: plate non-centered; sample
        marginal"``."""
        if not self.forms:
            return self.requested
        parts = "; ".join(f"{name} {form}" for name, form in self.forms.items())
        if self.requested == "auto" or set(self.forms.values()) - {self.requested}:
            return f"{self.requested}: {parts}"  # marginal with factors sampled: which
        return self.requested


def _residuals(design: Design) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete-pooling fit: working residual z - eta, per-observation 1/phi and weight.

    The weight is the family's Fisher information about eta at the pooled fit (its IRLS
    weight, with the auxiliary parameters at their pooled MLE), times the row's weight.
    """
    coef, aux = complete_pooling_fit(design)
    eta = design.eta_offset + (design.X @ coef if design.fixed_names else np.zeros(design.n_obs))
    eta = np.broadcast_to(eta, (design.n_obs,))
    z, w = design.family.irls(eta, design.y, design.trials, aux)
    if design.family.link == "identity" and design.se is not None:
        w = design.se**-2.0
    if design.weights is not None:
        w = w * design.weights
    return z - eta, w, w


def reliability(design: Design, f: FactorDesign) -> tuple[np.ndarray, np.ndarray]:
    """Quick reliabilities lambda (J, q) of factor ``f``'s groups and the tau^2 (q,) behind them.

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("eight_schools")
    >>> d = hb.Model("y ~ 1 + (1 | school)", df, se="sigma", parameterization="centered").design
    >>> lam, tau2 = reliability(d, d.factors[0])
    >>> lam.shape, float(tau2[0])  # the schools vary less than their SEs: tau^2 = 0
    ((8, 1), 0.0)
    """
    if design.sums is not None:
        return _reliability_sums(design, f)
    r, inv_phi, w = _residuals(design)
    J = f.n_groups
    if design.family.link == "identity" and design.se is None:
        n = np.bincount(f.codes, minlength=J)
        means = np.bincount(f.codes, r, minlength=J) / np.maximum(n, 1)
        within = float(np.sum((r - means[f.codes]) ** 2))
        var = _residual_variance(within, design.n_obs - J, float(np.var(r)))
        inv_phi = w = (1.0 if design.weights is None else design.weights) / np.full(
            design.n_obs, var
        )
    info = np.stack([np.bincount(f.codes, w * z**2, minlength=J) for z in f.Z.T], axis=1)
    score = np.stack([np.bincount(f.codes, z * r * inv_phi, minlength=J) for z in f.Z.T], axis=1)
    return _from_information(info, score)


def _reliability_sums(design: Design, f: FactorDesign) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reliability` of a Gaussian design of sums: the same quantities, from each
    group's cross-products of ``A = [1, x, ..., y]`` with the residual r = A c."""
    s = design.factor_sums(f)
    coef = complete_pooling_fit(design)[0]
    c = np.zeros(len(s.names))
    c[s.y_col] = 1.0
    np.subtract.at(c, list(s.x_cols), coef)
    Gc = s.gram @ c  # (J, k): per group, sums of each column times r
    n, r_sum, r_sq = s.n, Gc[:, 0], np.einsum("jk,k->j", Gc, c)
    within = float(np.sum(r_sq - r_sum**2 / np.maximum(n, 1)))
    N = design.n_obs
    var = _residual_variance(within, N - f.n_groups, (r_sq.sum() - r_sum.sum() ** 2 / N) / N)
    z = s.z_cols[0]
    return _from_information(np.einsum("jkk->jk", s.block(z, z)) / var, Gc[:, list(z)] / var)


def _residual_variance(within: float, dof: int, total: float) -> float:
    """The residual variance: the within-group sum of squares over its degrees of freedom,
    else the residuals' variance ``total``, else 1."""
    return within / dof if dof > 0 and within > 0 else float(total) or 1.0


def _from_information(info: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lambda, tau^2) from each group's information (J, q) and score (J, q) about its
    coefficients: the moment estimate tau_k^2 = mean(bhat^2) - mean(1 / info) over the groups
    with information, and lambda = tau^2 info / (1 + tau^2 info)."""
    q = info.shape[1]
    bhat = np.zeros_like(info)
    tau2 = np.zeros(q)
    for k in range(q):
        ok = info[:, k] > 0
        bhat[ok, k] = score[ok, k] / info[ok, k]
        if ok.any():
            tau2[k] = max(0.0, float(np.mean(bhat[ok, k] ** 2) - np.mean(1.0 / info[ok, k])))
    return tau2 * info / (1.0 + tau2 * info), tau2


def shear_factors(design: Design, graph: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The factors "auto" samples under the intercept shear (:mod:`hierbayes.backend.graph`),
    among the sampled factors in ``graph`` (each one's centered groups).

    A factor qualifies when the intercept is a coefficient (a column of ones, with a prior on
    the real line: the caller checks the prior), there are two factors or more, and the
    factor is ``(1 | f)`` with at least two groups, all centered or all non-centered, and
    the intercept's level-2 mean is not f's (another factor carries it, or none does). With
    one factor, hierarchical centering already separates the intercept from the effects.
    """
    if "Intercept" not in design.fixed_names or len(design.factors) < 2:
        return ()
    k = design.fixed_names.index("Intercept")
    if not np.all(design.X[:, k] == 1.0):
        return ()
    return tuple(
        f.name
        for f in design.factors
        if f.name in graph
        and f.terms == ("Intercept",)
        and f.n_groups >= 2
        and not f.owns[k]
        and np.all(f.Z == 1.0)
        and len(np.unique(graph[f.name])) == 1
    )


def nested_factors(design: Design, graph: dict[str, np.ndarray]) -> dict[str, str]:
    """The factors "auto" samples around an enclosing factor (:mod:`hierbayes.backend.graph`),
    each mapped to that factor, among the sampled factors in ``graph`` (each one's centered
    groups).

    A ``(1 | f)`` factor with a centered group qualifies when another factor of ``graph``
    with an intercept encloses it (:func:`hierbayes.spec.terms.nesting`; the one with the
    most groups, the nearest, if several do) and does not share its groups. Its centered
    groups are then sampled around the enclosing group's intercept, b_k ~ Normal(m_k +
    b_P(k), sd): hierarchical centering, which leaves the likelihood with b_k alone where
    the crossed form adds two effects that only their sum pins down.

    Examples
    --------
    >>> import numpy as np, pandas as pd, hierbayes as hb
    >>> df = pd.DataFrame({"y": np.arange(24) % 3, "brood": np.arange(24) // 2,
    ...                    "location": np.arange(24) // 4})  # 12 broods in 6 locations
    >>> d = hb.Model("y ~ (1 | brood) + (1 | location)", df, family="poisson").design
    >>> nested_factors(d, {"brood": np.ones(12, bool), "location": np.ones(6, bool)})
    {'brood': 'location'}
    """
    factors = {f.name: f for f in design.factors if f.name in graph}
    found = {}
    for f in factors.values():
        if f.terms != ("Intercept",) or not np.all(f.Z == 1.0) or not graph[f.name].any():
            continue
        outers = [
            o
            for o in factors.values()
            if o is not f
            and "Intercept" in o.terms
            and o.n_groups < f.n_groups
            and nesting(o, f) is not None
        ]
        if outers:
            found[f.name] = max(outers, key=lambda o: o.n_groups).name
    return found


def plan(design: Design, parameterization: str, *, shear: bool = True) -> Plan:
    """Resolve a requested parameterisation against the data.

    ``shear=False`` keeps "auto" from the intercept shear (the caller's intercept prior is
    not on the real line).

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("eight_schools")
    >>> d = hb.Model("y ~ 1 + (1 | school)", df, se="sigma", parameterization="centered").design
    >>> plan(d, "auto").describe()
    'auto: school marginal'
    """
    if parameterization in ("centered", "non-centered"):
        forms = {f.name: parameterization for f in design.factors}
        return Plan(parameterization, parameterization, forms)
    reason = marginal_unavailable(design) if design.factors else None
    if parameterization == "marginal":
        if reason:
            raise SpecError(
                f"parameterization='marginal' is not available for this model: {reason}. "
                "Use parameterization='auto' (centered or non-centered per group) instead"
            )
        forms = marginal_layout(design).forms if design.factors else {}
        return Plan("marginal", "marginal", forms)
    if parameterization != "auto":
        raise SpecError(f"unknown parameterization {parameterization!r}")
    marginal = reason is None and bool(design.factors)
    layout = marginal_layout(design) if marginal else None
    forms = dict(layout.forms) if layout else {}
    graph: dict[str, np.ndarray] = {}
    for f in design.factors:
        if layout and f.name not in layout.sampled:
            continue
        lam, _ = reliability(design, f)
        graph[f.name] = centered = lam.min(axis=1) > CENTERED_ABOVE
        forms[f.name] = _form(centered)
    nested = {} if marginal else nested_factors(design, graph)
    sheared = tuple(n for n in shear_factors(design, graph) if n not in nested) if shear else ()
    for name in sheared:
        forms[name] += ", mean sampled with the intercept"
    for name, outer in nested.items():
        forms[name] += f" within {outer}"
    if marginal:
        return Plan("auto", "marginal", forms, sheared, sampled=graph)
    return Plan("auto", graph, forms, sheared, nested=nested)


def _form(centered: np.ndarray) -> str:
    """A factor's plan in words: centered, non-centered, or mixed (how many of each)."""
    if centered.all():
        return "centered"
    if not centered.any():
        return "non-centered"
    n_c = int(centered.sum())
    return f"mixed ({n_c} centered, {centered.size - n_c} non-centered)"
