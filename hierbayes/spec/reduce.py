"""A Gaussian model's per-group sums computed where its rows live, and the design they make.

A one-factor Gaussian model ``y ~ x + (x | g)`` needs of its data only each group's
cross-products ``A_j'A_j`` of ``A = [1, x, ..., y]`` (:mod:`hierbayes.spec.grouped`). So
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
identity link; one grouping column; population and group-level terms that are an intercept
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
from hierbayes.spec.sources import bad_flag, bad_rows, column_names, is_dask, open_frame, schema
from hierbayes.spec.terms import evaluate_terms

__all__ = ["GroupTable", "check_reducible", "reduced_design", "unreducible"]

#: relative size below which a column's spread within a group counts as none
_RTOL = 1e-9


@dataclass(frozen=True)
class _Layout:
    """Which data columns a reducible model reads, and how its terms map onto them."""

    group: str
    columns: tuple[str, ...]  # data columns of A after "1", the response last
    fixed: tuple[str, ...]  # population-level term names ("Intercept" or a column)
    varying: tuple[str, ...]  # group-level term names
    blocks: tuple[tuple[int, ...], ...]


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
    factors = {g.factor for g in formula.groups}
    if len(factors) != 1:
        return f"the sums serve one grouping factor, and the model has {len(factors)}"
    (group,) = factors
    if ":" in group:
        return f"the grouping factor {group!r} combines columns"
    fixed = _plain_terms(formula.fixed, "population-level")
    if isinstance(fixed, str):
        return fixed
    varying: list[str] = []
    blocks: list[tuple[int, ...]] = []
    for g in formula.groups:
        names = _plain_terms(g.expr, "group-level")
        if isinstance(names, str):
            return names
        idx = tuple(range(len(varying), len(varying) + len(names)))
        blocks.extend([idx] if g.correlated else [(i,) for i in idx])
        varying.extend(names)
    if len(set(varying)) < len(varying) or (len(blocks) > 1 and any(len(b) > 1 for b in blocks)):
        return "its group-level terms repeat a coefficient or mix correlated blocks"
    data_columns = [n for n in dict.fromkeys([*fixed, *varying]) if n != "Intercept"]
    return _Layout(
        group=group,
        columns=(*data_columns, formula.response),
        fixed=fixed,
        varying=tuple(varying),
        blocks=tuple(blocks),
    )


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
    for column in [layout.group, *layout.columns] if schema is not None else []:
        if column not in schema:
            return f"column {column!r} is not in the data"
        if column != layout.group and not is_number_type(schema[column]):
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


def _sums_narwhals(frame: Any, group: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """One grouped aggregation of ``frame`` (narwhals, eager or lazy): per group the count,
    the sums of the columns and of their pairwise products, minima, maxima, bad values."""
    import narwhals.stable.v2 as nw

    m = len(columns)
    values = [nw.col(c).cast(nw.Float64).alias(f"v{i}") for i, c in enumerate(columns)]
    frame = frame.select(nw.col(group).alias("key"), *values)
    pairs = [(a, b) for a in range(m) for b in range(a, m)]
    products = [(nw.col(f"v{a}") * nw.col(f"v{b}")).alias(f"p{a}_{b}") for a, b in pairs]
    bad = [bad_flag(f"v{a}", numeric=True).cast(nw.Int64).alias(f"bad{a}") for a in range(m)]
    frame = frame.with_columns(*products, *bad)
    sums = [f"v{a}" for a in range(m)] + [f"p{a}_{b}" for a, b in pairs]
    out = frame.group_by("key").agg(
        nw.len().alias("n"),
        *(nw.col(s).sum().alias(f"s_{s}") for s in sums),
        *(nw.col(f"v{a}").min().alias(f"min{a}") for a in range(m)),
        *(nw.col(f"v{a}").max().alias(f"max{a}") for a in range(m)),
        *(nw.col(f"bad{a}").sum() for a in range(m)),
    )
    if hasattr(out, "collect"):
        out = out.collect()
    return out.to_pandas()


def _partition_sums(part: pd.DataFrame, group: str, columns: tuple[str, ...]) -> pd.DataFrame:
    return _sums_narwhals(open_frame(part), group, columns)


def _engine_sums(data: Any, group: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Per-group sums of ``data``'s columns, computed by its engine; one row per group."""
    if not is_dask(data):
        return _sums_narwhals(open_frame(data), group, columns)
    import dask

    parts = [dask.delayed(_partition_sums)(p, group, columns) for p in data.to_delayed()]
    partial = pd.concat(dask.compute(*parts), ignore_index=True)
    how = {
        c: "min" if c.startswith("min") else "max" if c.startswith("max") else "sum"
        for c in partial.columns
        if c != "key"
    }
    return partial.groupby("key", dropna=False, sort=False).agg(how).reset_index()


def _refuse_bad(data: Any, table: pd.DataFrame, layout: _Layout, what: str) -> None:
    """A DataError naming the first column with missing or non-finite values and its rows."""
    if table["key"].isna().any():
        rows = bad_rows(data, layout.group, numeric=False)
        raise DataError(
            f"grouping column {layout.group!r} has missing values in "
            f"{describe_rows(pd.Index(rows))} of {what}. hierbayes never drops rows silently: "
            "filter them out in the engine (e.g. SQL WHERE ... IS NOT NULL) or give them a group"
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


def _factor(layout: _Layout, sums: GroupSums, levels: pd.Index, fixed: tuple[str, ...]):
    """The factor's design without rows: its terms, blocks and level-2 map from the sums."""
    J, p, q = len(levels), len(fixed), len(layout.varying)
    W, level2 = np.zeros((J, q, p)), np.zeros(p, dtype=bool)
    for c, name in enumerate(fixed):
        if name in layout.varying:  # the mean of its own varying coefficient
            W[:, layout.varying.index(name), c], level2[c] = 1.0, True
        elif "Intercept" in layout.varying:  # a group-level predictor, constant in each group
            a = layout.columns.index(name)
            low, high = sums.minimum[:, a], sums.maximum[:, a]
            scale = max(float(np.max(np.abs(sums.maximum[:, a]))), 1.0)
            if np.all(high - low <= _RTOL * scale):
                W[:, layout.varying.index("Intercept"), c], level2[c] = low, True
    return FactorDesign(
        name=layout.group,
        codes=np.empty(0, dtype=np.int64),
        levels=levels,
        Z=np.empty((0, q)),
        terms=layout.varying,
        blocks=layout.blocks,
        W=W,
        owns=level2,
        level2=level2,
        columns=(layout.group,),
        sizes=sums.n,
    )


def _matrices(formula: Formula, layout: _Layout, head: pd.DataFrame) -> tuple[Any, tuple]:
    """formulae's matrices of the population and group-level terms, evaluated on a few rows:
    what :func:`hierbayes.analysis.predict.predict` re-evaluates on new rows. Their column
    names must be the layout's (they are, for columns taken as they are)."""
    safe = resolve("safe")
    _, names, fixed = evaluate_terms(formula.fixed, head, "population-level terms", safe)
    varying, matrices = [], []
    for g in formula.groups:
        _, znames, matrix = evaluate_terms(g.expr, head, f"group-level term {g}", safe)
        varying.extend(znames)
        matrices.append(matrix)
    if tuple(names) != layout.fixed or tuple(varying) != layout.varying:
        raise SpecError(  # a guard: plain columns keep their names in formulae
            f"the model does not reduce to per-group sums: its terms read as {list(names)} "
            f"and {varying}; pass reduce=False"
        )
    return fixed, tuple(matrices)


@dataclass(frozen=True, eq=False)
class GroupTable:
    """Per-group sums already computed (a saved fit's): one row per group, in level order,
    with the columns :func:`_group_table` makes. :func:`reduced_design` takes it as data."""

    table: pd.DataFrame


def _group_table(data: Any, layout: _Layout, what: str) -> pd.DataFrame:
    """The per-group sums of ``data`` (validated), one row per group in sorted label order."""
    types = schema(data)
    for column in (layout.group, *layout.columns):
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
    table = _engine_sums(data, layout.group, layout.columns)
    if table.empty:
        raise DataError(f"data {what} has no rows")
    _refuse_bad(data, table, layout, what)
    table = table.drop(columns=[f"bad{a}" for a in range(len(layout.columns))])
    return table.sort_values("key", kind="stable").reset_index(drop=True)


def reduced_design(
    formula: Formula, data: Any, family: Family, *, what: str = "the data", **options: Any
) -> Design:
    """The design of a one-factor Gaussian model as per-group sums computed in the engine.

    ``data`` is anything :mod:`hierbayes.spec.sources` reads (a pandas frame too), or a
    :class:`GroupTable` of sums computed before; ``options``
    as for :func:`unreducible`, whose reason is the SpecError when the model does not
    reduce. Groups are in sorted order of their labels. Bad values are DataErrors naming the
    column and rows (positions 0..N-1 in the engine's order), as the row path names them.
    """
    layout = _layout(formula, family, options)
    if isinstance(layout, str):
        raise SpecError(f"the model does not reduce to per-group sums: {layout}")
    table = data.table if isinstance(data, GroupTable) else _group_table(data, layout, what)
    levels = pd.Index(table["key"].to_numpy(), name=layout.group)
    if len(levels) < 2:
        raise DataError(
            f"grouping column {layout.group!r} has {len(levels)} level(s) ({list(levels)}): a "
            "varying effect needs at least 2 groups; drop the term or group by another column"
        )
    m = len(layout.columns)
    names = ("1", *layout.columns)
    gram = _gram(table, m)
    if not np.isfinite(gram).all():
        raise DataError(
            f"the columns {list(layout.columns)} hold values too large to compute with (their "
            "products overflow): rescale them, e.g. divide by a power of 10"
        )
    index = {
        n: (0 if n == "Intercept" else names.index(n)) for n in {*layout.fixed, *layout.varying}
    }
    minimum = np.column_stack([table[f"min{a}"].to_numpy(dtype=float) for a in range(m)])
    sums = GroupSums(
        names=names,
        gram=gram,
        minimum=minimum,
        maximum=np.column_stack([table[f"max{a}"].to_numpy(dtype=float) for a in range(m)]),
        x_cols=tuple(index[n] for n in layout.fixed),
        z_cols=(tuple(index[n] for n in layout.varying),),
        y_col=m,
        table=table,
    )
    if sums.sd(sums.y_col) == 0:
        raise DataError(
            f"response column {formula.response!r} is constant ({sums.mean(m):g} in every "
            "row): there is nothing to model"
        )
    _check_predictors(sums, layout.fixed, "population-level terms")
    _check_predictors(sums, layout.varying, f"group-level terms of {layout.group!r}")
    if not layout.fixed and not layout.varying:
        raise SpecError(f"formula {formula.text!r} has no terms to estimate")
    p = len(layout.fixed)
    # formulae's matrices, for predictions on new rows: evaluated on one row per group
    head = pd.DataFrame(dict(zip(layout.columns, minimum.T, strict=True)))
    fixed_matrix, matrices = _matrices(formula, layout, head)
    factor = replace(_factor(layout, sums, levels, layout.fixed), matrices=matrices)
    design = Design(
        response=formula.response,
        y=np.empty(0),
        X=np.empty((0, p)),
        fixed_names=layout.fixed,
        se=None,
        factors=(factor,),
        fixed_matrix=fixed_matrix,
        index=pd.RangeIndex(0),
        family=family,
        formula=formula,
        columns=(*layout.columns[:-1], layout.group, formula.response),
        sums=sums,
    )
    check_names(design.response, design.fixed_names, aux=design.aux, factors=[layout.group])
    return design
