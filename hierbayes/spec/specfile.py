"""Declarative model specs in TOML: one file per reference analysis (see ``models/``).

::

    [model]
    formula = "y ~ 1 + (1 | school)"
    data = "../data/eight_schools.csv"   # CSV, relative to the spec file
    se = "sigma"                          # optional
    family = "gaussian"                   # optional; see hierbayes.spec.families
    link = "identity"                     # optional; by default the family's canonical link
    offset = "log_exposure"               # optional; a column added to the linear predictor
    weights = "w"                         # optional; a column multiplying each row's log-lik
    sigma = "~ x + (1 | school)"          # optional; sigma's own formula (also phi, alpha)
    parameterization = "non-centered"     # optional; by default the model's ("auto")

    [priors]                              # optional; keys as in hb.Model(priors=...)
    Intercept = "normal:0,5"              # or a table: { dist = "normal", mu = 0, sigma = 5 }
    sd = "halfcauchy:5"

    [sampler]                             # optional; arguments of Model.fit
    draws = 2000
    tune = 1000
    chains = 4
    target_accept = 0.95
    random_seed = 1

An unknown table or key is an error, never ignored. Every value is checked when the file is
read, and an error names the file, the table and the key: ``m.toml [sampler] draws: ...``.
Prior keys depend on the data (a coefficient's key is its column name), so they are checked
when the model is built, with the closest valid key suggested.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import pandas as pd

from hierbayes.errors import DataError, SpecError, unknown_name
from hierbayes.spec import families
from hierbayes.spec.dpars import MODELLED, parse_dpar
from hierbayes.spec.formula import parse
from hierbayes.spec.modelspec import PARAMETERIZATIONS, ModelSpec
from hierbayes.spec.priors import REGISTRY, Prior, from_value

__all__ = [
    "RunSpec",
    "read_spec",
    "spec_from_tables",
    "spec_text",
    "read_csv",
    "model_data",
    "sampler_problem",
    "SAMPLER_KEYS",
    "MAX_ITERATIONS",
    "MAX_CHAINS",
]

_MODEL_KEYS = (
    "formula",
    "data",
    "se",
    "family",
    "link",
    "trials",
    "offset",
    "weights",
    "parameterization",
    *MODELLED,
)
_REQUIRED = ("formula", "data")
#: The keys of a spec's [sampler] table: arguments of Model.fit.
SAMPLER_KEYS = ("draws", "tune", "chains", "cores", "target_accept", "random_seed")
_TABLES = ("model", "priors", "sampler")

#: Most draws, or tuning steps, per chain a spec or the command line may ask for.
MAX_ITERATIONS = 1_000_000
#: Most chains, or cores, a spec or the command line may ask for.
MAX_CHAINS = 64
#: Largest random seed (NumPy's SeedSequence takes any, PyMC's samplers 32 bits).
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class RunSpec:
    """A model spec with its data file and sampler settings, as read from TOML."""

    name: str
    model: ModelSpec
    data: Path
    sampler: dict[str, Any] = field(default_factory=dict)


def _brief(value: Any) -> str:
    """``repr(value)``, cut to 60 characters for a message."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _show(value: Any) -> str:
    return f"{type(value).__name__} {_brief(value)}"


def _whole(value: Any, low: int, high: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"must be a whole number from {low:,} to {high:,}, got {_brief(value)}"
    return None


def sampler_problem(key: str, value: Any) -> str | None:
    """What is wrong with one sampler setting (a ``[sampler]`` key), or None if nothing is.

    Counts are whole numbers (``draws`` and ``tune`` at most :data:`MAX_ITERATIONS`,
    ``chains`` and ``cores`` at most :data:`MAX_CHAINS`), ``target_accept`` lies in
    [0.5, 1) and ``random_seed`` in 0 .. 2**32 - 1.

    Examples
    --------
    >>> sampler_problem("draws", 2000) is None
    True
    >>> sampler_problem("draws", -5)
    'must be a whole number from 1 to 1,000,000, got -5'
    >>> sampler_problem("target_accept", 1.5)
    'must be a number in [0.5, 1), got 1.5'
    """
    if key in ("draws", "tune"):
        return _whole(value, 1, MAX_ITERATIONS)
    if key in ("chains", "cores"):
        return _whole(value, 1, MAX_CHAINS)
    if key == "random_seed":
        return _whole(value, 0, MAX_SEED)
    if key == "target_accept":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not 0.5 <= value < 1:
            return f"must be a number in [0.5, 1), got {_brief(value)}"
        return None
    return unknown_name("key", key, SAMPLER_KEYS)


def _key(name: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


class _Reader:
    """Reads one spec file; every error names the file, the table and the key."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        self.path = path  # data files resolve against its folder
        self.label = label or str(path)

    def error(self, where: str, problem: str, kind: type[ValueError] = SpecError) -> ValueError:
        return kind(f"{self.label} {where}: {problem}" if where else f"{self.label}: {problem}")

    def table(self, raw: Mapping[str, Any], name: str, valid: tuple[str, ...] | None) -> dict:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise self.error(f"[{name}]", f"must be a table of keys, got {_show(value)}")
        for key in value if valid is not None else ():
            if key not in valid:
                raise self.error(f"[{name}]", unknown_name("key", key, valid))
        return value

    def text(self, model: Mapping[str, Any], key: str) -> str | None:
        value = model.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(
                f"[model] {key}",
                f"must be a non-empty string, got {_show(value)}",
            )
        return value

    def choice(self, model: Mapping[str, Any], key: str, valid: tuple[str, ...]) -> str | None:
        value = self.text(model, key)
        if value is not None and value not in valid:
            raise self.error(f"[model] {key}", unknown_name(key, value, valid))
        return value

    def data(self, model: Mapping[str, Any]) -> Path:
        name = self.text(model, "data") or ""  # present: it is required
        if "\x00" in name:
            raise self.error("[model] data", f"{name!r} holds a NUL character")
        path = (self.path.parent / name).resolve()
        if path.is_file():
            return path
        hint = ""
        if path.parent.is_dir():
            files = sorted(p.name for p in path.parent.iterdir() if p.is_file())
            close = get_close_matches(path.name, files, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        raise self.error(
            "[model] data",
            f"data file {name!r} does not exist (looked for {str(path)!r}, relative to "
            f"{'the spec file' if self.label == str(self.path) else 'the current folder'}){hint}",
            DataError,
        )

    def prior(self, key: str, value: Any) -> Prior:
        where = f"[priors] {_key(key)}"
        if isinstance(value, dict):
            if "dist" not in value:
                raise self.error(
                    where,
                    "a prior table needs 'dist', as in { dist = \"normal\", mu = 0, sigma = 5 }",
                )
            for arg, number in value.items():
                if isinstance(number, int) and not isinstance(number, bool):
                    try:
                        float(number)
                    except OverflowError:
                        raise self.error(f"{where}.{arg}", "the number is too large") from None
        elif not isinstance(value, str):
            raise self.error(
                where,
                f"a prior is a string such as 'halfcauchy:5' or a table such as "
                f'{{ dist = "halfcauchy", beta = 5 }}, got {_show(value)}',
            )
        try:
            return from_value(value)
        except SpecError as exc:
            raise self.error(where, str(exc)) from None

    def sampler(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        for key, value in settings.items():
            problem = sampler_problem(key, value)
            if problem is not None:
                raise self.error(f"[sampler] {key}", problem)
        return dict(settings)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise SpecError(f"spec file {str(path)!r} is a folder, not a TOML file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec file {str(path)!r} is not UTF-8 text: byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}"
        ) from None
    except OSError as exc:
        raise SpecError(f"spec file {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise SpecError(f"{path}: not valid TOML: {str(exc)[:200]}") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def read_spec(path: str | Path) -> RunSpec:
    """Read and check a TOML model spec.

    Raises
    ------
    SpecError
        The file is missing, not UTF-8 or not TOML; an unknown table or key; a missing
        ``formula`` or ``data``; a value of the wrong type or out of range (the message
        names the table and key); a formula with a syntax error; a prior that cannot be read.
    DataError
        The data file named by ``data`` does not exist.

    Examples
    --------
    >>> from hierbayes.api.datasets import resource_path
    >>> spec = read_spec(resource_path("models", "eight_schools.toml"))
    >>> spec.model.formula, spec.data.name, spec.sampler["draws"]
    ('y ~ 1 + (1 | school)', 'eight_schools.csv', 2000)
    """
    path = Path(path)
    return spec_from_tables(_load_toml(path), path)


def spec_from_tables(
    raw: Mapping[str, Any], path: Path, label: str | None = None, name: str | None = None
) -> RunSpec:
    """A :class:`RunSpec` from the tables of a spec (as :func:`read_spec` reads them), checked
    the same way. A relative ``data`` resolves against ``path``'s folder; errors name
    ``label`` (by default ``path``); the spec's name is ``name`` (by default ``path``'s stem).

    Examples
    --------
    >>> from pathlib import Path
    >>> from hierbayes.api.datasets import resource_path
    >>> data = resource_path("data", "eight_schools.csv")
    >>> raw = {"model": {"formula": "y ~ 1 + (1 | school)", "data": str(data), "se": "sigma"}}
    >>> spec_from_tables(raw, Path("command line"), name="eight").model.se
    'sigma'
    """
    reader = _Reader(path, label)
    for key in raw:
        if key not in _TABLES:
            raise reader.error("", unknown_name("key", key, _TABLES))
    model = reader.table(raw, "model", _MODEL_KEYS)
    for key in _REQUIRED:
        if key not in model:
            raise reader.error(
                f"[model] {key}", "is required: a [model] table with 'formula' and 'data'"
            )
    formula = reader.text(model, "formula")
    try:
        parse(formula)
    except SpecError as exc:
        raise reader.error("[model] formula", str(exc)) from None
    family = reader.choice(model, "family", tuple(sorted(families.FAMILIES)))
    if "link" in model:
        try:
            families.get(family or "gaussian", reader.text(model, "link"))
        except SpecError as exc:
            raise reader.error("[model] link", str(exc)) from None
    parameterization = reader.choice(model, "parameterization", PARAMETERIZATIONS)
    dpars = {key: reader.text(model, key) for key in MODELLED if key in model}
    for key, rhs in dpars.items():
        try:
            parse_dpar(key, rhs, families.get(family or "gaussian", reader.text(model, "link")))
        except SpecError as exc:
            raise reader.error(f"[model] {key}", str(exc)) from None
    priors = {
        key: reader.prior(key, value) for key, value in reader.table(raw, "priors", None).items()
    }
    options = {
        "se": reader.text(model, "se"),
        "trials": reader.text(model, "trials"),
        "offset": reader.text(model, "offset"),
        "weights": reader.text(model, "weights"),
        "link": reader.text(model, "link"),
        "family": family,
        "parameterization": parameterization,
    }
    spec = ModelSpec(
        formula=formula,
        priors=priors,
        dpars=dpars,
        **{key: value for key, value in options.items() if value is not None},
    )
    return RunSpec(
        name=name or path.stem,
        model=spec,
        data=reader.data(model),
        sampler=reader.sampler(reader.table(raw, "sampler", SAMPLER_KEYS)),
    )


def model_data(path: str | Path) -> pd.DataFrame | str:
    """What a spec's data file gives :class:`hierbayes.Model`: a Parquet file's path, which
    the model reads through DuckDB (:mod:`hierbayes.spec.intake`: per-group sums, distinct
    rows or the model's columns, so a file larger than memory fits), or a CSV file read as
    rows (:func:`read_csv`). A missing file is a :class:`DataError`.

    Examples
    --------
    >>> from hierbayes.api.datasets import resource_path
    >>> model_data(resource_path("data", "eight_schools.csv")).shape
    (8, 3)
    """
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        return read_csv(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    return str(path)


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a data file named by a spec; a missing or unreadable file is a :class:`DataError`.

    Examples
    --------
    >>> from hierbayes.api.datasets import resource_path
    >>> read_csv(resource_path("data", "eight_schools.csv")).shape
    (8, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    try:
        return pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(
            f"data file {str(path)!r} cannot be read as CSV: {type(exc).__name__}: {exc}"
        ) from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def _prior_table(prior: Prior) -> str:
    from dataclasses import fields

    dist = next(k for k, cls in REGISTRY.items() if cls is type(prior))
    args = [f"dist = {_toml_value(dist)}"]
    args += [f"{f.name} = {_toml_value(getattr(prior, f.name))}" for f in fields(prior)]
    return "{ " + ", ".join(args) + " }"


def spec_text(spec: RunSpec, folder: Path) -> str:
    """The TOML of ``spec``, to be written in ``folder`` (``data`` is written relative to it):
    :func:`read_spec` reads it back to the same spec.

    Examples
    --------
    >>> from pathlib import Path
    >>> from hierbayes.api.datasets import resource_path
    >>> spec = read_spec(resource_path("models", "eight_schools.toml"))
    >>> print(spec_text(spec, resource_path("models")))  # doctest: +ELLIPSIS
    [model]
    formula = "y ~ 1 + (1 | school)"
    data = "../data/eight_schools.csv"
    se = "sigma"
    ...
    """
    import os

    model = spec.model
    data = Path(os.path.relpath(spec.data, Path(folder).resolve())).as_posix()
    entries: dict[str, Any] = {"formula": model.formula, "data": data}
    for key in (k for k in _MODEL_KEYS if k not in ("formula", "data", *MODELLED)):
        value = getattr(model, key)
        if value is not None:
            entries[key] = value
    entries |= dict(model.dpars)
    lines = ["[model]", *(f"{k} = {_toml_value(v)}" for k, v in entries.items())]
    if model.priors:
        lines += ["", "[priors]"]
        lines += [f"{json.dumps(k)} = {_prior_table(p)}" for k, p in model.priors.items()]
    if spec.sampler:
        lines += ["", "[sampler]", *(f"{k} = {_toml_value(v)}" for k, v in spec.sampler.items())]
    return "\n".join(lines) + "\n"
