"""Declarative model specs in TOML: one file per reference analysis (see ``models/``).

::

    [model]
    formula = "y ~ 1 + (1 | school)"
    data = "../data/eight_schools.csv"   # CSV, relative to the spec file
    se = "sigma"                          # optional
    family = "gaussian"                   # optional
    parameterization = "non-centered"     # optional

    [priors]                              # optional; keys as in hb.Model(priors=...)
    Intercept = "normal:0,5"              # or a table: { dist = "normal", mu = 0, sigma = 5 }
    sd = "halfcauchy:5"

    [sampler]                             # optional; arguments of Model.fit
    draws = 2000
    tune = 1000
    chains = 4
    target_accept = 0.95
    random_seed = 1

An unknown table or key is an error, never ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hierbayes.errors import DataError, SpecError, unknown_name
from hierbayes.spec import ModelSpec

__all__ = ["RunSpec", "read_spec", "read_csv"]

_MODEL_KEYS = ("formula", "data", "se", "family", "trials", "parameterization")
_SAMPLER_KEYS = ("draws", "tune", "chains", "cores", "target_accept", "random_seed")
_TABLES = ("model", "priors", "sampler")


@dataclass(frozen=True)
class RunSpec:
    """A model spec with its data file and sampler settings, as read from TOML."""

    name: str
    model: ModelSpec
    data: Path
    sampler: dict[str, Any] = field(default_factory=dict)


def _check_keys(where: str, table: dict, valid: tuple[str, ...]) -> None:
    for key in table:
        if key not in valid:
            raise SpecError(f"{where}: {unknown_name('key', key, valid)}")


def read_spec(path: str | Path) -> RunSpec:
    """Read and check a TOML model spec.

    Examples
    --------
    >>> from hierbayes.datasets import resource_path
    >>> spec = read_spec(resource_path("models", "eight_schools.toml"))
    >>> spec.model.formula, spec.data.name, spec.sampler["draws"]
    ('y ~ 1 + (1 | school)', 'eight_schools.csv', 2000)
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    _check_keys(str(path), raw, _TABLES)
    model = raw.get("model")
    if not isinstance(model, dict) or "formula" not in model or "data" not in model:
        raise SpecError(f"{path}: a [model] table with 'formula' and 'data' is required")
    _check_keys(f"{path} [model]", model, _MODEL_KEYS)
    sampler = raw.get("sampler", {})
    _check_keys(f"{path} [sampler]", sampler, _SAMPLER_KEYS)
    spec = ModelSpec(
        formula=model["formula"],
        se=model.get("se"),
        family=model.get("family", "gaussian"),
        trials=model.get("trials"),
        parameterization=model.get("parameterization", "non-centered"),
        priors=raw.get("priors", {}),
    )
    return RunSpec(
        name=path.stem,
        model=spec,
        data=(path.parent / model["data"]).resolve(),
        sampler=dict(sampler),
    )


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a data file named by a spec; a missing file is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    return pd.read_csv(path)
