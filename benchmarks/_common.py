"""What both workers share: the posterior summary, versions, and the records they write.

Imported by :mod:`worker_hierbayes` (the project's virtualenv) and :mod:`worker_bambi` (the
Bambi virtualenv), so it needs only the standard library, NumPy, pandas and ArviZ.
"""

from __future__ import annotations

import json
import os
import resource
import time
import warnings
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

__all__ = [
    "data_hash",
    "read_data",
    "summarize",
    "versions",
    "mark_fit_done",
    "rusage_mb",
    "write_json",
]


def read_data(path: str | Path, dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read a benchmark CSV (pandas >= 3 parses floats exactly as written)."""
    return pd.read_csv(path, dtype=dtype)


def data_hash(df: pd.DataFrame) -> str:
    """A hash of the rows as read, to check that both tools fitted identical data."""
    return f"{int(pd.util.hash_pandas_object(df, index=False).sum()) % 2**64:016x}"


def _excluded(name: str, exclude: Iterable[str]) -> bool:
    return any(name.startswith(p) or name.endswith(p) for p in exclude)


def summarize(idata: az.InferenceData, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """Min bulk ESS, max R-hat and divergences of a fit, over every posterior variable.

    Variables whose name starts or ends with a string in ``exclude`` are left out of the
    headline ``min_ess_bulk`` / ``max_rhat`` but still summarised in ``per_variable``.
    NaN values (a constant quantity, such as the unit diagonal of a correlation matrix) are
    skipped. Also returns the posterior means of small variables (at most 10 values), to
    check that both tools fit the same model.
    """
    exclude = tuple(exclude)
    posterior = idata.posterior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ess = az.ess(posterior, method="bulk")
        rhat = az.rhat(posterior)
    per_variable: dict[str, dict[str, Any]] = {}
    means: dict[str, Any] = {}
    for name in posterior.data_vars:
        e = np.asarray(ess[name].values, dtype=float).ravel()
        r = np.asarray(rhat[name].values, dtype=float).ravel()
        e, r = e[np.isfinite(e)], r[np.isfinite(r)]
        per_variable[str(name)] = {
            "size": int(np.prod([posterior.sizes[d] for d in posterior[name].dims[2:]])),
            "min_ess_bulk": float(e.min()) if e.size else None,
            "max_rhat": float(r.max()) if r.size else None,
            "counted": not _excluded(str(name), exclude),
        }
        if per_variable[str(name)]["size"] <= 10:
            means[str(name)] = np.round(posterior[name].mean(("chain", "draw")).values, 4).tolist()

    def worst(key: str, pick: Any, counted_only: bool) -> tuple[float | None, str]:
        rows = {
            n: v[key]
            for n, v in per_variable.items()
            if v[key] is not None and (v["counted"] or not counted_only)
        }
        if not rows:
            return None, ""
        name = pick(rows, key=rows.get)
        return rows[name], name

    min_ess, ess_var = worst("min_ess_bulk", min, True)
    max_rhat, rhat_var = worst("max_rhat", max, True)
    min_ess_all, ess_var_all = worst("min_ess_bulk", min, False)
    stats = idata.sample_stats
    diverging = stats["diverging"].values if "diverging" in stats else np.zeros(1, bool)
    return {
        "min_ess_bulk": min_ess,
        "min_ess_var": ess_var,
        "max_rhat": max_rhat,
        "max_rhat_var": rhat_var,
        "min_ess_bulk_all": min_ess_all,
        "min_ess_var_all": ess_var_all,
        "excluded": list(exclude),
        "divergences": int(np.sum(diverging)),
        "chains": int(posterior.sizes["chain"]),
        "draws": int(posterior.sizes["draw"]),
        "sampling_time": posterior.attrs.get("sampling_time"),
        "per_variable": per_variable,
        "means": means,
    }


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``packages`` (``"-"`` for one that is not installed)."""
    out = {}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "-"
    return out


def rusage_mb() -> dict[str, float]:
    """Peak RSS of this process and of its largest waited-for child (Linux: KiB -> MB)."""
    scale = 1 if os.uname().sysname == "Darwin" else 1024
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6,
        "largest_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 1e6,
    }


def mark_fit_done(path: str | Path) -> float:
    """Tell the parent that the fit has returned (its clock stops here); return the time."""
    now = time.time()
    Path(path).write_text(json.dumps({"fit_done": now, "rusage_mb": rusage_mb()}))
    return now


def write_json(path: str | Path, record: dict[str, Any]) -> None:
    """Write a record atomically (the parent never reads half a file)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(path)
