"""After sampling: complete the posterior and compute the pointwise log-likelihood.

Every sampler returns the sampled variables and the graph's Deterministics. Two things are
added here, the same way whatever sampled:

* for the marginal parameterisation, the integrated factors' group effects ``u_<f>`` and
  ``b_<f>``, drawn exactly from their conditional posterior (:func:`add_group_effects`);
* the pointwise log-likelihood ``log p(y_i | beta, u, aux)`` for LOO, per observation and
  draw, conditional on the group effects, as the other parameterisations define it (times
  the row's weight, with ``weights=``: the log-likelihood of its copies together). It takes
  S x N numbers, so it is skipped above :data:`LOG_LIKELIHOOD_MAX_CELLS` unless asked for.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from hierbayes.backend.marginal import draw_group_effects, sigma_by_group, sufficient_stats
from hierbayes.backend.marginal_draws import (
    draw_crossed_effects,
    draw_nested_effects,
    nested_group_loglik,
)
from hierbayes.backend.marginal_multi import (
    crossed_stats,
    marginal_layout,
    nested_stats,
)
from hierbayes.core.parallel import run_chunks
from hierbayes.core.sums import group_loglik_sums
from hierbayes.posterior.diagnostics import DRAWN_EXACTLY
from hierbayes.posterior.draws import (
    RowDraws,
    aux_draws,
    fixed_draws,
    group_covariance,
    linear_predictor,
    posterior_draws,
)
from hierbayes.spec.design import Design, FactorDesign

__all__ = [
    "LOG_LIKELIHOOD_MAX_CELLS",
    "add_group_effects",
    "group_log_likelihood",
    "group_observations",
    "log_likelihood_groups",
    "no_log_likelihood",
    "pointwise_log_likelihood",
]

#: Draws x observations above which the pointwise log-likelihood is skipped by default
#: (5e7 float64 numbers take 400 MB).
LOG_LIKELIHOOD_MAX_CELLS = 50_000_000


def _reshape(post: xr.Dataset, values: np.ndarray) -> np.ndarray:
    return values.reshape(post.sizes["chain"], post.sizes["draw"], *values.shape[1:])


def add_group_effects(design: Design, idata: az.InferenceData, rng: np.random.Generator) -> None:
    """Marginal fits: draw the integrated factors' ``u_<f>`` exactly, from their conditional
    posterior given each posterior draw, and add them and ``b_<f>`` to ``idata.posterior`` in
    place.

    One factor: :func:`hierbayes.backend.marginal.draw_group_effects`. Nested factors: the
    outer effects given y, then the inner ones given the outer and y
    (:func:`hierbayes.backend.marginal_draws.draw_nested_effects`). Crossed factors: the
    integrated factor's effects given the sampled factors' effects and y
    (:func:`hierbayes.backend.marginal_draws.draw_crossed_effects`).
    """
    layout = marginal_layout(design)
    factors = {f.name: f for f in design.factors}
    beta = fixed_draws(idata, design)
    sigma = posterior_draws(idata, "sigma") if design.estimates_sigma else None
    if layout.kind == "one":
        (f,) = design.factors
        by_group = sigma_by_group(design)
        if by_group is not None:  # (S, J): sigma_j per draw
            sigma = RowDraws(idata, by_group)[:]
        u = draw_group_effects(sufficient_stats(design), beta, _chol(idata, f), sigma, rng)
        drawn = {f.name: u}
    elif layout.kind == "nested":
        outer, inner = (factors[name] for name in layout.marginal)
        chol1, chol2 = _chol(idata, outer), _chol(idata, inner)
        u1, u2 = draw_nested_effects(nested_stats(design), beta, chol1, chol2, sigma, rng)
        drawn = {outer.name: u1, inner.name: u2}
    else:
        (name,) = layout.marginal
        effects = [posterior_draws(idata, f"u_{o}") for o in layout.sampled]
        chol = _chol(idata, factors[name])
        u = draw_crossed_effects(crossed_stats(design), beta, chol, effects, sigma, rng)
        drawn = {name: u}
    post = idata.posterior
    new = {}
    for name, u in drawn.items():
        f = factors[name]
        dims = ("chain", "draw", f.name, f.term_dim)
        coords = {f.name: list(f.levels), f.term_dim: list(f.terms)}
        new[f"b_{f.name}"] = xr.DataArray(
            _reshape(post, _coefficients(f, beta, u)), dims=dims, coords=coords
        )
        new[f"u_{f.name}"] = xr.DataArray(_reshape(post, u), dims=dims, coords=coords)
    idata.posterior = post.assign(new)
    # diagnose() leaves these out: each is an exact draw given a posterior draw, so how well
    # the chains mixed shows in the sampled parameters (and R-hat and ESS over 2 x 10^4
    # group effects took 19 s of a 90 s fit at N = 10^6, J = 10^4)
    idata.posterior.attrs[DRAWN_EXACTLY] = " ".join(sorted(new))


def _coefficients(f: FactorDesign, beta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """b = W beta_owned + u per draw, (S, J, q), built in place a block of draws at a time
    (at J = 10^4 and 4,000 draws, a whole (S, J, q) temporary is 640 MB)."""
    b = u.copy()
    owned = f.owns.nonzero()[0]
    if owned.size:
        W, step = f.W[:, :, owned], max(1, 2**20 // u[0].size)
        for start in range(0, len(b), step):
            sl = slice(start, start + step)
            b[sl] += np.einsum("jqp,sp->sjq", W, beta[sl][:, owned])
    return b


def _chol(idata: az.InferenceData, f: FactorDesign) -> np.ndarray:
    """The lower Cholesky factor of T per draw, (S, q, q)."""
    if f.correlated:
        return np.linalg.cholesky(group_covariance(idata, f))
    sd = posterior_draws(idata, f"sd_{f.name}")  # (S, q)
    return sd[:, :, None] * np.eye(sd.shape[1])


def pointwise_log_likelihood(
    design: Design, idata: az.InferenceData, *, chunk: int | None = None
) -> xr.Dataset:
    """The ``log_likelihood`` group: log p(y_i | parameters) per draw and observation.

    Draws are taken ``chunk`` at a time (by default as many as make about 2^18 cells, so that
    the work arrays stay in the CPU's cache), on up to two threads.

    Examples
    --------
    >>> import arviz as az, numpy as np, hierbayes as hb
    >>> df = hb.datasets.load("eight_schools")
    >>> d = hb.Model("y ~ 1 + (1 | school)", df, se="sigma").design
    >>> idata = az.from_dict(posterior={
    ...     "Intercept": np.zeros((1, 1)), "u_school": np.zeros((1, 1, 8, 1))})
    >>> ll = pointwise_log_likelihood(d, idata)["y"]
    >>> ll.dims, round(float(ll[0, 0, 0]), 4)  # Normal(28; 0, 15) for school A
    (('chain', 'draw', 'obs'), -5.3692)
    """
    post = idata.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    aux = aux_draws(idata, design)
    beta = fixed_draws(idata, design)
    effects = [posterior_draws(idata, f"u_{f.name}") for f in design.factors]
    out = np.empty((S, design.n_obs))
    chunk = chunk or max(1, 2**18 // design.n_obs)

    def fill(start: int) -> None:
        sl = slice(start, min(start + chunk, S))
        parts = [(u[sl], f.codes, f.Z) for f, u in zip(design.factors, effects, strict=True)]
        eta = linear_predictor(design.X, design.eta_offset, beta[sl], parts)
        part = {k: v[sl] if v.ndim > 1 else v for k, v in aux.items()}
        out[sl] = design.family.log_density(design.y, eta, part, trials=design.trials)
        if design.weights is not None:
            out[sl] *= design.weights

    run_chunks(fill, range(0, S, chunk))
    index = design.index if design.index.is_unique else np.arange(design.n_obs)
    values = _reshape(post, out)
    da = xr.DataArray(
        values,
        dims=("chain", "draw", "obs"),
        coords={"chain": post["chain"].values, "draw": post["draw"].values, "obs": list(index)},
    )
    return xr.Dataset({design.response: da})


def group_log_likelihood(design: Design, idata: az.InferenceData) -> xr.Dataset:
    """The ``log_likelihood`` group of a design of per-group sums: log p(y_j | beta, T, sigma)
    per draw and group j, with the group's effects integrated out exactly.

    PSIS-LOO over these terms is leave-one-group-out (LOGO): how well the model predicts a
    whole new group's data, the question a hierarchical model is often asked; its unit is
    the group, so it compares only with other LOGO fits of the same groups. Stored as
    float32 (computed in float64): a draw's term of a group of 1,000 rows, about -1,400, is
    kept to 1e-4, far below its spread over the draws, and the array is half the size
    (160 MB at 4,000 draws and 10^4 groups). With nested factors the groups are the outer
    factor's, both levels of effects integrated out
    (:func:`hierbayes.backend.marginal_draws.nested_group_loglik`).
    """
    sums, post = design.sums, idata.posterior
    beta, sigma = fixed_draws(idata, design), posterior_draws(idata, "sigma")
    if sums.cells is None:
        (f,) = design.factors
        values = group_loglik_sums(
            sums.gram,
            sums.n,
            sums.x_cols,
            sums.z_cols[0],
            sums.y_col,
            beta,
            _chol(idata, f),
            sigma,
            dtype=np.float32,
        )
    else:
        f, inner = log_likelihood_groups(design)
        outer = design.factor_sums(f)
        xy = [*sums.x_cols, sums.y_col]
        values = nested_group_loglik(
            nested_stats(design),
            beta,
            _chol(idata, f),
            _chol(idata, inner),
            sigma,
            outer.gram[:, xy][:, :, xy],
            outer.n,
        ).astype(np.float32)
    da = xr.DataArray(
        _reshape(post, values),
        dims=("chain", "draw", f.name),
        coords={"chain": post["chain"].values, "draw": post["draw"].values, f.name: list(f.levels)},
    )
    return xr.Dataset({design.response: da})


def log_likelihood_groups(design: Design) -> tuple[FactorDesign, ...] | None:
    """The factor whose groups a design of sums splits its log-likelihood into, first: (outer,
    inner) with nested factors, (factor,) with one; None when it does not split (crossed)."""
    if design.sums.cells is None:
        return design.factors[:1]
    layout = marginal_layout(design)
    if layout.kind != "nested":
        return None
    return tuple(next(f for f in design.factors if f.name == n) for n in layout.marginal)


def no_log_likelihood(design: Design) -> str | None:
    """Why a fit of ``design`` holds no log-likelihood (and what to do), or None.

    Examples
    --------
    >>> import hierbayes as hb
    >>> no_log_likelihood(hb.Model("y ~ 1 + (1 | school)", hb.datasets.load("eight_schools"),
    ...                            se="sigma").design) is None
    True
    """
    if design.multiplicity is not None:
        return (
            f"a model of {design.reduced} has no log-likelihood per row (the term of a "
            "distinct row or cell is not one row's): pass reduce=False to read the rows"
        )
    if design.sums is not None and log_likelihood_groups(design) is None:
        return (
            "a model of per-cell sums with crossed factors has no log-likelihood per group "
            "(its marginal likelihood does not split into groups; leave-one-group-out needs "
            "one factor or nested ones): pass reduce=False to read the rows"
        )
    return None


def group_observations(design: Design) -> xr.Dataset:
    """The ``observed_data`` group of a design of sums: the count, sum and sum of squares of
    the response in each group that the log-likelihood is split into
    (:func:`log_likelihood_groups`: what two fits compared by leave-one-group-out share), or
    with crossed factors in each cell."""
    sums, statistic = design.sums, ["n", "sum", "sum_of_squares"]
    split = log_likelihood_groups(design)
    if split is not None:
        f = split[0]
        sums = design.factor_sums(f)
        dims, coords = (f.name, "statistic"), {f.name: list(f.levels)}
    else:  # a cell is named by its group of every factor
        dims = ("cell", "statistic")
        coords = {
            f.name: ("cell", list(f.levels[sums.cells[:, i]])) for i, f in enumerate(design.factors)
        }
    y = sums.y_col
    values = np.stack([sums.n, sums.gram[:, 0, y], sums.gram[:, y, y]], axis=1)
    da = xr.DataArray(values, dims=dims, coords={**coords, "statistic": statistic})
    return xr.Dataset({design.response: da})
