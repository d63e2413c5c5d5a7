"""A Gaussian model's per-group sums computed where its rows live, and the design they make.

A one-factor Gaussian model ``y ~ x + (x | g)`` needs of its data only each group's
cross-products ``A_j'A_j`` of ``A = [1, x, ..., y]`` (:mod:`hierbayes.spec.grouped`). With
nested or crossed factors (``(1 | b/c)``, ``(1 | b) + (1 | d)``) the same cross-products per
*cell*, each distinct combination of the grouping columns, give every statistic the nested
and crossed marginal likelihoods need (:mod:`hierbayes.backend.marginal_multi`); a factor's
groups add up their cells. So
``hb.Model(formula, data)`` with data in an engine (a Parquet or CSV path or glob, SQL, a
DuckDB relation, polars, pyarrow, a Dask frame) computes them there, as one grouped
aggregation:

* DuckDB, polars and pyarrow run it through narwhals: the products are columns, then one
  ``GROUP BY g`` sums them (DuckDB and polars stream the rows; nothing holds them all);
* a Dask frame sums each partition where it lives (on the workers of the active client),
  and the client adds the partial sums, J rows per partition.

The same pass counts each column's missing and non-finite values per group and takes each
group's minimum and maximum of every column (group-level predictors are the columns constant
within every group). Only the bad rows are then looked up, to name them.

What reduces (:func:`unreducible` says why a model does not): the gaussian family with its
identity link; population and group-level terms that are an intercept
or a numeric column as it is (``x``, not ``log(x)`` or ``C(k)``); no ``se=``, ``weights=``,
offset, ``trials=`` or formula for sigma. Anything else is read as rows.

Examples
--------
>>> import pandas as pd
>>> from hierbayes.spec.formula import parse
>>> from hierbayes.spec.families import GAUSSIAN
>>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0], "x": [0.0, 1.0, 0.5, 2.0],
...                    "g": ["a", "a", "b", "b"]})
>>> d = reduced_design(parse("y ~ x + (1 | g)"), df, GAUSSIAN)
>>> d.n_obs, d.fixed_names, list(d.factors[0].levels), d.sums.n.tolist()
(4, ('Intercept', 'x'), ['a', 'b'], [2.0, 2.0])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import formulae as fm
import numpy as np
import pandas as pd

from hierbayes.errors import DataError, SpecError, describe_rows
from hierbayes.spec.columns import is_number_type
from hierbayes.spec.design import Design, FactorDesign, check_present
from hierbayes.spec.families import Family
from hierbayes.spec.formula import Formula
from hierbayes.spec.grouped import GroupSums
from hierbayes.spec.names import check_names
from hierbayes.spec.namespace import resolve
from hierbayes.spec.sources import (
    bad_flag,
    bad_rows,
    by_partition,
    column_names,
    is_dask,
    key_names,
    open_frame,
    schema,
)
from hierbayes.spec.terms import (
    check_two_levels,
    evaluate_terms,
    group_labels,
    hand_out_level2,
)

__all__ = ["GroupTable", "check_reducible", "reduced_design", "unreducible"]

#: relative size below which a column's spread within a group counts as none
_RTOL = 1e-9


@dataclass(frozen=True)
class _FactorLayout:
    """One grouping factor of a reducible model: its name (``g``, or ``a:b`` for nested or
    interacted columns), its grouping columns, varying terms and blocks."""

    name: str
    columns: tuple[str, ...]
    varying: tuple[str, ...]  # group-level term names ("Intercept" or a column)
    blocks: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class _Layout:
    """Which data columns a reducible model reads, and how its terms map onto them."""

    keys: tuple[str, ...]  # the grouping columns: the sums are per distinct combination
    columns: tuple[str, ...]  # data columns of A after "1", the response last
    fixed: tuple[str, ...]  # population-level term names ("Intercept" or a column)
    factors: tuple[_FactorLayout, ...]


def _plain_terms(rhs: str, where: str) -> tuple[str, ...] | str:
    """The terms of ``rhs`` as names (``Intercept`` or a column), or why they are not plain."""
    terms: list[str] = []
    for term in fm.model_description(rhs).terms:
        if type(term).__name__ == "Intercept":
            terms.append("Intercept")
            continue
        parts = getattr(term, "components", [])
        if len(parts) != 1 or type(parts[0]).__name__ != "Variable":
            return f"{where} term {term.name} is not a column as it is"
        terms.append(parts[0].name)
    return tuple(terms)


def _layout(formula: Formula, family: Family, options: dict[str, Any]) -> _Layout | str:
    """The reducible model's layout, or why the model does not reduce to per-group sums."""
    if family.name != "gaussian" or family.link != "identity":
        return f"the {family.name} family with its {family.link} link has no per-group sums"
    given = [k for k, v in options.items() if v]
    if given:
        return f"{given[0]}= is not in the per-group sums"
    if formula.offsets:
        return "an offset(...) term is not in the per-group sums"
    if not formula.groups:
        return "the model has no grouping factor"
    fixed = _plain_terms(formula.fixed, "population-level")
    if isinstance(fixed, str):
        return fixed
    by_factor: dict[str, list] = {}
    for g in formula.groups:
        by_factor.setdefault(g.factor, []).append(g)
    factors = []
    for name, terms in by_factor.items():
        varying: list[str] = []
        blocks: list[tuple[int, ...]] = []
        for g in terms:
            names = _plain_terms(g.expr, "group-level")
            if isinstance(names, str):
                return names
            idx = tuple(range(len(varying), len(varying) + len(names)))
            blocks.extend([idx] if g.correlated else [(i,) for i in idx])
            varying.extend(names)
        if len(set(varying)) < len(varying) or (
            len(blocks) > 1 and any(len(b) > 1 for b in blocks)
        ):
            return f"its terms varying by {name!r} repeat a coefficient or mix correlated blocks"
        factors.append(_FactorLayout(name, terms[0].factor_columns, tuple(varying), tuple(blocks)))
    keys = tuple(dict.fromkeys(c for f in factors for c in f.columns))
    all_varying = [n for f in factors for n in f.varying]
    data_columns = [n for n in dict.fromkeys([*fixed, *all_varying]) if n != "Intercept"]
    both = sorted(set(keys) & {*data_columns, formula.response})
    if both:
        return f"column {both[0]!r} is both a grouping column and a number in the formula"
    return _Layout(keys, (*data_columns, formula.response), fixed, tuple(factors))


def unreducible(
    formula: Formula, family: Family, schema: dict[str, Any] | None = None, **options: Any
) -> str | None:
    """Why the model's data do not reduce to per-group sums, or None when they do.

    ``options`` are the model's other column arguments (``se``, ``weights``, ``offset``,
    ``trials``) and formulas of auxiliary parameters; any given one stops the reduction.
    With the data's ``schema`` (column name -> type), a column that is missing or does not
    hold numbers stops it too (a text predictor is a category, which the rows give).

    Examples
    --------
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.spec.families import GAUSSIAN
    >>> unreducible(parse("y ~ x + (x | g)"), GAUSSIAN) is None
    True
    >>> unreducible(parse("y ~ log(x) + (1 | g)"), GAUSSIAN)
    'population-level term log(x) is not a column as it is'
    """
    layout = _layout(formula, family, options)
    if isinstance(layout, str):
        return layout
    for column in [*layout.keys, *layout.columns] if schema is not None else []:
        if column not in schema:
            return f"column {column!r} is not in the data"
        if column not in layout.keys and not is_number_type(schema[column]):
            return f"column {column!r} holds {schema[column]}, not numbers"
    return None


def check_reducible(why: str | None, dropna: bool, parameterization: str) -> None:
    """``reduce=True``: refuse what per-group sums cannot give, saying what to do. ``why``
    is :func:`unreducible`'s reason."""
    if why:
        raise SpecError(
            f"reduce=True: the model does not reduce to per-group sums: {why}. Pass "
            "reduce=False to read the rows (or compute such a column in the engine)"
        )
    if dropna:
        raise SpecError(
            "dropna=True drops rows, and per-group sums have none: filter the rows in "
            "the engine (e.g. SQL WHERE), or pass reduce=False to read them"
        )
    if parameterization not in ("auto", "marginal"):
        raise SpecError(
            f"parameterization={parameterization!r} samples every group's "
            "effects from the rows; a model of per-group sums integrates them out: use "
            "'auto' or 'marginal', or pass reduce=False to read the rows"
        )


def _sums_narwhals(frame: Any, keys: tuple[str, ...], columns: tuple[str, ...]) -> pd.DataFrame:
    """One grouped aggregation of ``frame`` (narwhals, eager or lazy): per distinct
    combination of the ``keys`` the count, the sums of the columns and of their pairwise
    products, minima, maxima, bad values."""
    import narwhals.stable.v2 as nw

    m = len(columns)
    values = [nw.col(c).cast(nw.Float64).alias(f"v{i}") for i, c in enumerate(columns)]
    names = key_names(len(keys))
    frame = frame.select(*(nw.col(k).alias(n) for k, n in zip(keys, names, strict=True)), *values)
    pairs = [(a, b) for a in range(m) for b in range(a, m)]
    products = [(nw.col(f"v{a}") * nw.col(f"v{b}")).alias(f"p{a}_{b}") for a, b in pairs]
    bad = [bad_flag(f"v{a}", numeric=True).cast(nw.Int64).alias(f"bad{a}") for a in range(m)]
    frame = frame.with_columns(*products, *bad)
    sums = [f"v{a}" for a in range(m)] + [f"p{a}_{b}" for a, b in pairs]
    out = frame.group_by(*names).agg(
        nw.len().alias("n"),
        *(nw.col(s).sum().alias(f"s_{s}") for s in sums),
        *(nw.col(f"v{a}").min().alias(f"min{a}") for a in range(m)),
        *(nw.col(f"v{a}").max().alias(f"max{a}") for a in range(m)),
        *(nw.col(f"bad{a}").sum() for a in range(m)),
    )
    if hasattr(out, "collect"):
        out = out.collect()
    return out.to_pandas()


def _partition_sums(
    part: pd.DataFrame, keys: tuple[str, ...], columns: tuple[str, ...]
) -> pd.DataFrame:
    return _sums_narwhals(open_frame(part), keys, columns)


def _engine_sums(data: Any, keys: tuple[str, ...], columns: tuple[str, ...]) -> pd.DataFrame:
    """Sums of ``data``'s columns per distinct combination of the ``keys``, computed by its
    engine; one row per combination."""
    if not is_dask(data):
        return _sums_narwhals(open_frame(data), keys, columns)
    m = range(len(columns))
    how = {f"min{a}": "min" for a in m} | {f"max{a}": "max" for a in m}
    part = partial(_partition_sums, keys=keys, columns=columns)
    return by_partition(data, part, key_names(len(keys)), how)


def _refuse_bad(data: Any, table: pd.DataFrame, layout: _Layout, what: str) -> None:
    """A DataError naming the first column with missing or non-finite values and its rows."""
    for key, column in zip(key_names(len(layout.keys)), layout.keys, strict=True):
        if table[key].isna().any():
            rows = bad_rows(data, column, numeric=False)
            raise DataError(
                f"grouping column {column!r} has missing values in "
                f"{describe_rows(pd.Index(rows))} of {what}. hierbayes never drops rows "
                "silently: filter them out in the engine (e.g. SQL WHERE ... IS NOT NULL) or "
                "give them a group"
            )
    for a, column in enumerate(layout.columns):
        if table[f"bad{a}"].sum():
            rows = bad_rows(data, column)
            raise DataError(
                f"column {column!r} has missing values (NaN/None) or infinite values in "
                f"{describe_rows(pd.Index(rows))} of {what}. hierbayes never drops rows "
                "silently: filter or impute them in the engine (e.g. SQL WHERE "
                f"isfinite({column})) before fitting"
            )


def _gram(table: pd.DataFrame, m: int) -> np.ndarray:
    """(J, m + 1, m + 1) cross-products of [1, v_0 .. v_{m-1}] from the aggregated table."""
    J = len(table)
    G = np.empty((J, m + 1, m + 1))
    G[:, 0, 0] = table["n"].to_numpy(dtype=float)
    for a in range(m):
        G[:, 0, a + 1] = G[:, a + 1, 0] = table[f"s_v{a}"].to_numpy(dtype=float)
        for b in range(a, m):
            G[:, a + 1, b + 1] = G[:, b + 1, a + 1] = table[f"s_p{a}_{b}"].to_numpy(dtype=float)
    return G


def _check_predictors(sums: GroupSums, names: tuple[str, ...], where: str) -> None:
    """Constant and collinear columns refused from the sums (as ``check_predictors`` on rows)."""
    total, n = sums.total, sums.n_obs
    cols = [
        sums.names.index("1") if name == "Intercept" else sums.names.index(name) for name in names
    ]
    for name, c in zip(names, cols, strict=True):
        if name != "Intercept" and sums.sd(c) <= _RTOL * max(abs(sums.mean(c)), 1.0):
            raise DataError(
                f"{where}: predictor {name!r} is constant ({sums.mean(c):g} in every row), so "
                "its effect cannot be told from the intercept: remove it from the formula"
            )
    for k in range(2, len(cols) + 1):
        S = total[np.ix_(cols[:k], cols[:k])] / n
        d = np.sqrt(np.diag(S))
        eig = np.linalg.eigvalsh(S / np.outer(d, d))
        if eig.min() <= 1e-10 * eig.max():
            raise DataError(
                f"{where}: predictor {names[k - 1]!r} is a linear combination of "
                f"{list(names[: k - 1])} (perfectly collinear): remove one of them"
            )


def _factor(
    f: _FactorLayout,
    columns: tuple[str, ...],
    sums: GroupSums,
    levels: pd.Index,
    fixed: tuple[str, ...],
) -> FactorDesign:
    """A factor's design without rows: its terms, blocks and level-2 map from its groups'
    sums (``sums`` with one row per group of the factor)."""
    J, p, q = len(levels), len(fixed), len(f.varying)
    W, level2 = np.zeros((J, q, p)), np.zeros(p, dtype=bool)
    for c, name in enumerate(fixed):
        if name in f.varying:  # the mean of its own varying coefficient
            W[:, f.varying.index(name), c], level2[c] = 1.0, True
        elif "Intercept" in f.varying:  # a group-level predictor, constant in each group
            a = columns.index(name)
            low, high = sums.minimum[:, a], sums.maximum[:, a]
            scale = max(float(np.max(np.abs(sums.maximum[:, a]))), 1.0)
            if np.all(high - low <= _RTOL * scale):
                W[:, f.varying.index("Intercept"), c], level2[c] = low, True
    return FactorDesign(
        name=f.name,
        codes=np.empty(0, dtype=np.int64),
        levels=levels,
        Z=np.empty((0, q)),
        terms=f.varying,
        blocks=f.blocks,
        W=W,
        owns=level2,
        level2=level2,
        columns=f.columns,
        sizes=sums.n,
    )


def _matrices(formula: Formula, layout: _Layout, head: pd.DataFrame) -> tuple[Any, list]:
    """formulae's matrices of the population-level terms and of each factor's group-level
    terms, evaluated on a few rows: what :func:`hierbayes.analysis.predict.predict`
    re-evaluates on new rows. Their column names must be the layout's (they are, for
    columns taken as they are)."""
    safe = resolve("safe")
    _, names, fixed = evaluate_terms(formula.fixed, head, "population-level terms", safe)
    found, per_factor = [tuple(names)], []
    for f in layout.factors:
        varying, matrices = [], []
        for g in (g for g in formula.groups if g.factor == f.name):
            _, znames, matrix = evaluate_terms(g.expr, head, f"group-level term {g}", safe)
            varying.extend(znames)
            matrices.append(matrix)
        found.append(tuple(varying))
        per_factor.append(tuple(matrices))
    if found != [layout.fixed, *(f.varying for f in layout.factors)]:
        raise SpecError(  # a guard: plain columns keep their names in formulae
            f"the model does not reduce to per-group sums: its terms read as {found}; pass "
            "reduce=False"
        )
    return fixed, per_factor


def _cells(table: pd.DataFrame, layout: _Layout) -> tuple[list[pd.Index], np.ndarray]:
    """Each factor's levels, and each cell's (row of ``table``'s) group of every factor,
    (C, F). One grouping column: its values in sorted order; several (``a:b``): labels
    ``"a1:b1"`` in the order of the sorted columns."""
    keys = table[key_names(len(layout.keys))].set_axis(list(layout.keys), axis=1)
    levels, codes = [], []
    for f in layout.factors:
        labels = group_labels(keys, f.columns)
        c, uniques = pd.factorize(labels, sort=len(f.columns) == 1)
        check_two_levels(f.name, uniques)
        levels.append(pd.Index(uniques, name=f.name))
        codes.append(c.astype(np.int64))
    return levels, np.column_stack(codes)


@dataclass(frozen=True, eq=False)
class GroupTable:
    """Per-group sums already computed (a saved fit's): one row per group, in level order,
    with the columns :func:`_group_table` makes. :func:`reduced_design` takes it as data."""

    table: pd.DataFrame


def _group_table(data: Any, layout: _Layout, what: str) -> pd.DataFrame:
    """The sums of ``data`` (validated), one row per distinct combination of the grouping
    columns, sorted by them."""
    types = schema(data)
    for column in (*layout.keys, *layout.columns):
        if column not in types:
            check_present(pd.DataFrame(columns=column_names(data)), [column])
    for column in layout.columns:
        if not is_number_type(types[column]):
            kind = "response" if column == layout.columns[-1] else "predictor"
            raise DataError(
                f"{kind} column {column!r} has type {types[column]}; the per-group sums "
                "need numbers (cast it in the engine, or pass reduce=False to read the rows "
                "and let the formula treat it as a category)"
            )
    table = _engine_sums(data, layout.keys, layout.columns)
    if table.empty:
        raise DataError(f"data {what} has no rows")
    _refuse_bad(data, table, layout, what)
    table = table.drop(columns=[f"bad{a}" for a in range(len(layout.columns))])
    keys = key_names(len(layout.keys))
    return table.sort_values(keys, kind="stable").reset_index(drop=True)


def reduced_design(
    formula: Formula, data: Any, family: Family, *, what: str = "the data", **options: Any
) -> Design:
    """The design of a Gaussian model as sums computed in the engine: per group with one
    grouping column, else per cell (distinct combination of the grouping columns).

    ``data`` is anything :mod:`hierbayes.spec.sources` reads (a pandas frame too), or a
    :class:`GroupTable` of sums computed before; ``options``
    as for :func:`unreducible`, whose reason is the SpecError when the model does not
    reduce. Groups are in sorted order of their labels (:func:`_cells`). Bad values are
    DataErrors naming the column and rows (positions 0..N-1 in the engine's order), as the
    row path names them.
    """
    layout = _layout(formula, family, options)
    if isinstance(layout, str):
        raise SpecError(f"the model does not reduce to per-group sums: {layout}")
    table = data.table if isinstance(data, GroupTable) else _group_table(data, layout, what)
    levels, cells = _cells(table, layout)
    m = len(layout.columns)
    names = ("1", *layout.columns)
    gram = _gram(table, m)
    if not np.isfinite(gram).all():
        raise DataError(
            f"the columns {list(layout.columns)} hold values too large to compute with (their "
            "products overflow): rescale them, e.g. divide by a power of 10"
        )
    index = {n: (0 if n == "Intercept" else names.index(n)) for n in ("Intercept", *layout.columns)}
    minimum = np.column_stack([table[f"min{a}"].to_numpy(dtype=float) for a in range(m)])
    sums = GroupSums(
        names=names,
        gram=gram,
        minimum=minimum,
        maximum=np.column_stack([table[f"max{a}"].to_numpy(dtype=float) for a in range(m)]),
        x_cols=tuple(index[n] for n in layout.fixed),
        z_cols=tuple(tuple(index[n] for n in f.varying) for f in layout.factors),
        y_col=m,
        table=table,
        cells=cells,
    )
    if len(layout.factors) == 1:  # the groups are the cells: one row of sums per group
        sums = replace(sums.by_factor(0, len(levels[0])), table=table)
    if sums.sd(sums.y_col) == 0:
        raise DataError(
            f"response column {formula.response!r} is constant ({sums.mean(m):g} in every "
            "row): there is nothing to model"
        )
    _check_predictors(sums, layout.fixed, "population-level terms")
    for f in layout.factors:
        _check_predictors(sums, f.varying, f"group-level terms of {f.name!r}")
    if not layout.fixed and not any(f.varying for f in layout.factors):
        raise SpecError(f"formula {formula.text!r} has no terms to estimate")
    p = len(layout.fixed)
    # formulae's matrices, for predictions on new rows: evaluated on one row per cell
    head = pd.DataFrame(dict(zip(layout.columns, minimum.T, strict=True)))
    fixed_matrix, matrices = _matrices(formula, layout, head)
    factors = [
        replace(
            _factor(f, layout.columns, sums.by_factor(i, len(lv)), lv, layout.fixed),
            matrices=matrices[i],
        )
        for i, (f, lv) in enumerate(zip(layout.factors, levels, strict=True))
    ]
    design = Design(
        response=formula.response,
        y=np.empty(0),
        X=np.empty((0, p)),
        fixed_names=layout.fixed,
        se=None,
        factors=tuple(hand_out_level2(factors, list(cells.T))),
        fixed_matrix=fixed_matrix,
        index=pd.RangeIndex(0),
        family=family,
        formula=formula,
        columns=(*layout.columns[:-1], *layout.keys, formula.response),
        sums=sums,
    )
    check_names(
        design.response, design.fixed_names, aux=design.aux, factors=[f.name for f in factors]
    )
    return design
