"""From a formula and a DataFrame to a validated numerical design.

Everything the PyMC graph and the reports need is computed here once: the response,
the population-level design matrix ``X``, and for each grouping factor the integer group
code of every row and its small matrix ``Z`` of varying-effect columns. Group-level
effects are gathered by code, so no N x J indicator matrix is ever made.

Every check names the column, the offending rows (by their index labels) and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import formulae as fm
import numpy as np
import pandas as pd

from hierbayes.core.pooling import level2_map
from hierbayes.errors import DataError, SpecError, describe_rows
from hierbayes.spec.families import Family, ordinal_codes
from hierbayes.spec.formula import Formula, GroupTerm
from hierbayes.spec.names import check_names
from hierbayes.spec.namespace import Namespace, check_safe, resolve

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
]


@dataclass(frozen=True, eq=False)
class FactorDesign:
    """The varying effects of one grouping factor.

    Attributes
    ----------
    name : str
        The factor, a column name or ``"a:b"`` for nested/interacted columns.
    codes : ndarray of int, shape (N,)
        Group index of every row.
    levels : pandas.Index, shape (J,)
        Group labels, in order of first appearance (or category order for a Categorical).
    Z : ndarray, shape (N, q)
        Columns whose coefficients vary by group (``1`` gives the ``Intercept`` column).
    terms : tuple of str
        Names of the ``q`` varying coefficients.
    blocks : tuple of tuple of int
        Term indices that share a correlated block; an uncorrelated term is a block of one.
    W : ndarray, shape (J, q, p)
        The level-2 model (see :func:`hierbayes.core.pooling.level2_map`): group j's coefficients
        are centred on ``W[j][:, owns] @ beta[owns]``.
    owns : ndarray of bool, shape (p,)
        Population columns this factor's coefficients are centred on: the level-2 columns
        of the factor not already taken by an earlier factor (crossed designs).
    level2 : ndarray of bool, shape (p,)
        All population columns that are level-2 for this factor, owned or not.
    """

    name: str
    codes: np.ndarray
    levels: pd.Index
    Z: np.ndarray
    terms: tuple[str, ...]
    blocks: tuple[tuple[int, ...], ...]
    W: np.ndarray
    owns: np.ndarray
    level2: np.ndarray
    columns: tuple[str, ...] = ()
    matrices: tuple[Any, ...] = ()

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def counts(self) -> np.ndarray:
        """Observations per group."""
        return np.bincount(self.codes, minlength=self.n_groups)

    @property
    def correlated(self) -> bool:
        """True when the effects form one correlated block, as in ``(x | g)``."""
        return len(self.blocks) == 1 and len(self.blocks[0]) > 1

    @property
    def term_dim(self) -> str:
        """Name of the coordinate that lists this factor's varying coefficients."""
        return f"{self.name}_term"


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

    ``weights`` (N,) multiply each row's log-likelihood (frequency weights), or None.
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
    offset_matrices: tuple[Any, ...] = ()
    weights: np.ndarray | None = None
    response_levels: tuple | None = None
    fixed_columns: np.ndarray | None = None

    @property
    def n_obs(self) -> int:
        return len(self.y)

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
        """The family's auxiliary parameters this model estimates (no sigma with known SEs)."""
        return tuple(a for a in self.family.aux if a != "sigma" or self.se is None)

    @property
    def estimates_sigma(self) -> bool:
        """A residual SD (or scale, student_t) is a parameter."""
        return "sigma" in self.aux

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
            sd = float(np.std(self.y_link, ddof=1)) if self.n_obs > 1 else 0.0
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
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
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
                "never drops rows silently: remove or impute these rows before fitting"
            )


def _evaluate(
    rhs: str, data: pd.DataFrame, where: str, namespace: Namespace
) -> tuple[np.ndarray, tuple[str, ...], Any]:
    """Evaluate a right-hand side with formulae: (matrix, column names, formulae matrix).

    Names resolve in the data, then in ``namespace``. The formulae object re-evaluates the
    same terms on new data with the training data's state (category levels, the mean and SD
    of ``scale(x)``, the knots of ``bs(x)``). A term whose values are not finite (``log`` of
    a value <= 0, say) is a DataError naming the term and the rows.
    """
    try:
        with np.errstate(all="ignore"):
            dm = fm.design_matrices(rhs, data, na_action="pass", env=namespace.environment())
    except Exception as exc:  # formulae raises plain Exceptions for bad calls and types
        raise SpecError(f"{where}: formulae cannot evaluate {rhs!r}: {_describe(exc)}") from None
    if dm.common is None:
        return np.empty((len(data), 0)), (), None
    frame = dm.common.as_dataframe()
    X = frame.to_numpy(dtype=float)
    bad = ~np.isfinite(X)
    if bad.any():
        k = int(np.argmax(bad.any(axis=0)))
        raise DataError(
            f"{where}: term {str(frame.columns[k])!r} is not a finite number in "
            f"{describe_rows(data.index[bad[:, k]])} (a transform outside its domain, such "
            "as log of a value <= 0?): correct or remove these rows, or change the term"
        )
    return X, tuple(str(c) for c in frame.columns), dm.common


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):  # formulae's lookup of an unknown name
        return f"the name {exc.args[0]!r} is neither a data column nor a known function"
    return str(exc) or type(exc).__name__


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


def evaluate_new(matrix: Any, data: pd.DataFrame, n_columns: int, where: str) -> np.ndarray:
    """Re-evaluate a stored formulae matrix on new rows."""
    if matrix is None:
        return np.empty((len(data), n_columns))
    try:
        return np.asarray(matrix.evaluate_new_data(data).design_matrix).astype(float)
    except Exception as exc:  # e.g. a category level the model never saw
        raise DataError(f"{where}: cannot evaluate the new data: {exc}") from None


def _check_predictors(X: np.ndarray, names: tuple[str, ...], where: str) -> None:
    huge = np.abs(X).max(axis=0, initial=0.0) > 1e150 if X.size else np.zeros(0, bool)
    if huge.any():
        k = int(np.argmax(huge))
        raise DataError(
            f"{where}: predictor {names[k]!r} holds values too large to compute with "
            f"(largest |value| {np.abs(X[:, k]).max():.3g}): rescale it, e.g. divide by a "
            "power of 10"
        )
    for k, name in enumerate(names):
        if name != "Intercept" and X.shape[0] > 1 and np.ptp(X[:, k]) == 0:
            raise DataError(
                f"{where}: predictor {name!r} is constant ({X[0, k]:g} in every row), so its "
                "effect cannot be told from the intercept: remove it from the formula"
            )
    for k in range(1, len(names) + 1):
        if np.linalg.matrix_rank(X[:, :k]) < k:
            raise DataError(
                f"{where}: predictor {names[k - 1]!r} is a linear combination of "
                f"{list(names[: k - 1])} (perfectly collinear): remove one of them"
            )


def group_labels(data: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    if len(columns) == 1:
        labels = data[columns[0]]
        if isinstance(labels.dtype, pd.CategoricalDtype):
            return labels.cat.remove_unused_categories()
        return labels
    return data[list(columns)].astype(str).agg(":".join, axis=1)


def _factor_design(
    name: str,
    terms: list[GroupTerm],
    data: pd.DataFrame,
    X: np.ndarray,
    taken: np.ndarray,
    namespace: Namespace,
) -> FactorDesign:
    labels = group_labels(data, terms[0].factor_columns)
    if isinstance(labels.dtype, pd.CategoricalDtype):
        codes = labels.cat.codes.to_numpy()
        levels = pd.Index(labels.cat.categories, name=name)
    else:
        codes, uniques = pd.factorize(labels, sort=False)
        levels = pd.Index(uniques, name=name)
    shown = pd.Index(levels.map(str))
    if shown.has_duplicates:
        same = sorted({str(v) for v in shown[shown.duplicated()]})[:3]
        raise DataError(
            f"grouping column {name!r} has labels that differ in type but read the same "
            f"({same}, e.g. the number 1 and the text '1'): they would count as different "
            "groups; convert the column to one type, e.g. data[col].astype(str)"
        )
    if len(levels) < 2:
        raise DataError(
            f"grouping column {name!r} has {len(levels)} level(s) ({list(levels)}): a varying "
            "effect needs at least 2 groups; drop the term or group by another column"
        )
    blocks, columns, names, matrices = [], [], [], []
    for term in terms:
        Z, znames, matrix = _evaluate(term.expr, data, f"group-level term {term}", namespace)
        matrices.append(matrix)
        if not znames:
            raise SpecError(f"group-level term {term} has no columns")
        dup = sorted(set(znames) & set(names))
        if dup:
            raise SpecError(f"coefficient(s) {dup} vary by {name!r} in more than one term")
        start = len(names)
        idx = tuple(range(start, start + len(znames)))
        blocks.extend([idx] if term.correlated else [(i,) for i in idx])
        columns.append(Z)
        names.extend(znames)
    if len(blocks) > 1 and any(len(block) > 1 for block in blocks):
        raise SpecError(
            f"the varying effects by {name!r} mix correlated and uncorrelated blocks: write "
            f"them as one block ({' + '.join(names)} | {name}) or all uncorrelated (... || "
            f"{name})"
        )
    Z = np.hstack(columns)
    _check_predictors(Z, tuple(names), f"group-level terms of {name!r}")
    codes = codes.astype(np.int64)
    W, level2 = level2_map(X, Z, codes, len(levels))
    owns = level2 & ~taken
    return FactorDesign(
        name=name,
        codes=codes,
        levels=levels,
        Z=Z,
        terms=tuple(names),
        blocks=tuple(blocks),
        W=W,
        owns=owns,
        level2=level2,
        columns=terms[0].factor_columns,
        matrices=tuple(matrices),
    )


def _offsets(
    formula: Formula, data: pd.DataFrame, column: str | None, namespace: Namespace
) -> tuple[np.ndarray | None, tuple[Any, ...]]:
    """The summed offset (N,) of ``offset(...)`` terms and the ``offset=`` column, or None."""
    if not formula.offsets and column is None:
        return None, ()
    total = np.zeros(len(data))
    matrices = []
    for expr in formula.offsets:
        values, names, matrix = _evaluate(f"0 + {expr}", data, f"offset({expr})", namespace)
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
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
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
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
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


def _factors(
    groups: tuple[GroupTerm, ...], data: pd.DataFrame, X: np.ndarray, namespace: Namespace
) -> list[FactorDesign]:
    """One FactorDesign per grouping factor, in formula order; each owns the population
    columns that are its level-2 predictors (and no later factor takes them again)."""
    by_factor: dict[str, list[GroupTerm]] = {}
    for term in groups:
        by_factor.setdefault(term.factor, []).append(term)
    taken = np.zeros(X.shape[1], dtype=bool)
    factors: list[FactorDesign] = []
    for name, terms in by_factor.items():
        factors.append(_factor_design(name, terms, data, X, taken, namespace))
        taken |= factors[-1].owns
    return factors


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
) -> Design:
    """Validate ``data`` against ``formula`` and compute the numerical design.

    ``namespace`` holds the names the formula's terms may use beyond the data's columns
    (:mod:`hierbayes.spec.namespace`; by default the safe set).

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
    X, fixed_names, fixed_matrix = _evaluate(
        formula.fixed, data, "population-level terms", namespace
    )
    fixed_columns = None
    if family.ordinal and "Intercept" in fixed_names:  # the cutpoints take its place
        fixed_columns = np.array([n != "Intercept" for n in fixed_names])
        X, fixed_names = X[:, fixed_columns], tuple(n for n in fixed_names if n != "Intercept")
    _check_predictors(X, fixed_names, "population-level terms")

    factors = _factors(formula.groups, data, X, namespace)
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
        offset_matrices=offset_matrices,
        weights=_check_weights(data, weights),
        response_levels=levels,
        fixed_columns=fixed_columns,
    )
    check_names(
        design.response,
        design.fixed_names,
        aux=design.aux,
        factors=[f.name for f in design.factors],
    )
    return design
