"""Load a saved fit: its posterior, and its model rebuilt from the stored spec and data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hierbayes.api.fit import Fit
from hierbayes.api.model import Model
from hierbayes.posterior.storage import read_fit

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
        that is damaged, foreign, or altered since it was written.

    Examples
    --------
    >>> fit = hb.load("eight_schools.nc")  # doctest: +SKIP
    >>> fit.pooling().table  # doctest: +SKIP
    """
    stored = read_fit(path)
    model = Model.from_spec(stored.spec, stored.data, namespace=namespace)
    return Fit(model, stored.idata, target_accept=stored.target_accept, warn=False)
