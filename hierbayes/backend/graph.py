"""Spec + design -> PyMC graph.

The model, for observation i in group j = g[i] of each grouping factor:

    y_i ~ Normal(eta_i, sigma)          (sigma = se_i when standard errors are known)
    eta_i = offset_i + X_i . beta + sum over factors of Z_i . u_j
    b_j = m_j + u_j,   m_j = W_j beta,   u_j ~ Normal(0, diag(sd)^2)

``m_j`` is the level-2 model: for a varying coefficient with a population-level twin
(``Intercept``, ``x``) it is that coefficient, plus any group-level predictor terms
(``schavg``, ``x:schavg``); see :func:`hierbayes.core.pooling.level2_map`. So ``b_j`` is group j's
own coefficient and ``u_j`` its deviation from the population line. The
parameterisations differ only in what NUTS samples:

* centered:      b_j ~ Normal(m_j, sd)               (u_j = b_j - m_j)
* non-centered:  z_j ~ Normal(0, 1), u_j = sd * z_j   (b_j = m_j + u_j)
* mixed:         centered for some groups, non-centered for the others (what "auto" picks,
  group by group, when it cannot marginalise: :mod:`hierbayes.backend.plan`)
* marginal:      the likelihood has the group effects integrated out (one factor, or two
  nested ones; with crossed factors, those of the factor with the most groups, the others
  sampled, non-centered or, under "auto", as planned group by group:
  :mod:`hierbayes.backend.marginal`, :mod:`hierbayes.backend.marginal_multi`), and the
  integrated effects are drawn exactly after sampling.
* intercept shear (what "auto" adds for a sampled, crossed ``(1 | f)`` factor that does not
  carry the intercept's level-2 mean, e.g. the items crossed with subjects of a GLMM, or
  Penicillin's samples beside its integrated plates): the mean of f's effects and the
  intercept enter the likelihood only as their sum, a ridge NUTS crawls along. With H the
  Householder reflection that maps the last unit vector to 1/sqrt(J),

      u = H [c; sd * zbar],   mean(u) = sd * zbar / sqrt(J),   zbar ~ Normal(0, 1)
      c ~ Normal(0, sd) (centered) or c = sd * z (non-centered),  J - 1 contrasts

  and the graph samples ``Intercept_shifted`` = Intercept + the sum of those means in the
  intercept's place, with the intercept's prior on ``Intercept`` = ``Intercept_shifted`` -
  sum of means (a Potential; the change of variables has unit Jacobian). The likelihood sees
  only the contrasts and ``Intercept_shifted``; the means are left to their priors.
* nested centering (what "auto" adds for a ``(1 | f)`` factor whose groups k lie inside the
  groups P(k) of another factor with an intercept, e.g. broods inside locations): f's
  centered groups are sampled around their enclosing group's coefficient,
  ``b_<f>_nested`` = m_k + b_P(k) + u_k ~ Normal(m_k + b_P(k), sd), so the likelihood sees
  that one variable where the crossed form adds u_P(k) + u_k, which only their sum pins down
  (hierarchical centering: Gelfand, Sahu & Carlin 1995). The enclosing factor owns the
  predictors that vary between its groups (:func:`hierbayes.spec.terms.build_factors`);
  nesting goes as deep as the factors do, and a sheared enclosing factor gives what it adds
  to eta (its mean is with the intercept).

All put ``b_<factor>``, ``u_<factor>`` and ``sd_<factor>`` in the posterior, with dims
``(<factor>, <factor>_term)``, so reports never care which was sampled. A population
column sits in ``m_j`` of the first factor it is level-2 for, enclosing factors first
(``FactorDesign.owns``, :func:`hierbayes.spec.terms.build_factors`); in a factor that comes
later, ``b_j = u_j`` is a deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.backend.distributions import aux_rv, likelihood, prior_logp, prior_rv
from hierbayes.backend.marginal import marginal_loglik, sigma_by_group, sufficient_stats
from hierbayes.backend.marginal_multi import (
    crossed_loglik,
    crossed_stats,
    marginal_layout,
    nested_loglik,
    nested_stats,
)
from hierbayes.spec.design import Design, FactorDesign
from hierbayes.spec.dpars import DparDesign
from hierbayes.spec.names import INTERCEPT_PRIOR, SHIFTED_INTERCEPT
from hierbayes.spec.priors import Prior
from hierbayes.spec.terms import nesting

__all__ = ["build_model", "householder"]


def _coords(
    design: Design, parameterization: str | Mapping[str, np.ndarray], shear: Sequence[str] = ()
) -> dict:
    index = design.index if design.index.is_unique else np.arange(design.n_obs)
    coords: dict[str, list] = {} if design.sums is not None else {"obs": list(index)}
    for f in design.factors:
        coords[f.name] = list(f.levels)
        coords[f.term_dim] = list(f.terms)
        if f.correlated:
            coords[f"{f.term_dim}2"] = list(f.terms)
        if isinstance(parameterization, Mapping):
            centered = np.asarray(parameterization[f.name], dtype=bool)
            if centered.any() and not centered.all():
                coords[f"{f.name}_centered"] = list(f.levels[centered])
                coords[f"{f.name}_noncentered"] = list(f.levels[~centered])
        if f.name in shear:
            coords[f"{f.name}_contrast"] = list(range(1, f.n_groups))
    return coords


def level2_mean(f: FactorDesign, beta: pt.TensorVariable) -> pt.TensorVariable:
    """m_j = W_j beta over the owned columns: (q,) when equal for all groups, else (J, q)."""
    if not f.owns.any():
        return pt.zeros(len(f.terms))
    W = f.W[:, :, f.owns]
    b = beta[np.flatnonzero(f.owns)]
    if np.all(W == W[0]):
        return pt.dot(W[0], b)
    return pt.tensordot(W, b, axes=[[2], [0]])


def cpc_alphas(q: int, eta: float) -> np.ndarray:
    """Beta(a, a) parameters of the canonical partial correlations of an LKJ(eta) q x q matrix.

    In the order :func:`corr_cholesky` reads them: column 0's rows 1..q-1, then column 1's
    rows 2..q-1, ...; column i takes a = eta + (q - 2 - i) / 2 (Lewandowski, Kurowicka & Joe
    2009; Stan's ``lkj_corr_cholesky_rng``).

    Examples
    --------
    >>> cpc_alphas(3, 2.0).tolist()
    [2.5, 2.5, 2.0]
    """
    return np.array([eta + (q - 2 - i) / 2 for i in range(q - 1) for _ in range(q - 1 - i)])


def corr_cholesky(w: pt.TensorVariable, q: int) -> pt.TensorVariable:
    """The Cholesky factor of a correlation matrix from its canonical partial correlations ``w``.

    Row j of the factor has unit length: L[j, 0] = w, then each further entry takes the CPC's
    share of what is left (Stan's ``read_corr_L``), so every ``w`` in (-1, 1) gives a valid
    correlation matrix L L'.
    """
    zero, one = pt.as_tensor(0.0), pt.as_tensor(1.0)
    L = [[zero] * q for _ in range(q)]
    L[0][0] = one
    left = [one] * q  # 1 - (sum of squares so far) of each row
    k = 0
    for i in range(q - 1):
        if i > 0:
            L[i][i] = pt.sqrt(left[i])
        for j in range(i + 1, q):
            L[j][i] = w[k] * pt.sqrt(left[j])
            left[j] = left[j] * (1.0 - w[k] ** 2)
            k += 1
    L[q - 1][q - 1] = pt.sqrt(left[q - 1])
    return pt.stack([pt.stack(row) for row in L])


def covariance_factor(
    f: FactorDesign, sd_prior: Prior, corr_prior: Prior | None
) -> tuple[pt.TensorVariable, pt.TensorVariable | None]:
    """Add ``sd_<f>`` (and ``corr_<f>``) to the model; return (sd, L) with T = L L'.

    Uncorrelated effects have ``L = None`` (T is diag(sd)^2). Correlated ones sample the SDs
    and the correlations apart, as Stan and brms do: ``sd_<f>`` with its own prior, and the
    canonical partial correlations ``cpc_<f>``, (cpc + 1) / 2 ~ Beta (:func:`cpc_alphas`),
    which make the correlation matrix LKJ(eta); then L = diag(sd) chol(corr). (PyMC's
    ``LKJCholeskyCov`` samples the entries of L itself, which couples each SD with the
    correlations: in the non-centered Exam HLM a chain fell to sd 0 and a step size of 2e-9.)
    """
    sd = prior_rv(sd_prior, f"sd_{f.name}", dims=f.term_dim)
    if not f.correlated:
        return sd, None
    q = len(f.terms)
    alphas = cpc_alphas(q, corr_prior.eta)
    cpc = pm.Beta(f"cpc_{f.name}", alpha=alphas, beta=alphas, shape=len(alphas))
    L_corr = corr_cholesky(2.0 * cpc - 1.0, q)
    pm.Deterministic(
        f"corr_{f.name}", pt.dot(L_corr, L_corr.T), dims=(f.term_dim, f"{f.term_dim}2")
    )
    return sd, sd[:, None] * L_corr


def group_effects(
    f: FactorDesign,
    beta: pt.TensorVariable,
    sd_prior: Prior,
    corr_prior: Prior | None,
    centered: np.ndarray,
    report_beta: pt.TensorVariable | None = None,
) -> pt.TensorVariable:
    """Add one factor's varying effects to the model in context; return Z_i . u_{g[i]}, (N,).

    The effects u are those of :func:`varying_effects`, with the same arguments.
    """
    u = varying_effects(f, beta, sd_prior, corr_prior, centered, report_beta)
    return _gather(f, u)


def _gather(f: FactorDesign, u: pt.TensorVariable) -> pt.TensorVariable:
    """Z_i . u_{g[i]}, (N,), from u (J, q)."""
    # one term: a 1-d gather, whose gradient's scatter-add is 1-d too (2,000 rows into 60
    # groups: 3.9 microseconds, against 27 for the (N, 1) one)
    if len(f.terms) == 1:
        gathered = u[:, 0][f.codes]
        return gathered if np.all(f.Z == 1.0) else gathered * f.Z[:, 0]
    gathered = u[f.codes]  # (N, q): a gather by integer group code
    if np.all(f.Z == 1.0):
        return gathered.sum(axis=1)
    return (gathered * f.Z).sum(axis=1)


def varying_effects(
    f: FactorDesign,
    beta: pt.TensorVariable,
    sd_prior: Prior,
    corr_prior: Prior | None,
    centered: np.ndarray,
    report_beta: pt.TensorVariable | None = None,
    around: pt.TensorVariable | None = None,
) -> pt.TensorVariable:
    """Add one factor's varying effects to the model in context; return u, (J, q).

    ``centered`` (J,) says which groups are sampled centered, ``b_j ~ Normal(m_j, T)``; the
    others are non-centered, ``u_j = L z_j`` with ``z_j ~ Normal(0, I)``. All centered or all
    non-centered name the sampled variable ``b_<f>`` or ``z_<f>`` with the factor's dims; a
    mix samples ``b_<f>_centered`` and ``z_<f>`` over the coords ``<f>_centered`` and
    ``<f>_noncentered``.

    Under the intercept shear, ``beta`` holds ``Intercept_shifted`` and ``report_beta`` the
    coefficients themselves: the centered effects sampled around the shifted mean are then
    ``b_<f>_shifted`` (``b_<f>_centered_shifted``), and ``b_<f>`` = W_j report_beta + u_j.
    Under nested centering, ``around`` (J, q) holds each group's enclosing coefficient: the
    centered effects are sampled around m_j + around_j as ``b_<f>_nested``
    (``b_<f>_centered_nested``), and ``b_<f>`` = m_j + u_j.
    """
    dims = (f.name, f.term_dim)
    m = m_report = level2_mean(f, beta)
    if report_beta is not None:
        m_report = level2_mean(f, report_beta)
    if around is not None:
        m = m + around
    tag = "_nested" if around is not None else "" if report_beta is None else "_shifted"
    sd, chol = covariance_factor(f, sd_prior, corr_prior)

    def centred(name: str, mean, sample_dims):
        if chol is None:
            return pm.Normal(name, mu=mean, sigma=sd, dims=sample_dims)
        return pm.MvNormal(name, mu=mean, chol=chol, dims=sample_dims)

    def scaled(z):
        return z * sd if chol is None else pt.dot(z, chol.T)

    if centered.all():
        b = centred(f"b_{f.name}{tag}", m, dims)
        u = pm.Deterministic(f"u_{f.name}", b - m, dims=dims)
        if tag:
            pm.Deterministic(f"b_{f.name}", m_report + u, dims=dims)
    elif not centered.any():
        z = pm.Normal(f"z_{f.name}", 0.0, 1.0, dims=dims)
        u = pm.Deterministic(f"u_{f.name}", scaled(z), dims=dims)
        pm.Deterministic(f"b_{f.name}", m_report + u, dims=dims)
    else:
        c_idx, n_idx = np.flatnonzero(centered), np.flatnonzero(~centered)
        m_c = m if m.ndim == 1 else m[c_idx]
        b_c = centred(f"b_{f.name}_centered{tag}", m_c, (f"{f.name}_centered", f.term_dim))
        z = pm.Normal(f"z_{f.name}", 0.0, 1.0, dims=(f"{f.name}_noncentered", f.term_dim))
        order = np.argsort(np.concatenate([c_idx, n_idx]))
        u_all = pt.concatenate([b_c - m_c, scaled(z)], axis=0)[order]
        u = pm.Deterministic(f"u_{f.name}", u_all, dims=dims)
        pm.Deterministic(f"b_{f.name}", m_report + u, dims=dims)
    return u


def householder(J: int) -> np.ndarray:
    """The unit vector w of the reflection H = I - 2 w w' that maps e_J to 1 / sqrt(J).

    H is symmetric and orthogonal, so its first J - 1 columns are an orthonormal basis of the
    contrasts (vectors summing to zero), and H v costs O(J): ``v - 2 * w * (w @ v)``.

    Examples
    --------
    >>> w = householder(4)
    >>> H = np.eye(4) - 2 * np.outer(w, w)
    >>> np.round(H[:, -1], 3).tolist(), np.round(H[:, :-1].sum(axis=0), 12).tolist()
    ([0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
    """
    w = np.full(J, -1.0 / np.sqrt(J))
    w[-1] += 1.0
    return w / np.linalg.norm(w)


def sheared_mean(f: FactorDesign, sd_prior: Prior) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Add ``sd_<f>`` and ``zbar_<f>`` of a sheared factor; return (sd, mean(u)).

    mean(u) = sd * zbar / sqrt(J), zbar ~ Normal(0, 1) (module docstring).
    """
    sd = covariance_factor(f, sd_prior, None)[0][0]
    return sd, sd * pm.Normal(f"zbar_{f.name}", 0.0, 1.0) / np.sqrt(f.n_groups)


def sheared_effects(
    f: FactorDesign,
    beta: pt.TensorVariable,
    sd: pt.TensorVariable,
    mean: pt.TensorVariable,
    centered: bool,
) -> pt.TensorVariable:
    """Add a ``(1 | f)`` factor's contrasts under the intercept shear (module docstring).

    Centered, the contrasts of b = m + u are sampled, ``b_<f>_contrast`` ~ Normal(Q'm, sd)
    with Q the first J - 1 columns of H; non-centered, ``z_<f>_contrast`` ~ Normal(0, 1).
    Adds ``u_<f>`` and ``b_<f>`` (dims of the factor) as Deterministics and returns
    u - mean(u), (J,): what the likelihood sees.
    """
    J = f.n_groups
    w = householder(J)
    m = level2_mean(f, beta)[..., 0] * np.ones(J)  # (J,): zero unless f has level-2 columns
    dim = f"{f.name}_contrast"
    if centered:
        Hm = m - 2.0 * w * pt.dot(w, m)
        c = pm.Normal(f"b_{dim}", Hm[:-1], sd, dims=dim)
    else:
        c = sd * pm.Normal(f"z_{dim}", 0.0, 1.0, dims=dim)
    deviation = pt.concatenate([c, pt.zeros(1)]) - 2.0 * w * pt.dot(w[:-1], c)  # H [c; 0]
    if centered:  # b = H [c; 0] + mean(b), so u - mean(u) = H [c; 0] - (m - mean(m))
        deviation = deviation - (m - m.mean())
    u = deviation + mean
    pm.Deterministic(f"u_{f.name}", u[:, None], dims=(f.name, f.term_dim))
    pm.Deterministic(f"b_{f.name}", (m + u)[:, None], dims=(f.name, f.term_dim))
    return deviation


def marginal_likelihood(
    design: Design,
    beta: pt.TensorVariable,
    priors: Mapping[str, Prior],
    centered: Mapping[str, np.ndarray] | None = None,
    sheared: Mapping[str, tuple[pt.TensorVariable, pt.TensorVariable]] | None = None,
    report_beta: pt.TensorVariable | None = None,
) -> None:
    """Add the hyperparameters and the likelihood with the group effects integrated out.

    See :mod:`hierbayes.backend.marginal` (one factor) and
    :mod:`hierbayes.backend.marginal_multi` (nested: both factors integrated out; crossed: the
    largest factor integrated out, the others sampled, non-centered unless ``centered`` says
    which groups are centered). ``sheared`` holds (sd, mean) of the sampled factors under the
    intercept shear (:func:`sheared_mean`), with ``beta`` holding ``Intercept_shifted`` and
    ``report_beta`` the coefficients. ``u_<f>`` and ``b_<f>`` of the integrated factors are
    drawn after sampling.
    """
    centered, sheared = centered or {}, sheared or {}
    layout = marginal_layout(design)
    factors = {f.name: f for f in design.factors}

    def factor_L(name: str) -> pt.TensorVariable:
        f = factors[name]
        sd, chol = covariance_factor(f, priors[f"sd_{name}"], priors.get(f"corr_{name}"))
        return pt.diag(sd) if chol is None else chol

    if layout.kind == "one":
        L = factor_L(layout.marginal[0])
        by_group = sigma_by_group(design)
        if by_group is not None:  # sigma_j, one per group (rows: the groups in order)
            sigma = pt.exp(dpar_predictor(by_group, priors, centered=False))
        else:
            sigma = prior_rv(priors["sigma"], "sigma") if design.estimates_sigma else None
        loglik = marginal_loglik(sufficient_stats(design), beta, L, sigma)
    elif layout.kind == "nested":
        L1, L2 = (factor_L(name) for name in layout.marginal)
        sigma = prior_rv(priors["sigma"], "sigma") if design.estimates_sigma else None
        loglik = nested_loglik(nested_stats(design), beta, L1, L2, sigma)
    else:
        effects, L = [], None
        for f in design.factors:  # in formula order, as the other parameterisations
            if f.name in layout.sampled:
                mask = np.asarray(centered.get(f.name, np.zeros(f.n_groups, dtype=bool)))
                if f.name in sheared:
                    sd, mean = sheared[f.name]
                    effects.append(sheared_effects(f, beta, sd, mean, bool(mask[0]))[:, None])
                    continue
                sd_prior, corr_prior = priors[f"sd_{f.name}"], priors.get(f"corr_{f.name}")
                report = report_beta if sheared and _owns_intercept(design, f) else None
                effects.append(varying_effects(f, beta, sd_prior, corr_prior, mask, report))
            else:
                L = factor_L(f.name)
        sigma = prior_rv(priors["sigma"], "sigma") if design.estimates_sigma else None
        loglik = crossed_loglik(crossed_stats(design), beta, L, effects, sigma)
    pm.Potential(f"marginal_{design.response}", loglik)


def build_model(
    design: Design,
    priors: Mapping[str, Prior],
    *,
    parameterization: str | Mapping[str, np.ndarray],
    shear: Sequence[str] = (),
    centered: Mapping[str, np.ndarray] | None = None,
    nested: Mapping[str, str] | None = None,
) -> pm.Model:
    """Emit the PyMC model for ``design`` (see the module docstring for the maths).

    ``parameterization`` is ``"centered"``, ``"non-centered"``, ``"marginal"``, or a mapping
    of factor name to a boolean array over its groups (True: that group is centered).
    ``shear`` names the ``(1 | f)`` factors sampled under the intercept shear (what
    :func:`hierbayes.backend.plan.shear_factors` allows). With ``"marginal"`` and crossed
    factors, ``centered`` maps each sampled factor to its centered groups (default: none).
    ``nested`` maps the ``(1 | f)`` factors sampled under nested centering to their
    enclosing factor (what :func:`hierbayes.backend.plan.nested_factors` allows).
    """
    nested = nested or {}
    marginal = parameterization == "marginal" and design.factors
    coords = _coords(design, parameterization, shear)
    for d in design.dpars:
        coords.update(_coords(replace(design, factors=d.factors), "non-centered"))
    if design.response_levels is not None:
        levels = design.response_levels
        coords["cutpoint"] = [f"{a}|{b}" for a, b in zip(levels, levels[1:], strict=False)]
    with pm.Model(coords=coords) as model:
        sheared = {
            f.name: sheared_mean(f, priors[f"sd_{f.name}"])
            for f in design.factors
            if f.name in shear
        }
        beta, report_beta = coefficients(design, priors, [mean for _, mean in sheared.values()])
        if marginal:
            marginal_likelihood(design, beta, priors, centered, sheared, report_beta)
            return model

        def centered_groups(f: FactorDesign) -> np.ndarray:
            if isinstance(parameterization, Mapping):
                return np.asarray(parameterization[f.name], dtype=bool)
            return np.full(f.n_groups, parameterization == "centered")

        eta = pt.dot(design.X, beta) if design.fixed_names else pt.zeros(design.n_obs)
        if design.offset is not None:
            eta = eta + design.offset
        # the coefficients (J, q) of the enclosing factors of ``nested``, as the likelihood
        # sees them: level-2 mean plus effects (under the shear: what the factor adds to
        # eta) plus, for a factor nested itself, its own enclosing coefficient
        enclosing: dict[str, pt.TensorVariable] = {}
        for f in (f for f in design.factors if f.name in shear):
            sd, mean = sheared[f.name]
            deviation = sheared_effects(f, beta, sd, mean, centered_groups(f)[0])
            eta = eta + deviation[f.codes]
            enclosing[f.name] = level2_mean(f, beta) + deviation[:, None]
        for f in _outer_first(design, nested):
            if f.name in shear:
                continue
            around = None
            if f.name in nested:
                outer = next(o for o in design.factors if o.name == nested[f.name])
                b_outer = enclosing[outer.name][:, outer.terms.index("Intercept")]
                around = b_outer[nesting(outer, f)][:, None]
            u = varying_effects(
                f,
                beta,
                priors[f"sd_{f.name}"],
                priors.get(f"corr_{f.name}"),
                centered_groups(f),
                report_beta if shear and _owns_intercept(design, f) else None,
                around,
            )
            if f.name in nested.values():
                enclosing[f.name] = level2_mean(f, beta) + (0.0 if around is None else around) + u
            eta = eta + _gather(f, u)
        likelihood(
            design.family,
            design.response,
            eta,
            aux=aux_parameters(design, priors, report_beta, parameterization == "centered"),
            trials=design.trials,
            observed=design.y,
            dims="obs",
            weights=design.weights,
        )
    return model


def _outer_first(design: Design, nested: Mapping[str, str]) -> list[FactorDesign]:
    """The factors in formula order, except that an enclosing factor in ``nested`` comes
    before the factors it encloses (it is unchanged without nesting)."""
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            depth[name] = 0 if name not in nested else 1 + level(nested[name])
        return depth[name]

    return sorted(design.factors, key=lambda f: level(f.name))


def _owns_intercept(design: Design, f: FactorDesign) -> bool:
    """Whether the intercept is in f's level-2 mean."""
    names = design.fixed_names
    return "Intercept" in names and bool(f.owns[names.index("Intercept")])


def coefficients(
    design: Design, priors: Mapping[str, Prior], means: Sequence[pt.TensorVariable] = ()
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Add the population-level coefficients; return (beta as the graph uses it, beta).

    With the ``means`` of sheared factors, the graph samples ``Intercept_shifted`` =
    Intercept + sum(means) in the intercept's place and ``Intercept`` is a Deterministic
    whose prior enters as a Potential (module docstring); otherwise both are the same beta.
    """
    if not means:
        coefs = [prior_rv(priors[name], name) for name in design.fixed_names]
        beta = pt.stack(coefs) if coefs else pt.zeros(0)
        return beta, beta
    coefs, shifted = [], []
    for name in design.fixed_names:
        if name == "Intercept":
            a = pm.Flat(SHIFTED_INTERCEPT)
            intercept = pm.Deterministic(name, a - sum(means))
            pm.Potential(INTERCEPT_PRIOR, prior_logp(priors[name], intercept))
            coefs.append(intercept)
            shifted.append(a)
        else:
            coefs.append(prior_rv(priors[name], name))
            shifted.append(coefs[-1])
    return pt.stack(shifted), pt.stack(coefs)


def aux_parameters(
    design: Design, priors: Mapping[str, Prior], beta: pt.TensorVariable, centered: bool = False
) -> dict:
    """The family's auxiliary parameters, added to the model in context (known SEs: sigma).

    An ordinal model's cutpoints are sampled as ``cutpoints_centered`` = c - mean(X) beta,
    the cutpoints at the mean of the predictors, which carry their prior (as brms and rstanarm
    place an intercept's prior on centred predictors); ``cutpoints`` = c is a Deterministic.
    A parameter with a formula of its own (:mod:`hierbayes.spec.dpars`) is a vector over the
    rows, exp of its linear predictor; its group effects are non-centered unless
    ``centered``.
    """
    levels = None if design.response_levels is None else len(design.response_levels)
    aux = {}
    for name in design.aux:
        if name == "cutpoints":
            raw = aux_rv(priors[name], "cutpoints_centered", levels)
            # the predictors' mean over the rows as weighted (rows counted w times)
            xbar = np.average(design.X, axis=0, weights=design.weights)
            shift = pt.dot(xbar, beta) if design.fixed_names else 0.0
            aux[name] = pm.Deterministic(name, raw + shift, dims="cutpoint")
        else:
            aux[name] = aux_rv(priors[name], name, levels)
    if design.family.has_sigma and design.se is not None:
        aux["sigma"] = design.se
    for d in design.dpars:
        aux[d.name] = pt.exp(dpar_predictor(d, priors, centered))
    return aux


def dpar_predictor(d: DparDesign, priors: Mapping[str, Prior], centered: bool) -> pt.TensorVariable:
    """Add one distributional parameter's coefficients and group effects; return its
    linear predictor (log scale), (N,)."""
    coefs = [prior_rv(priors[name], name) for name in d.fixed_names]
    beta = pt.stack(coefs) if coefs else pt.zeros(0)
    eta = pt.dot(d.X, beta) if coefs else pt.zeros(d.X.shape[0])
    for f in d.factors:
        eta = eta + group_effects(
            f,
            beta,
            priors[f"sd_{f.name}"],
            priors.get(f"corr_{f.name}"),
            np.full(f.n_groups, centered),
        )
    return eta
