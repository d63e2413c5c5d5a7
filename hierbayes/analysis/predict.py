"""Predictions for new rows from posterior draws.

For every posterior draw s and new row i in group j of each factor,
``eta_si = X_i beta_s + sum_f Z_i u_fsj``. A group the model has seen uses its own
``u_fsj``. An unseen group either raises (``new_groups="error"``) or, with
``new_groups="population"``, gets a fresh draw from the fitted population distribution,
``u ~ Normal(0, T_s)`` for each posterior draw: the prediction for a new school is spread
by the between-school SD, not pinned to the population line.

``kind="mean"`` is E[y] on the response's scale: g^-1(eta) with zero inflation applied,
exp(eta + sigma^2 / 2) for the lognormal family, a proportion per trial for the binomial
family, and for an ordinal response the expected level value (its integers, or positions
1..K of an ordered categorical); ``kind="response"`` draws y itself (ordinal: the level
value).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.errors import DataError, SpecError, describe_rows
from hierbayes.posterior.draws import (
    RowDraws,
    aux_draws,
    fixed_draws,
    group_covariance,
    linear_predictor,
    posterior_draws,
)
from hierbayes.spec.columns import is_numeric
from hierbayes.spec.design import (
    Design,
    check_columns,
    evaluate_new,
    group_labels,
    new_offset,
)
from hierbayes.spec.families import category_probs, level_scores
from hierbayes.spec.modelspec import ModelSpec

__all__ = ["predict", "KINDS", "NEW_GROUPS", "CHUNK_CELLS"]

KINDS = ("mean", "response")
NEW_GROUPS = ("population", "error")


def _not_numbers(values: pd.Series) -> np.ndarray:
    """Rows whose value is not a number (text, say): a boolean mask."""
    if is_numeric(values):
        return np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(values):
        return np.ones(len(values), dtype=bool)
    return pd.to_numeric(values, errors="coerce").isna().to_numpy()


def _predictors(design: Design, spec: ModelSpec) -> list[str]:
    """The columns new rows need: the model's, less the response, se, trials and weights."""
    left_out = (design.response, spec.se, spec.trials, design.weights_column)
    return [c for c in design.columns if c not in left_out]


def _check_new_data(
    model_data: pd.DataFrame | None, design: Design, spec: ModelSpec, data: pd.DataFrame, kind: str
) -> None:
    """Numeric columns hold numbers; for kind="response", SEs > 0 and whole trials >= 1."""
    for column in _predictors(design, spec):
        if model_data is None:  # per-group sums: every column in them is numeric
            numeric = design.sums is not None and column in design.sums.names
        else:
            numeric = is_numeric(model_data[column])
        if numeric:
            bad = _not_numbers(data[column])
            if bad.any():
                raise DataError(
                    f"column {column!r} holds numbers in the model's data but not in "
                    f"{describe_rows(data.index[bad])} of the new data: convert it with "
                    "pd.to_numeric"
                )
    if kind != "response":
        return
    for column, what, need in (
        (spec.se, "standard-error", "positive numbers"),
        (spec.trials, "trials", "whole numbers of at least 1"),
    ):
        if column is None:
            continue
        values = data[column]
        bad = _not_numbers(values)
        if not bad.any():
            numbers = values.to_numpy(dtype=float)
            bad = (
                numbers <= 0
                if what == "standard-error"
                else (numbers < 1) | (numbers != np.round(numbers))
            )
        if bad.any():
            raise DataError(
                f"{what} column {column!r} has values that are not {need} in "
                f"{describe_rows(data.index[bad])}; kind='response' draws the response with "
                "them: correct these rows"
            )


#: Cells of the largest work array (draws x rows x varying terms) made at once: 2^23 float64
#: numbers, 64 MB. Predictions are computed a chunk of draws at a time, so the memory they
#: take beyond their result stays bounded whatever the number of rows.
CHUNK_CELLS = 2**23


def _draw_subset(post: xr.Dataset, draws: int | None) -> xr.Dataset:
    """The posterior thinned to ``draws`` evenly spaced draws per chain (all when None)."""
    if draws is None:
        return post
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise SpecError(f"draws must be None or a whole number >= 1, got {draws!r}")
    total = post.sizes["draw"]
    if draws >= total:
        return post
    return post.isel(draw=np.linspace(0, total - 1, int(draws)).round().astype(int))


def _group_effects(
    idata: az.InferenceData, f, data: pd.DataFrame, new_groups: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, codes, Z) of one factor for the new rows: u (S, J + J_new, q), codes (rows,).

    Unseen groups get codes J, J + 1, ... and, with ``new_groups="population"``, effects
    drawn from Normal(0, T_s), one draw per posterior draw and group.
    """
    Z = np.hstack([evaluate_new(m, data, 0, f"group-level term of {f.name!r}") for m in f.matrices])
    labels = group_labels(data, f.columns)
    numeric = pd.api.types.is_numeric_dtype
    if numeric(f.levels) != numeric(pd.Index(labels)):
        had, has = ("numbers", "text") if numeric(f.levels) else ("text", "numbers")
        raise DataError(
            f"grouping column {f.name!r} holds {had} in the model's data but {has} in the new "
            "data, so no label would match and every row would count as a new group: convert "
            f"the column to the model's type (its labels: {list(f.levels[:3])} ...)"
        )
    codes = f.levels.get_indexer(pd.Index(labels))
    unseen = codes < 0
    if unseen.any() and new_groups == "error":
        names = sorted({str(v) for v in np.asarray(labels)[unseen]})
        raise DataError(
            f"grouping column {f.name!r} has levels the model never saw: {names[:10]}"
            f"{' ...' if len(names) > 10 else ''} in {describe_rows(data.index[unseen])}; "
            "use new_groups='population' to draw their effects from the fitted population"
        )
    u = posterior_draws(idata, f"u_{f.name}")  # (S, J, q)
    if unseen.any():
        new_codes, new_index = pd.factorize(pd.Index(labels)[unseen])
        q = u.shape[2]
        L = np.linalg.cholesky(group_covariance(idata, f) + 1e-12 * np.eye(q))
        z = rng.standard_normal((u.shape[0], len(new_index), q))
        # the level-2 part of an unseen group's coefficients is already in X beta
        u = np.concatenate([u, np.einsum("sjk,slk->sjl", z, L)], axis=1)
        codes = codes.copy()
        codes[unseen] = f.n_groups + new_codes
    return u, codes, Z


def _scores(design: Design) -> np.ndarray:
    """An ordinal response's level values: its integers, or positions 1..K of a categorical."""
    return level_scores(design.response_levels or ())


def predict(
    idata: az.InferenceData,
    model_data: pd.DataFrame,
    design: Design,
    spec: ModelSpec,
    data: pd.DataFrame,
    *,
    kind: str = "mean",
    new_groups: str = "population",
    random_seed: int | None = None,
    draws: int | None = None,
    group_effects: bool = True,
) -> xr.DataArray:
    """Posterior predictions for the rows of ``data``; see :meth:`hierbayes.Fit.predict`.

    ``group_effects=False`` leaves every group effect out (lme4's ``re.form = NA``, brms'
    ``re_formula = NA``): the population-level terms alone, group-level predictors included.

    ``idata`` holds the posterior, ``model_data`` the data the model was fitted to (for its
    column types), ``design`` and ``spec`` the model. The work goes a chunk of draws at a time
    (:data:`CHUNK_CELLS`), and the random draws come from one stream in draw order, so the
    result does not depend on the chunk size.
    """
    if kind not in KINDS:
        raise SpecError(f"kind must be one of {KINDS}, got {kind!r}")
    if new_groups not in NEW_GROUPS:
        raise SpecError(f"new_groups must be one of {NEW_GROUPS}, got {new_groups!r}")
    if not isinstance(data, pd.DataFrame) or len(data) == 0:
        raise DataError("data must be a pandas DataFrame with at least one row")
    if random_seed is not None and (
        isinstance(random_seed, bool)
        or not isinstance(random_seed, int | np.integer)
        or random_seed < 0
    ):
        raise SpecError(f"random_seed must be None or a whole number >= 0, got {random_seed!r}")
    post = _draw_subset(idata.posterior, draws)
    idata = az.InferenceData(posterior=post)
    needed = _predictors(design, spec)
    if kind == "response":
        needed += [c for c in (spec.se, spec.trials) if c is not None]
    check_columns(data, needed)
    _check_new_data(model_data, design, spec, data, kind)
    rng = np.random.default_rng(random_seed)

    X = design.select_fixed(evaluate_new(design.fixed_matrix, data, 0, "population-level terms"))
    offset = new_offset(design, data)
    beta = fixed_draws(idata, design)  # (S, p); (S, 0) with no fixed terms
    used = design.factors if group_effects else ()
    factors = [_group_effects(idata, f, data, new_groups, rng) for f in used]
    S, rows = beta.shape[0], len(data)
    q = max([Z.shape[1] for _, _, Z in factors], default=1)
    chunk = max(1, CHUNK_CELLS // (rows * q))
    se = data[spec.se].to_numpy(float) if spec.se and kind == "response" else None
    needs = design.family.aux if kind == "response" else design.family.mean_aux
    aux = aux_draws(idata, design, se=se, names=needs)
    for d in design.dpars:  # a parameter with its own formula, evaluated on the new rows
        if d.name in aux:
            where = f"terms of {d.name}={d.rhs!r}"
            Xd = evaluate_new(d.fixed_matrix, data, len(d.fixed_names), where)
            used = d.factors if group_effects else ()
            effects = [_group_effects(idata, f, data, new_groups, rng) for f in used]
            aux[d.name] = RowDraws(idata, d, Xd, effects)
    trials = data[spec.trials].to_numpy() if spec.trials else 1
    family = design.family
    scores = _scores(design)
    out = np.empty((S, rows))
    for start in range(0, S, chunk):
        sl = slice(start, min(start + chunk, S))
        eta = linear_predictor(X, offset, beta[sl], [(u[sl], c, Z) for u, c, Z in factors])
        part = {k: v[sl] if v.ndim > 1 else v for k, v in aux.items()}
        if kind == "mean" and family.ordinal:
            out[sl] = category_probs(family.link, eta, part["cutpoints"]) @ scores
        elif kind == "mean":
            out[sl] = family.mean(eta, part)
        elif family.ordinal:
            out[sl] = scores[family.sample(eta, part, trials, rng).astype(np.int64)]
        else:
            out[sl] = family.sample(eta, part, trials, rng)
    return xr.DataArray(
        out.reshape(post.sizes["chain"], post.sizes["draw"], rows),
        dims=("chain", "draw", "obs"),
        coords={"chain": post["chain"].values, "draw": post["draw"].values, "obs": data.index},
        name=design.response if kind == "response" else f"{design.response}_mean",
    )
