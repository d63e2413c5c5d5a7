"""Save a fit to netCDF and load it back, with its model, without refitting.

The file is the fit's InferenceData (``arviz.to_netcdf``) plus, in the standard
``constant_data`` group, the data columns the model uses (one row per observation, or for a
model of per-group sums, those sums, one row per group; a
categorical column as text, with its categories and their order in the column's attributes,
so that group levels and ordinal levels come back in their order), and in the file's
attributes the model spec as JSON, a SHA-256 hash of those data, the sampler
settings and the package versions. :func:`read_fit` reads it back and checks the hash;
:func:`hierbayes.load` rebuilds the model from the spec and data. No pickle is involved
anywhere.

Writes are atomic (a temporary file in the same folder, then a rename), also when interrupted
with Ctrl-C, and never replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.core.interrupts import Interrupts
from hierbayes.errors import FileFormatError, SpecError
from hierbayes.spec.modelspec import ModelSpec

__all__ = ["StoredFit", "read_fit", "write_fit", "data_hash", "atomic_write", "atomic_write_all"]

FORMAT = "hierbayes-fit/1"
#: what ``constant_data`` holds: the model's columns, or its per-group sums
DATA_KINDS = ("rows", "group sums", "distinct rows", "cells")


def data_hash(data: pd.DataFrame) -> str:
    """SHA-256 of a DataFrame's values, column names and index (order-sensitive).

    Examples
    --------
    >>> import pandas as pd
    >>> a = data_hash(pd.DataFrame({"y": [1.0, 2.0]}))
    >>> a == data_hash(pd.DataFrame({"y": [1.0, 2.0]}))
    True
    >>> a == data_hash(pd.DataFrame({"y": [2.0, 1.0]}))
    False
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in data.columns]).encode())
    digest.update(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def _stored_columns(data: pd.DataFrame) -> pd.DataFrame:
    frame = data.copy()
    for column in frame.columns:  # netCDF keeps numbers and text; categories become text
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype(str).astype(object)
    return frame if frame.index.is_unique else frame.reset_index(drop=True)


def _category_attrs(values: pd.Series) -> dict[str, str | int]:
    """A categorical column's categories (JSON, in order) and whether they are ordered.

    A categorical's category order is the order of a grouping factor's levels and of an
    ordinal response's levels, which the text stored in the file does not keep.
    """
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return {}
    categories = [c.item() if isinstance(c, np.generic) else c for c in values.cat.categories]
    return {
        "hierbayes_categories": json.dumps(categories, default=str),
        "hierbayes_ordered": int(values.cat.ordered),
    }


def _restore_categories(data: pd.DataFrame, constant: xr.Dataset) -> pd.DataFrame:
    """The categorical columns of the stored data back as categoricals, in category order."""
    for name in constant.data_vars:
        attrs = constant[name].attrs
        if "hierbayes_categories" in attrs:
            column = attrs.get("hierbayes_column", name)
            categories = json.loads(attrs["hierbayes_categories"])
            by_text = {str(c): c for c in categories}
            data[column] = pd.Categorical(
                data[column].map(by_text),
                categories=categories,
                ordered=bool(attrs["hierbayes_ordered"]),
            )
    return data


def _spec_json(spec: ModelSpec) -> str:
    priors = {
        key: {"dist": type(prior).__name__.lower(), **asdict(prior)}
        for key, prior in spec.priors.items()
    }
    return json.dumps({**{f.name: getattr(spec, f.name) for f in fields(spec)}, "priors": priors})


def _new_temporary(path: Path, temporaries: list[Path]) -> None:
    """Create an empty, unused temporary file beside ``path`` and record it.

    The file is created with mode 0o666 less the umask, as ``open`` would create ``path``.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")
        with Interrupts(hold=True):  # no interrupt between creating and recording it
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            temporaries.append(tmp)
        return
    raise FileExistsError(f"no free temporary name beside {str(path)!r}")


def atomic_write_all(
    writes: Sequence[tuple[Path, Callable[[Path], object]]],
    *,
    done: list[Path] | None = None,
) -> list[Path]:
    """Write several files so that they appear together or not at all.

    Each ``write(tmp)`` writes a temporary file in its target's folder. Only when all have
    succeeded are the temporary files renamed over their targets, in order; each rename is
    atomic, and an interrupt (Ctrl-C) waits until a rename is recorded. A failure or an
    interrupt while writing leaves every target as it was and no temporary file behind; an
    interrupt during the renames leaves the targets renamed so far, complete, listed in
    ``done``.

    Parameters
    ----------
    writes : sequence of (path, write)
        Targets and the functions that write them, each given the temporary path.
    done : list, optional
        Receives each target as its rename lands, also when an exception ends the call.

    Returns
    -------
    list of Path
        The targets, all written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> written = atomic_write_all([(folder / "a.txt", lambda tmp: tmp.write_text("a")),
    ...                             (folder / "b.txt", lambda tmp: tmp.write_text("b"))])
    >>> [p.name for p in written]
    ['a.txt', 'b.txt']
    >>> def broken(tmp):
    ...     raise OSError("disk full")
    >>> atomic_write_all([(folder / "a.txt", lambda tmp: tmp.write_text("new")),
    ...                   (folder / "b.txt", broken)])
    Traceback (most recent call last):
    OSError: disk full
    >>> sorted(p.name for p in folder.iterdir()), (folder / "a.txt").read_text()
    (['a.txt', 'b.txt'], 'a')
    """
    done = [] if done is None else done
    temporaries: list[Path] = []
    try:
        for path, write in writes:
            _new_temporary(Path(path), temporaries)
            write(temporaries[-1])
        for (path, _), tmp in zip(writes, temporaries, strict=True):
            with Interrupts(hold=True):  # the rename and its record go together
                os.replace(tmp, path)
                done.append(Path(path))
    finally:
        with Interrupts(hold=True):
            for tmp in temporaries:
                with contextlib.suppress(FileNotFoundError):  # renamed already
                    os.unlink(tmp)
    return [Path(path) for path, _ in writes]


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a temporary file in ``path``'s folder, then rename it over ``path``.

    A failure or an interrupt (KeyboardInterrupt) leaves ``path`` as it was and no temporary
    file behind. See :func:`atomic_write_all` for several files that belong together.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "note.txt"
    >>> atomic_write(target, lambda tmp: tmp.write_text("done"))
    >>> target.read_text()
    'done'
    """
    atomic_write_all([(Path(path), write)])


def write_fit(
    path: Path,
    idata: az.InferenceData,
    spec: ModelSpec,
    data: pd.DataFrame,
    target_accept: float,
    kind: str = "rows",
) -> None:
    """Write a fit to ``path`` as it stands: the one writer of fit files.

    ``data`` holds the columns the model uses, one row per observation (``kind="rows"``), or
    a model's per-group sums, one row per group (``kind="group sums"``,
    :mod:`hierbayes.spec.reduce`), or its distinct rows with their count last
    (``kind="distinct rows"``, :mod:`hierbayes.spec.distinct`), or its cells of summed rows
    with their count and summed offsets last (``kind="cells"``, :mod:`hierbayes.spec.summed`).
    :meth:`hierbayes.Fit.save`
    calls it on a temporary file (:func:`atomic_write`), and the CLI on its ``posterior.nc``
    among the files it writes together (:func:`atomic_write_all`); :func:`read_fit` reads
    either.
    """
    categories = {c: _category_attrs(data[c]) for c in data.columns}
    data = _stored_columns(data)
    idata = idata.copy()
    constant = xr.Dataset(  # columns by position: any column name, "obs" or "a/b" included
        {
            f"column_{k}": (
                "obs",
                data[c].to_numpy(),
                {"hierbayes_column": str(c), **categories[c]},
            )
            for k, c in enumerate(data.columns)
        },
        coords={"obs": np.asarray(data.index)},
    )
    if "constant_data" in idata.groups():
        del idata.constant_data
    idata.add_groups(constant_data=constant)
    idata.attrs.update(
        {
            "hierbayes_format": FORMAT,
            "hierbayes_spec": _spec_json(spec),
            "hierbayes_data_sha256": data_hash(data),
            "hierbayes_data": kind,
            "hierbayes_target_accept": float(target_accept),
            "versions": json.dumps({p: version(p) for p in ("hierbayes", "pymc", "arviz")}),
        }
    )
    idata.to_netcdf(str(path), engine="h5netcdf")


class StoredFit(NamedTuple):
    """What a fit file holds: the posterior, the model spec, the model's data columns."""

    idata: az.InferenceData
    spec: ModelSpec
    data: pd.DataFrame
    target_accept: float
    kind: str = "rows"


def read_fit(path: str | Path) -> StoredFit:
    """Read a file written by :func:`write_fit`, checking its format and its data's hash.

    Raises
    ------
    FileNotFoundError
        No such file.
    FileFormatError
        A truncated or damaged file, a netCDF file that is not a hierbayes fit, or stored
        data that no longer match their hash.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {str(path)!r}")
    try:
        idata = az.from_netcdf(path, engine="h5netcdf")
        idata.load()  # read everything now, so a truncated file fails here
    except Exception as exc:  # h5py/netCDF raise many types for damaged or foreign files
        raise FileFormatError(
            f"{str(path)!r} is not a readable netCDF file ({type(exc).__name__}: {exc}); "
            "was it written by Fit.save and copied completely?"
        ) from None
    attrs = idata.attrs
    if attrs.get("hierbayes_format") != FORMAT or "constant_data" not in idata.groups():
        raise FileFormatError(
            f"{str(path)!r} is a netCDF file but not a hierbayes fit (format "
            f"{attrs.get('hierbayes_format')!r}, expected {FORMAT!r})"
        )
    constant = idata.constant_data
    data = pd.DataFrame(
        {
            constant[name].attrs.get("hierbayes_column", name): constant[name].values
            for name in constant.data_vars
        },
        index=pd.Index(constant["obs"].values),
    )
    if data_hash(data) != attrs["hierbayes_data_sha256"]:
        raise FileFormatError(
            f"{str(path)!r}: the stored data do not match their hash: the file was altered"
        )
    data = _restore_categories(data, constant)
    raw = json.loads(attrs["hierbayes_spec"])
    try:
        spec = ModelSpec(**raw)
    except (TypeError, SpecError) as exc:
        raise FileFormatError(
            f"{str(path)!r}: the stored model spec is unreadable: {exc}"
        ) from None
    del idata.constant_data
    kind = str(attrs.get("hierbayes_data", "rows"))
    if kind not in DATA_KINDS:
        raise FileFormatError(f"{str(path)!r}: unknown stored data {kind!r} (not {DATA_KINDS})")
    return StoredFit(idata, spec, data, float(attrs["hierbayes_target_accept"]), kind)
