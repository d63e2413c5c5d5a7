"""From a formula and a DataFrame to a validated numerical design.

Everything the PyMC graph and the reports need is computed here once: the response,
the population-level design matrix ``X``, and for each grouping factor the integer group
code of every row and its small matrix ``Z`` of varying-effect columns. Group-level
effects are gathered by code, so no N x J indicator matrix is ever made.

Every check names the column, the offending rows (by their index labels) and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.errors import DataError, SpecError, describe_rows
from hierbayes.spec.columns import is_numeric
from hierbayes.spec.dpars import DparDesign, build_dpars, parse_dpar
from hierbayes.spec.families import Family, ordinal_codes
from hierbayes.spec.formula import Formula
from hierbayes.spec.grouped import GroupSums
from hierbayes.spec.names import check_names
from hierbayes.spec.namespace import Namespace, check_safe, resolve
from hierbayes.spec.terms import (
    FactorDesign,
    build_factors,
    check_predictors,
    evaluate_new,
    evaluate_terms,
    group_labels,
)

__all__ = [
    "FactorDesign",
    "Design",
    "build_design",
    "check_columns",
    "check_present",
    "evaluate_new",
    "group_labels",
    "incomplete_rows",
    "model_columns",
    "new_offset",
    "row_moments",
]


@dataclass(frozen=True, eq=False)
class Design:
    """The validated numerical form of a model's data.

    ``se`` holds known observation standard errors (meta-analysis form) or is None when
    the residual SD is estimated. ``scale`` is the response scale used by default priors.
    ``columns`` are the data columns the model reads (the response, every column a term
    reads, the grouping columns, ``se``, ``trials`` and ``offset``).

    ``offset`` (N,) is the sum of the formula's ``offset(...)`` terms and the ``offset=``
    column, or None: it enters the linear predictor with coefficient 1,
    ``eta = offset + X beta + Z u``. For the identity link, models of ``y`` with an offset are
    models of ``y - offset`` (:attr:`y_adjusted`).

    ``weights`` (N,) multiply each row's log-likelihood (frequency weights), or None; they
    come from the column ``weights_column``. ``multiplicity`` (N,) is set when the rows are
    the data's distinct rows (:mod:`hierbayes.spec.distinct`): how many rows each stands
    for, also its weight. ``summed_offsets`` (N,) is set when the rows are cells of a
    Poisson model's rows, their counts and exposures summed (:mod:`hierbayes.spec.summed`):
    the sum of each cell's rows' offsets (``multiplicity`` then counts the rows, which are
    not weights). ``sums`` replaces the rows of a one-factor Gaussian model by
    per-group sums (:mod:`hierbayes.spec.reduce`); y, X, codes and Z then have no rows.
    ``response_levels`` are an ordinal response's levels in order (``y`` holds their codes
    0..K-1); ``fixed_columns`` picks the kept columns of ``fixed_matrix`` (see
    :meth:`select_fixed`).
    """

    response: str
    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    se: np.ndarray | None
    factors: tuple[FactorDesign, ...]
    index: pd.Index
    family: Family
    trials: np.ndarray | None = None
    formula: Formula | None = None
    fixed_matrix: Any = None
    columns: tuple[str, ...] = ()
    offset: np.ndarray | None = None
    offset_column: str | None = None
    weights_column: str | None = None
    offset_matrices: tuple[Any, ...] = ()
    weights: np.ndarray | None = None
    response_levels: tuple | None = None
    fixed_columns: np.ndarray | None = None
    dpars: tuple[DparDesign, ...] = ()
    sums: GroupSums | None = None
    multiplicity: np.ndarray | None = None
    summed_offsets: np.ndarray | None = None

    @property
    def n_obs(self) -> int:
        return len(self.y) if self.sums is None else self.sums.n_obs

    @property
    def reduced(self) -> str | None:
        """What the design holds in place of the data's rows, in words, when the engine
        reduced them (per-group sums, or distinct rows with counts); None for rows."""
        if self.sums is not None:
            return f"per-group sums of its {self.n_rows:,} rows"
        if self.summed_offsets is not None:
            return (
                f"the {self.n_obs:,} cells of its {self.n_rows:,} rows, counts and exposures summed"
            )
        if self.multiplicity is not None:
            return f"the {self.n_obs:,} distinct rows of its {self.n_rows:,} rows, with counts"
        return None

    def require_rows(self, what: str) -> None:
        """Refuse ``what`` for a design made of per-group sums or of distinct rows with
        counts (the engine reduced the rows), saying what to do."""
        if self.reduced is None:
            return
        raise SpecError(
            f"{what} needs the data's rows, and this model holds {self.reduced} (computed in the "
            "engine that holds them). Fit it from rows to get this: pass reduce=False, or a "
            "pandas frame (a sample of the rows if they do not fit in memory)"
        )

    def factor_sums(self, f: FactorDesign) -> GroupSums:
        """The per-group sums of factor ``f``'s groups, of a design of sums (with several
        factors, its cells added up: :meth:`~hierbayes.spec.grouped.GroupSums.by_factor`)."""
        return self.sums.by_factor(self.factors.index(f), f.n_groups)

    @property
    def n_rows(self) -> int:
        """The data's rows: :attr:`n_obs`, or of distinct rows the rows they stand for."""
        return self.n_obs if self.multiplicity is None else int(self.multiplicity.sum())

    def response_mean(self) -> float:
        """Mean of the response over the rows (of y / trials for the binomial; of log y for
        the lognormal)."""
        if self.sums is not None:
            return self.sums.mean(self.sums.y_col)
        if self.summed_offsets is not None:
            return float(self.mean_per_row(self.y))
        y = self.y_link if self.trials is None else self.y / self.trials
        return row_moments(y, self.multiplicity)[0]

    def offset_mean(self) -> float:
        """Mean of the offset over the rows (0 without one)."""
        if self.summed_offsets is not None:
            return float(self.mean_per_row(self.summed_offsets))
        return 0.0 if self.offset is None else row_moments(self.offset, self.multiplicity)[0]

    def mean_per_row(self, totals: np.ndarray) -> np.ndarray | float:
        """The mean over the data's rows of a quantity that adds up over rows (a count, a
        Poisson mean), given for each of the design's rows along the last axis: each row's
        value, a distinct row's for each row it stands for, or a cell's sum over its rows.

        Examples
        --------
        >>> import hierbayes as hb, polars as pl
        >>> df = pl.DataFrame({"y": [1, 2, 0], "t": [1.0, 1.0, 2.0], "k": ["a", "a", "b"]})
        >>> d = hb.Model("y ~ k + offset(np.log(t))", df, family="poisson", reduce=True).design
        >>> d.y.tolist(), float(d.mean_per_row(d.y))  # 2 cells of 3 rows: 3 counts per row
        ([3.0, 0.0], 1.0)
        """
        if self.summed_offsets is not None:
            return np.sum(totals, axis=-1) / self.n_rows
        if self.multiplicity is not None:
            return np.average(totals, axis=-1, weights=self.multiplicity)
        return np.mean(totals, axis=-1)

    def column_sd(self, k: int) -> float:
        """Standard deviation (ddof 1) of population-level column ``k``."""
        if self.sums is not None:
            return self.sums.sd(self.sums.x_cols[k])
        return row_moments(self.X[:, k], self.multiplicity)[1]

    def column_rms(self) -> np.ndarray:
        """Root mean square of each population-level column, (p,)."""
        if self.sums is not None:
            return np.array([self.sums.rms(c) for c in self.sums.x_cols])
        return np.sqrt(np.average(self.X**2, axis=0, weights=self.multiplicity))

    @property
    def y_adjusted(self) -> np.ndarray:
        """The response (log y: lognormal) less the offset (the response itself without one)."""
        y = self.family.link_response(self.y)
        return y if self.offset is None else y - self.offset

    @property
    def eta_offset(self) -> np.ndarray | float:
        """The offset, or 0.0: what the linear predictor starts from."""
        return 0.0 if self.offset is None else self.offset

    @property
    def aux(self) -> tuple[str, ...]:
        """The family's auxiliary parameters this model estimates as one number each: not
        sigma with known SEs, nor a parameter with a formula of its own (:attr:`dpars`)."""
        own = {d.name for d in self.dpars}
        return tuple(
            a for a in self.family.aux if (a != "sigma" or self.se is None) and a not in own
        )

    @property
    def estimates_sigma(self) -> bool:
        """A single residual SD (or scale, student_t) is a parameter."""
        return "sigma" in self.aux

    def dpar(self, name: str) -> DparDesign | None:
        """The design of the distributional parameter ``name``, or None."""
        return next((d for d in self.dpars if d.name == name), None)

    @property
    def y_link(self) -> np.ndarray:
        """The response on the linear predictor's scale for identity links (log y: lognormal)."""
        return self.family.link_response(self.y)

    def select_fixed(self, X: np.ndarray) -> np.ndarray:
        """The population-level columns the model keeps (the cumulative family drops the
        intercept, which its cutpoints replace)."""
        return X if self.fixed_columns is None else X[:, self.fixed_columns]

    @property
    def scale(self) -> float:
        """SD of the response (the mean known SE when it is constant); 1 on a GLM's link scale."""
        if self.family.link != "identity":
            return 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            if self.sums is not None:
                sd = self.sums.sd(self.sums.y_col)
            else:
                sd = row_moments(self.y_link, self.multiplicity)[1]
        if not np.isfinite(sd):
            raise DataError(
                f"response column {self.response!r} holds values too large to compute with "
                f"(largest |value| {np.max(np.abs(self.y)):.3g}): rescale it, e.g. divide by "
                "a power of 10"
            )
        if sd > 0:
            return sd
        if self.se is not None:
            return float(np.mean(self.se))
        raise DataError(  # guarded in build_design; kept so the property never returns 0
            f"response column {self.response!r} is constant: no scale to fit"
        )


def row_moments(values: np.ndarray, multiplicity: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and SD (ddof 1; 0 for one row) of ``values`` over the rows, each value counted
    ``multiplicity`` times when given (distinct rows standing for their rows).

    Examples
    --------
    >>> row_moments(np.array([0.0, 1.0]), np.array([3, 1]))  # the rows 0, 0, 0, 1
    (0.25, 0.5)
    """
    n = len(values) if multiplicity is None else float(np.sum(multiplicity))
    mean = float(np.average(values, weights=multiplicity))
    if n <= 1:
        return mean, 0.0
    squares = np.average((values - mean) ** 2, weights=multiplicity) * n
    return mean, float(np.sqrt(squares / (n - 1)))


def check_present(data: pd.DataFrame, columns: list[str]) -> None:
    """Raise naming the first column the model uses that the data lack (and the closest)."""
    missing = [c for c in columns if c not in data.columns]
    if missing:
        col = missing[0]
        close = get_close_matches(col, [str(c) for c in data.columns], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"column {col!r} is used by the model but is not in the data.{hint} "
            f"The data have columns: {', '.join(map(repr, data.columns))}"
        )


def _bad_cells(values: pd.Series) -> tuple[np.ndarray, str]:
    bad = values.isna().to_numpy()
    if bad.any():
        return bad, "missing values (NaN/None)"
    if is_numeric(values):
        raw = values.to_numpy()
        numbers = raw if raw.dtype.kind == "c" else values.to_numpy(dtype=float)
        return ~np.isfinite(numbers), "infinite values"
    return bad, ""


def incomplete_rows(data: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Rows with a missing or infinite value in any of ``columns`` (a boolean mask)."""
    mask = np.zeros(len(data), dtype=bool)
    for col in columns:
        mask |= _bad_cells(data[col])[0]
    return mask


def check_columns(data: pd.DataFrame, columns: list[str]) -> None:
    """Every column present, with no missing or infinite value; else a DataError naming rows."""
    check_present(data, columns)
    for col in columns:
        kind = data[col].dtype.kind
        if kind in "mM":
            raise DataError(
                f"column {col!r} holds {'dates' if kind == 'M' else 'time spans'} "
                f"({data[col].dtype}): convert it to a number (e.g. days since a start date) "
                "or to a category before using it in a formula"
            )
        bad, what = _bad_cells(data[col])
        if bad.any():
            raise DataError(
                f"column {col!r} has {what} in {describe_rows(data.index[bad])}. hierbayes "
                "never drops rows silently: remove or impute these rows before fitting, or "
                "pass dropna=True to drop them with a warning that counts them"
            )


def model_columns(
    formula: Formula, data: pd.DataFrame, namespace: Namespace, extra: list[str | None]
) -> list[str]:
    """The data columns a model reads: the formula's variables that the data hold, and ``extra``.

    A variable that is neither a column nor a name of ``namespace`` is a DataError naming
    the closest column; with the safe namespace, a name outside it is a SpecError
    (:func:`hierbayes.spec.namespace.check_safe`).
    """
    if namespace.safe:
        check_safe(formula.text, formula.names, [str(c) for c in data.columns])
    columns = [v for v in formula.variables if v in data.columns or namespace.lookup(v) is None]
    columns += [c for c in extra if c is not None and c not in columns]
    check_present(data, columns)
    return columns


def _offsets(
    formula: Formula, data: pd.DataFrame, column: str | None, namespace: Namespace
) -> tuple[np.ndarray | None, tuple[Any, ...]]:
    """The summed offset (N,) of ``offset(...)`` terms and the ``offset=`` column, or None."""
    if not formula.offsets and column is None:
        return None, ()
    total = np.zeros(len(data))
    matrices = []
    for expr in formula.offsets:
        values, names, matrix = evaluate_terms(f"0 + {expr}", data, f"offset({expr})", namespace)
        if values.shape[1] != 1:
            raise SpecError(
                f"offset({expr}) gives {values.shape[1]} columns {list(names)}: an offset is "
                "one number per row (a numeric column or expression)"
            )
        total += values[:, 0]
        matrices.append(matrix)
    if column is not None:
        total += _numbers(data, column, "offset")
    return total, tuple(matrices)


def _numbers(data: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """A numeric column as floats, or a DataError naming it."""
    values = data[column]
    if not is_numeric(values):
        raise DataError(f"{what} column {column!r} has dtype {values.dtype}; it needs numbers")
    return values.to_numpy(dtype=float)


def new_offset(design: Design, data: pd.DataFrame) -> np.ndarray | float:
    """The offset of new rows (0.0 when the model has none), with the training state."""
    if design.offset is None:
        return 0.0
    total = np.zeros(len(data))
    for matrix in design.offset_matrices:
        total += evaluate_new(matrix, data, 1, "offset")[:, 0]
    if design.offset_column is not None:
        total += _numbers(data, design.offset_column, "offset")
    return total


def _check_trials(data: pd.DataFrame, trials: str | None, family: Family) -> np.ndarray | None:
    if family.needs_trials != (trials is not None):
        if trials is None:
            raise SpecError(f"the {family.name} family needs trials='<column>' (trials per row)")
        raise SpecError(f"trials= is for the binomial family, not {family.name}")
    if trials is None:
        return None
    values = data[trials]
    if not is_numeric(values):
        raise DataError(f"trials column {trials!r} has dtype {values.dtype}; it needs integers")
    n = values.to_numpy(dtype=float)
    bad = (n < 1) | (n != np.round(n))
    if bad.any():
        raise DataError(
            f"trials column {trials!r} has values that are not positive integers in "
            f"{describe_rows(data.index[bad])}: correct or remove these rows"
        )
    return n


def _check_weights(data: pd.DataFrame, weights: str | None) -> np.ndarray | None:
    """Observation weights: numbers, all > 0."""
    if weights is None:
        return None
    values = _numbers(data, weights, "weights")
    bad = values <= 0
    if bad.any():
        raise DataError(
            f"weights column {weights!r} has values <= 0 in {describe_rows(data.index[bad])}: "
            "weights multiply each row's log-likelihood and must be positive; remove rows "
            "you mean to leave out"
        )
    return values


def _check_frame(data: Any, se: str | None, family: Family) -> None:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise DataError("data has no rows")
    if se is not None and family.name != "gaussian":
        raise SpecError(
            f"se= (known standard errors) is for the gaussian family, not {family.name}"
        )


def _known_se(data: pd.DataFrame, se: str) -> np.ndarray:
    """The known standard errors: numbers, all > 0."""
    values = _numbers(data, se, "standard-error")
    bad = values <= 0
    if bad.any():
        raise DataError(
            f"standard-error column {se!r} has values <= 0 in "
            f"{describe_rows(data.index[bad])}: known standard errors must be positive; "
            "correct or remove these rows"
        )
    return values


def build_design(
    formula: Formula,
    data: pd.DataFrame,
    *,
    se: str | None,
    family: Family,
    trials: str | None = None,
    namespace: Namespace | None = None,
    offset: str | None = None,
    weights: str | None = None,
    dpars: Mapping[str, str] | None = None,
) -> Design:
    """Validate ``data`` against ``formula`` and compute the numerical design.

    ``namespace`` holds the names the formula's terms may use beyond the data's columns
    (:mod:`hierbayes.spec.namespace`; by default the safe set). ``dpars`` maps an
    auxiliary parameter to its one-sided formula (:mod:`hierbayes.spec.dpars`).

    Raises
    ------
    DataError
        A missing column; NaN or inf in a used column; a non-numeric response; a known
        standard error that is not positive; a constant or collinear predictor; a grouping
        column with fewer than 2 levels; a constant response with no known SEs.
    SpecError
        A term formulae cannot evaluate (an unknown function, say).

    Examples
    --------
    >>> import pandas as pd
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.spec.families import GAUSSIAN
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0], "g": ["a", "a", "b", "b"]})
    >>> d = build_design(parse("y ~ 1 + (1 | g)"), df, se=None, family=GAUSSIAN)
    >>> d.fixed_names, d.factors[0].codes.tolist(), list(d.factors[0].levels)
    (('Intercept',), [0, 0, 1, 1], ['a', 'b'])
    """
    _check_frame(data, se, family)
    namespace = namespace if namespace is not None else resolve("safe")
    columns = model_columns(formula, data, namespace, [se, trials, offset, weights])
    dpar_formulas = {}
    for name, rhs in (dpars or {}).items():
        if name == "sigma" and se is not None:
            raise SpecError(
                f"sigma={rhs!r} with se={se!r}: the standard errors are known, so sigma has "
                "no formula to follow; drop one of the two"
            )
        dpar_formulas[name] = parse_dpar(name, rhs, family, formula.response)
        more = model_columns(dpar_formulas[name], data, namespace, [])
        columns += [c for c in more if c not in columns]
    check_columns(data, columns)

    trial_values = _check_trials(data, trials, family)
    levels = None
    if family.ordinal:
        y, levels = ordinal_codes(formula.response, data[formula.response], data.index)
    else:
        y = family.check_response(
            formula.response, data[formula.response], data.index, trial_values
        )
    se_values = None if se is None else _known_se(data, se)
    continuous = family.support in ("real", "positive", "unit")
    if se_values is None and continuous and np.ptp(y) == 0:
        raise DataError(
            f"response column {formula.response!r} is constant ({y[0]:g} in every row): "
            "there is nothing to model"
        )

    offset_values, offset_matrices = _offsets(formula, data, offset, namespace)
    X, fixed_names, fixed_matrix = evaluate_terms(
        formula.fixed, data, "population-level terms", namespace
    )
    fixed_columns = None
    if family.ordinal and "Intercept" in fixed_names:  # the cutpoints take its place
        fixed_columns = np.array([n != "Intercept" for n in fixed_names])
        X, fixed_names = X[:, fixed_columns], tuple(n for n in fixed_names if n != "Intercept")
    check_predictors(X, fixed_names, "population-level terms")

    factors = build_factors(formula.groups, data, X, namespace)
    if not fixed_names and not factors:
        raise SpecError(f"formula {formula.text!r} has no terms to estimate")

    design = Design(
        response=formula.response,
        y=y,
        X=X,
        fixed_names=fixed_names,
        se=se_values,
        factors=tuple(factors),
        index=data.index,
        family=family,
        trials=trial_values,
        formula=formula,
        fixed_matrix=fixed_matrix,
        columns=tuple(columns),
        offset=offset_values,
        offset_column=offset,
        weights_column=weights,
        offset_matrices=offset_matrices,
        weights=_check_weights(data, weights),
        response_levels=levels,
        fixed_columns=fixed_columns,
        dpars=build_dpars(dpar_formulas, data, namespace),
    )
    check_names(
        design.response,
        design.fixed_names + tuple(n for d in design.dpars for n in d.fixed_names),
        aux=design.aux,
        factors=[f.name for f in design.factors]
        + [f.name for d in design.dpars for f in d.factors],
    )
    return design
