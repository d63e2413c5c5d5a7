"""Predictions for new rows from posterior draws.

For every posterior draw s and new row i in group j of each factor,
``eta_si = X_i beta_s + sum_f Z_i u_fsj``. A group the model has seen uses its own
``u_fsj``. An unseen group either raises (``new_groups="error"``) or, with
``new_groups="population"``, gets a fresh draw from the fitted population distribution,
``u ~ Normal(0, T_s)`` for each posterior draw: the prediction for a new school is spread
by the between-school SD, not pinned to the population line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.design import check_columns, evaluate_new, group_labels
from hierbayes.errors import DataError, SpecError, describe_rows
from hierbayes.report import fixed_draws, posterior_draws

if TYPE_CHECKING:
    from hierbayes.fit import Fit

__all__ = ["predict", "KINDS", "NEW_GROUPS"]

KINDS = ("mean", "response")
NEW_GROUPS = ("population", "error")


def _population_cov(fit: Fit, factor) -> np.ndarray:
    """T_s, (S, q, q), from the SD draws (and correlations when the effects are correlated)."""
    sd = posterior_draws(fit.idata, f"sd_{factor.name}")
    corr = (
        posterior_draws(fit.idata, f"corr_{factor.name}")
        if factor.correlated
        else np.eye(sd.shape[1])
    )
    return sd[:, :, None] * corr * sd[:, None, :]


def _not_numbers(values: pd.Series) -> np.ndarray:
    """Rows whose value is not a number (text, say): a boolean mask."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(values):
        return np.ones(len(values), dtype=bool)
    return pd.to_numeric(values, errors="coerce").isna().to_numpy()


def _check_new_data(fit: Fit, data: pd.DataFrame, kind: str) -> None:
    """Numeric columns hold numbers; for kind="response", SEs > 0 and whole trials >= 1."""
    model = fit.model
    spec = model.spec
    predictors = [v for v in model.design.formula.variables if v != model.design.response]
    for column in predictors:
        trained = model.data[column]
        if pd.api.types.is_numeric_dtype(trained) and not pd.api.types.is_bool_dtype(trained):
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


def predict(
    fit: Fit,
    data: pd.DataFrame,
    *,
    kind: str = "mean",
    new_groups: str = "population",
    random_seed: int | None = None,
) -> xr.DataArray:
    """Posterior predictions for the rows of ``data``; see :meth:`hierbayes.Fit.predict`."""
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
    design = fit.model.design
    spec = fit.model.spec
    needed = [v for v in design.formula.variables if v != design.response]
    if kind == "response":
        needed += [c for c in (spec.se, spec.trials) if c is not None]
    check_columns(data, needed)
    _check_new_data(fit, data, kind)
    rng = np.random.default_rng(random_seed)

    X = evaluate_new(design.fixed_matrix, data, 0, "population-level terms")
    eta = fixed_draws(fit.idata, design) @ X.T  # (S, rows); zeros with no fixed terms
    S = eta.shape[0]
    for f in design.factors:
        Z = np.hstack(
            [evaluate_new(m, data, 0, f"group-level term of {f.name!r}") for m in f.matrices]
        )
        labels = group_labels(data, f.columns)
        codes = f.levels.get_indexer(pd.Index(labels))
        unseen = codes < 0
        if unseen.any() and new_groups == "error":
            names = sorted({str(v) for v in np.asarray(labels)[unseen]})
            raise DataError(
                f"grouping column {f.name!r} has levels the model never saw: {names[:10]}"
                f"{' ...' if len(names) > 10 else ''} in {describe_rows(data.index[unseen])}; "
                "use new_groups='population' to draw their effects from the fitted population"
            )
        u = posterior_draws(fit.idata, f"u_{f.name}")  # (S, J, q)
        effects = np.zeros((S, len(data), u.shape[2]))
        effects[:, ~unseen] = u[:, codes[~unseen]]
        if unseen.any():
            new_codes, new_index = pd.factorize(pd.Index(labels)[unseen])
            L = np.linalg.cholesky(_population_cov(fit, f) + 1e-12 * np.eye(u.shape[2]))
            z = rng.standard_normal((S, len(new_index), u.shape[2]))
            effects[:, unseen] = np.einsum("sjk,slk->sjl", z, L)[:, new_codes]
            # the level-2 part of an unseen group's coefficients is already in X beta
        eta += np.einsum("snk,nk->sn", effects, Z)

    mean = design.family.mean(eta)
    if kind == "mean":
        out = mean
    elif design.family.name == "gaussian":
        scale = (
            data[spec.se].to_numpy(float)
            if spec.se
            else posterior_draws(fit.idata, "sigma")[:, None]
        )
        out = rng.normal(mean, scale)
    elif design.family.name == "poisson":
        out = rng.poisson(mean).astype(float)
    else:
        n = data[spec.trials].to_numpy() if spec.trials else 1
        out = rng.binomial(n, mean).astype(float)
    post = fit.idata.posterior
    return xr.DataArray(
        out.reshape(post.sizes["chain"], post.sizes["draw"], len(data)),
        dims=("chain", "draw", "obs"),
        coords={"chain": post["chain"].values, "draw": post["draw"].values, "obs": data.index},
        name=design.response if kind == "response" else f"{design.response}_mean",
    )
