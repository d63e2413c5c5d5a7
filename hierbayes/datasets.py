"""The data sets shipped in ``data/``, loaded as pandas DataFrames.

The files live once, in the repository's ``data/`` folder; a built wheel carries them as
``hierbayes/data`` (see ``pyproject.toml``). :func:`resource_path` finds either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hierbayes.errors import SpecError, unknown_name

__all__ = ["DATASETS", "load", "resource_path", "simulate_noise_groups"]

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


def simulate_noise_groups(
    n_groups: int = 500, n_per_group: int | Sequence[int] = 10, *, seed: int
) -> pd.DataFrame:
    """A categorical predictor with no relation to the response: pure noise.

    ``y ~ Normal(0, 1)`` independently of ``group`` (``n_groups`` levels): the true group
    effects are all 0, the true group SD is 0 and the residual SD is 1. With
    ``n_per_group`` a sequence, group k gets ``n_per_group[k]`` rows (unbalanced groups).

    Parameters
    ----------
    n_groups : int
        Number of groups (at least 2).
    n_per_group : int or sequence of int
        Rows per group (each at least 1).
    seed : int
        Seed of the NumPy generator; the same seed gives the same data.

    Examples
    --------
    >>> df = simulate_noise_groups(n_groups=3, n_per_group=2, seed=1)
    >>> df.shape, df["group"].nunique()
    ((6, 2), 3)
    """
    sizes = np.broadcast_to(np.asarray(n_per_group, dtype=int), (n_groups,))
    if n_groups < 2 or np.any(sizes < 1):
        raise SpecError("simulate_noise_groups needs n_groups >= 2 and n_per_group >= 1")
    rng = np.random.default_rng(seed)
    group = np.repeat([f"g{k:04d}" for k in range(n_groups)], sizes)
    return pd.DataFrame({"group": group, "y": rng.normal(0.0, 1.0, size=group.size)})
