"""Formula terms evaluated on data: design matrices and the designs of grouping factors.

formulae evaluates each right-hand side (:func:`evaluate_terms`) and keeps the state that
re-evaluates it on new rows (:func:`evaluate_new`); :func:`build_factors` gives each grouping
factor its integer group codes, its small matrix ``Z`` of varying-effect columns and its
level-2 map. Used by :mod:`hierbayes.spec.design` for the model's linear predictor and by
:mod:`hierbayes.spec.dpars` for the linear predictors of distributional parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import formulae as fm
import numpy as np
import pandas as pd

from hierbayes.core.pooling import level2_map
from hierbayes.errors import DataError, SpecError, describe_rows
from hierbayes.spec.formula import GroupTerm
from hierbayes.spec.namespace import Namespace

__all__ = [
    "FactorDesign",
    "build_factors",
    "check_two_levels",
    "check_predictors",
    "evaluate_new",
    "evaluate_terms",
    "group_labels",
    "hand_out_level2",
    "nesting",
    "nesting_codes",
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
        of the factor not already taken by a factor that encloses it (nested designs) or
        comes before it in the formula (crossed designs); see :func:`build_factors`.
    level2 : ndarray of bool, shape (p,)
        All population columns that are level-2 for this factor, owned or not.
    sizes : ndarray, shape (J,), optional
        Observations per group when the design's rows are not the data's: per-group sums
        (whose ``codes`` and ``Z`` have no rows: :mod:`hierbayes.spec.reduce`), or distinct
        rows with counts (:mod:`hierbayes.spec.distinct`).
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
    sizes: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def counts(self) -> np.ndarray:
        """Observations per group."""
        if self.sizes is not None:
            return np.round(self.sizes).astype(np.int64)
        return np.bincount(self.codes, minlength=self.n_groups)

    @property
    def correlated(self) -> bool:
        """True when the effects form one correlated block, as in ``(x | g)``."""
        return len(self.blocks) == 1 and len(self.blocks[0]) > 1

    @property
    def term_dim(self) -> str:
        """Name of the coordinate that lists this factor's varying coefficients."""
        return f"{self.name}_term"


def evaluate_terms(
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
    _check_numbers_as_text(dm.common, data, where)
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


def _check_numbers_as_text(matrix: Any, data: pd.DataFrame, where: str) -> None:
    """A text column of measurements, named bare in a formula, is refused: every value reads
    as a number and some are not whole (``"2.35"``), so it would silently enter as one
    category per distinct value. Whole-number text (years, codes: ``"95"``) stays a
    categorical predictor, as an R factor would; ``C(x)`` says categories are meant."""
    for term in matrix.terms.values():
        for component in getattr(term, "components", []):
            name = getattr(component, "name", None)
            if (
                type(component).__name__ != "Variable"
                or getattr(component, "kind", None) != "categoric"
                or name not in data.columns
            ):
                continue
            values = data[name]
            if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
                continue
            present = values.dropna()
            numbers = pd.to_numeric(present, errors="coerce")
            if len(present) and numbers.notna().all() and (numbers % 1 != 0).any():
                example = present[numbers % 1 != 0].iloc[0]
                raise DataError(
                    f"{where}: column {name!r} holds numbers stored as text (e.g. "
                    f"{example!r}) and would enter as {present.nunique()} categories: "
                    f"convert it with pd.to_numeric (a missing value written as 'NA' or '.' "
                    f"in a CSV often causes this), or write C({name}) if its values are "
                    "category codes"
                )


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):  # formulae's lookup of an unknown name
        return f"the name {exc.args[0]!r} is neither a data column nor a known function"
    return str(exc) or type(exc).__name__


def evaluate_new(matrix: Any, data: pd.DataFrame, n_columns: int, where: str) -> np.ndarray:
    """Re-evaluate a stored formulae matrix on new rows."""
    if matrix is None:
        return np.empty((len(data), n_columns))
    try:
        return np.asarray(matrix.evaluate_new_data(data).design_matrix).astype(float)
    except Exception as exc:  # e.g. a category level the model never saw
        raise DataError(f"{where}: cannot evaluate the new data: {exc}") from None


def check_predictors(X: np.ndarray, names: tuple[str, ...], where: str) -> None:
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
    check_two_levels(name, levels)
    blocks, columns, names, matrices = [], [], [], []
    for term in terms:
        Z, znames, matrix = evaluate_terms(term.expr, data, f"group-level term {term}", namespace)
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
    check_predictors(Z, tuple(names), f"group-level terms of {name!r}")
    codes = codes.astype(np.int64)
    W, level2 = level2_map(X, Z, codes, len(levels))
    return FactorDesign(
        name=name,
        codes=codes,
        levels=levels,
        Z=Z,
        terms=tuple(names),
        blocks=tuple(blocks),
        W=W,
        owns=level2,  # until build_factors hands out the columns
        level2=level2,
        columns=terms[0].factor_columns,
        matrices=tuple(matrices),
    )


def check_two_levels(name: str, levels: Sequence[Any]) -> None:
    """A DataError unless grouping factor ``name`` has at least two levels.

    Examples
    --------
    >>> check_two_levels("school", ["a", "b"])
    >>> check_two_levels("school", ["a"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hierbayes.errors.DataError: grouping column 'school' has 1 level(s) (['a']): a varying ...
    """
    if len(levels) < 2:
        raise DataError(
            f"grouping column {name!r} has {len(levels)} level(s) ({list(levels)}): a varying "
            "effect needs at least 2 groups; drop the term or group by another column"
        )


def build_factors(
    groups: tuple[GroupTerm, ...], data: pd.DataFrame, X: np.ndarray, namespace: Namespace
) -> list[FactorDesign]:
    """One FactorDesign per grouping factor, in formula order; each owns the population
    columns that are its level-2 predictors and that no factor before it took.

    "Before" is formula order, except that a factor comes after every factor that encloses
    it (:func:`nesting`): in ``(1 | brood) + (1 | location)`` with broods inside locations, a
    location-level predictor belongs to the locations' level-2 model, where hierarchical
    centering puts it (Gelfand, Sahu & Carlin 1995), as in ``(1 | location/brood)``.
    """
    by_factor: dict[str, list[GroupTerm]] = {}
    for term in groups:
        by_factor.setdefault(term.factor, []).append(term)
    factors = [_factor_design(name, terms, data, X, namespace) for name, terms in by_factor.items()]
    return hand_out_level2(factors, [f.codes for f in factors])


def hand_out_level2(factors: list[FactorDesign], codes: list[np.ndarray]) -> list[FactorDesign]:
    """``factors`` with ``owns`` set (:func:`build_factors`), given each factor's group codes
    of the same rows (or cells)."""
    if not factors:
        return []
    depth = [
        sum(
            nesting_codes(c_o, c_f, f.n_groups) is not None
            for o, c_o in zip(factors, codes, strict=True)
            if o is not f
        )
        for f, c_f in zip(factors, codes, strict=True)
    ]
    taken = np.zeros(len(factors[0].owns), dtype=bool)
    owners: dict[int, FactorDesign] = {}
    for i in sorted(range(len(factors)), key=lambda i: depth[i]):  # stable: formula order
        owners[i] = replace(factors[i], owns=factors[i].level2 & ~taken)
        taken |= owners[i].owns
    return [owners[i] for i in range(len(factors))]


def nesting(outer: FactorDesign, inner: FactorDesign) -> np.ndarray | None:
    """The outer group of each inner group, (K,), when every group of ``inner`` lies inside
    one group of ``outer``; else None.

    Examples
    --------
    >>> import pandas as pd
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.spec.namespace import resolve
    >>> data = pd.DataFrame({"b": [*"aaaabbbb"], "c": [*"xxyyxxyy"]})
    >>> groups = parse("y ~ (1 | b/c)").groups
    >>> outer, inner = build_factors(groups, data, np.ones((8, 1)), resolve("safe"))
    >>> nesting(outer, inner).tolist(), nesting(inner, outer)
    ([0, 0, 1, 1], None)
    """
    return nesting_codes(outer.codes, inner.codes, inner.n_groups)


def nesting_codes(outer: np.ndarray, inner: np.ndarray, n_inner: int) -> np.ndarray | None:
    """:func:`nesting` of two factors given as group codes of the same rows (or cells), the
    inner one with ``n_inner`` groups.

    Examples
    --------
    >>> nesting_codes(np.array([0, 0, 1]), np.array([0, 1, 2]), 3).tolist()
    [0, 0, 1]
    >>> nesting_codes(np.array([0, 1, 1]), np.array([0, 0, 1]), 2) is None
    True
    """
    parent = np.full(n_inner, -1)
    parent[inner] = outer
    if (parent < 0).any() or not np.array_equal(parent[inner], outer):
        return None
    return parent
