"""Load a saved fit: its posterior, and its model rebuilt from the stored spec and data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hierbayes.api.fit import Fit
from hierbayes.api.model import Model
from hierbayes.errors import FileFormatError
from hierbayes.posterior.storage import read_fit
from hierbayes.spec.distinct import DistinctRows
from hierbayes.spec.reduce import GroupTable
from hierbayes.spec.summed import SummedCells

__all__ = ["load"]


def load(path: str | Path, *, namespace: Mapping[str, Any] | str = "safe") -> Fit:
    """Read a fit written by :meth:`hierbayes.Fit.save`, with its model, without refitting.

    A file is not the caller's code: its formula may use only data columns, NumPy's
    elementwise functions and formulae's transforms (:mod:`hierbayes.spec.namespace`). A
    formula that calls a function of your own loads with ``namespace={"myfun": myfun}``.
    Stateful transforms (``scale``, ``bs``...) are refitted to the stored data, so they keep
    the state they had when the model was fitted.

    Raises
    ------
    FileNotFoundError, FileFormatError
        As :func:`~hierbayes.posterior.storage.read_fit` raises them: no such file, or one
        that is damaged, foreign, or altered since it was written; also when the groups
        rebuilt from the stored data are not those of the posterior, in its order (a file
        written before categorical columns kept their categories' order).

    Examples
    --------
    >>> fit = hb.load("eight_schools.nc")  # doctest: +SKIP
    >>> fit.pooling().table  # doctest: +SKIP
    """
    stored = read_fit(path)
    data = stored.data
    if stored.kind == "group sums":
        data = GroupTable(data)
    elif stored.kind == "distinct rows":
        data = DistinctRows(data, str(data.columns[-1]))
    elif stored.kind == "cells":
        data = SummedCells(data, str(data.columns[-2]), str(data.columns[-1]))
    model = Model.from_spec(stored.spec, data, namespace=namespace)
    post = stored.idata.posterior
    for f in model.design.factors:  # the posterior's group effects are stored by position
        labels = [str(v) for v in post[f.name].values] if f.name in post.coords else None
        if labels is not None and labels != [str(v) for v in f.levels]:
            raise FileFormatError(
                f"{str(path)!r}: the groups of {f.name!r} rebuilt from the stored data "
                f"({[str(v) for v in f.levels[:5]]} ...) are not the posterior's, in its order "
                f"({labels[:5]} ...): the effects would be labelled with the wrong groups. "
                "Refit the model and save it again"
            )
    return Fit(model, stored.idata, target_accept=stored.target_accept, warn=False)
