"""The data sets shipped in ``data/``, loaded as pandas DataFrames.

The files live once, in the repository's ``data/`` folder; a built wheel carries them as
``hierbayes/data`` (see ``pyproject.toml``). :func:`resource_path` finds either.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hierbayes.errors import SpecError, unknown_name

__all__ = ["DATASETS", "load", "resource_path"]

#: Name -> (file, pandas.read_csv keyword arguments).
DATASETS: dict[str, tuple[str, dict]] = {
    "eight_schools": ("eight_schools.csv", {"dtype": {"school": str}}),
    "exam": ("exam.csv", {}),
}


def resource_path(folder: str, name: str = "") -> Path:
    """Path of a shipped resource: ``folder`` is ``"data"`` or ``"models"``.

    Looks inside the installed package first (a wheel), then beside it (a source checkout
    or an editable install).

    Examples
    --------
    >>> resource_path("data", "eight_schools.csv").name
    'eight_schools.csv'
    """
    package = Path(__file__).resolve().parent
    for base in (package / folder, package.parent / folder):
        if base.is_dir():
            return base / name if name else base
    raise FileNotFoundError(f"hierbayes cannot find its {folder!r} folder near {package}")


def load(name: str) -> pd.DataFrame:
    """Load a shipped data set by name (see ``data/README.md`` for provenance).

    Parameters
    ----------
    name : {"eight_schools", "exam"}

    Examples
    --------
    >>> df = load("eight_schools")
    >>> df.columns.tolist(), len(df)
    (['school', 'y', 'sigma'], 8)
    """
    if name not in DATASETS:
        raise SpecError(unknown_name("data set", str(name), sorted(DATASETS)))
    file, kwargs = DATASETS[name]
    return pd.read_csv(resource_path("data", file), **kwargs)
