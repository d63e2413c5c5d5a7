"""Property-based: random and hostile data frames, formulas and TOML model specs either build a
model or raise one of hierbayes' own errors (DataError, SpecError, FileFormatError), never
anything from deep inside a library; a model that builds has dropped nothing, and an error
about a spec names its table and key.
"""

import copy
import datetime
import json
import math
import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import hierbayes as hb
from hierbayes.spec.specfile import read_csv, read_spec, sampler_problem

HOSTILE = [np.nan, np.inf, -np.inf, None, "text", "", -1.0, 0.0, 1e300, True]


@st.composite
def frames(draw):
    """A plausible frame (y, x, g, s, k), then a few hostile edits: bad cells, a lost column."""
    n = draw(st.integers(1, 14))
    finite = st.floats(-100, 100, allow_nan=False)
    df = pd.DataFrame(
        {
            "y": draw(st.lists(finite, min_size=n, max_size=n)),
            "x": draw(st.lists(finite, min_size=n, max_size=n)),
            "g": draw(st.lists(st.sampled_from("abcdef"), min_size=n, max_size=n)),
            "s": draw(st.lists(st.floats(0.1, 10), min_size=n, max_size=n)),
            "k": draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)),
        }
    )
    for _ in range(draw(st.integers(0, 3))):
        column = draw(st.sampled_from(list(df.columns)))
        row = draw(st.integers(0, n - 1))
        df[column] = df[column].astype(object)
        df.loc[row, column] = draw(st.sampled_from(HOSTILE))
    if draw(st.booleans()) and draw(st.booleans()):
        df = df.drop(columns=draw(st.sampled_from(list(df.columns))))
    return df


GOOD_TERMS = [
    "1",
    "x",
    "C(k)",
    "k",
    "x:k",
    "(1 | g)",
    "(x | g)",
    "(x || g)",
    "(0 + x | g)",
    "(1 | g/k)",
    "(1 | g) + (1 | k)",
]
BAD_TERMS = ["0", "log(x)", "nothere", "(1 | nothere)", "(", ")", "|", "+", "x*", "~", "(1 |)"]


@st.composite
def formulas(draw):
    lhs = draw(st.sampled_from(["y"] * 15 + ["x", "g", "", "log(y)", "y y"]))
    terms = draw(st.lists(st.sampled_from(GOOD_TERMS * 8 + BAD_TERMS), min_size=1, max_size=4))
    return f"{lhs} ~ {' + '.join(terms)}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=frames(),
    formula=formulas(),
    se=st.sampled_from([None] * 4 + ["s", "x", "missing"]),
    family=st.sampled_from(["gaussian", "gaussian", "poisson", "bernoulli", "binomial", "weird"]),
    trials=st.sampled_from([None] * 4 + ["k", "s"]),
)
def test_only_a_model_or_a_hierbayes_error(data, formula, se, family, trials):
    with warnings.catch_warnings():
        # few groups and questionable priors warn by design; warnings are not the outcome here
        warnings.simplefilter("ignore", hb.IdentifiabilityWarning)
        try:
            model = hb.Model(formula, data, se=se, family=family, trials=trials)
        except (hb.DataError, hb.SpecError) as exc:
            event(type(exc).__name__)
            return
    event("built")
    assert model.design.n_obs == len(data)  # nothing dropped
    assert np.isfinite(model.design.y).all() and np.isfinite(model.design.X).all()
    for f in model.design.factors:
        assert f.codes.min() >= 0 and np.isfinite(f.Z).all()


# --- TOML model specs -------------------------------------------------------------------

SPEC_DATA = pd.DataFrame(
    {
        "y": [1.0, 2.5, 0.3, 4.1, 2.2, 3.3, 1.9, 0.7, 2.8, 3.9],
        "x": [0.1, 1.2, -0.5, 2.0, 0.4, 1.1, -1.3, 0.8, 1.7, -0.2],
        "g": list("aabbccddee"),
        "s": [1.0, 0.5, 2.0, 1.5, 1.0, 0.8, 1.2, 0.9, 1.1, 1.3],
        "k": [0, 1, 3, 2, 5, 1, 0, 4, 2, 3],
        "n": [5, 5, 5, 5, 6, 6, 6, 6, 7, 7],
    }
)
BASE_SPEC = {
    "model": {
        "formula": "y ~ x + (1 | g)",
        "data": "d.csv",
        "family": "gaussian",
        "parameterization": "non-centered",
    },
    "priors": {"Intercept": "normal:0,5", "sd": {"dist": "halfnormal", "sigma": 2}},
    "sampler": {
        "draws": 200,
        "tune": 200,
        "chains": 2,
        "cores": 1,
        "target_accept": 0.9,
        "random_seed": 1,
    },
}
VALID_KEYS = {
    None: ("model", "priors", "sampler"),
    "model": ("formula", "data", "se", "family", "trials", "parameterization"),
    "sampler": ("draws", "tune", "chains", "cores", "target_accept", "random_seed"),
    "priors": ("Intercept", "x", "sd", "sd_g", "sigma"),
}
HIERBAYES_ERRORS = (hb.SpecError, hb.DataError, hb.FileFormatError)


def toml_string(text: str) -> str:
    escaped = []
    for ch in text:
        if ch in '"\\':
            escaped.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\u{ord(ch):04x}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict) -> str:
    """TOML text for ``doc``: top-level values first, then one [table] per dict."""
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if type(v) is not dict]
    for name, table in doc.items():
        if type(table) is dict:
            lines.append(f"[{toml_string(name)}]")
            lines.extend(f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def test_toml_writer_round_trips():
    doc = {
        "model": {"formula": 'a "b"\\\n\x7f', "n": [1, 2.5, float("inf")]},
        "x": {"t": {"u": True}},
        "top": datetime.date(2020, 1, 2),
    }
    assert tomllib.loads(toml_document(doc)) == doc


SCALARS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, -5, 10**7, 2**63 - 1, -(2**63), 10**30, 10**400]),
    st.floats(),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["", " ", "y ~", "y ~ x +", "halfcauchy:-5", "normal:a", "nosuch:1"]),
    st.dates(),
    st.datetimes(),
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
BAD_PRIORS = [
    "halfcauhy:5",
    "halfcauchy:-5",
    "halfcauchy:0",
    "halfcauchy:nan",
    "halfcauchy:inf",
    "normal:0,5,7,9",
    "normal:a,b",
    ":",
    "",
    "lkj:0",
    "halft:3,-1",
    "halfcauchy:1e999",
]
BAD_NUMBERS = {
    "draws": [0, -1, -5, 10**7, 10**30, 2**63 - 1, -(2**63), 1.5, 200.0, True, "200", float("nan")],
    "tune": [0, -10, 10**9, float("inf"), False, [200]],
    "chains": [0, -2, 65, 10**18, 2.0, "4"],
    "cores": [0, -1, 1000, 1.0, True],
    "target_accept": [0.0, 0.3, 1, 1.0, 1.5, -0.9, float("nan"), float("inf"), True, "0.9"],
    "random_seed": [-1, 2**32, 10**30, 1.5, "1", False],
}
BAD_DATA = ["nope.csv", "eight_schools", "D.CSV", "", " ", "d.csv/", "../nope/d.csv", "\x00", "."]


@st.composite
def hostile_specs(draw):
    """The valid base spec with one hostile edit, and where the error must point."""
    doc = copy.deepcopy(BASE_SPEC)
    kind = draw(
        st.sampled_from(
            ["wrong value", "unknown key", "missing", "prior", "number", "data", "prior table"]
        )
    )
    if kind == "wrong value":
        table = draw(st.sampled_from(["model", "sampler", "priors"]))
        key = draw(st.sampled_from(VALID_KEYS[table]))
        doc[table][key] = draw(TOML_VALUES)
        return doc, f"[{table}] {key}", False
    if kind == "unknown key":
        table = draw(st.sampled_from([None, "model", "sampler", "priors"]))
        key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in VALID_KEYS[table]))
        (doc if table is None else doc[table])[key] = draw(TOML_VALUES)
        if table != "priors":
            return doc, repr(key), True
        if isinstance(doc["priors"][key], str | dict):
            return doc, None, False  # an unknown prior key is found when the model is built
        bare = re.fullmatch(r"[A-Za-z0-9_-]+", key)
        return doc, f"[priors] {key if bare else json.dumps(key, ensure_ascii=False)}", True
    if kind == "missing":
        key = draw(st.sampled_from(["formula", "data", "model"]))
        if key == "model":
            del doc["model"]
            return doc, "[model] formula", True
        del doc["model"][key]
        return doc, f"[model] {key}", True
    if kind == "prior":
        key = draw(st.sampled_from(["Intercept", "sd", "x"]))
        doc["priors"][key] = draw(st.sampled_from(BAD_PRIORS))
        return doc, f"[priors] {key}", True
    if kind == "prior table":
        table = {"dist": draw(st.sampled_from(["normal", "halfnormal", "nosuch", 3, ""]))}
        table.update(draw(st.dictionaries(st.sampled_from(["mu", "sigma", "beta", "zz"]), SCALARS)))
        if draw(st.booleans()):
            del table["dist"]
        doc["priors"]["sd"] = table
        return doc, "[priors] sd", False
    if kind == "number":
        key = draw(st.sampled_from(sorted(BAD_NUMBERS)))
        doc["sampler"][key] = draw(st.sampled_from(BAD_NUMBERS[key]))
        return doc, f"[sampler] {key}", True
    doc["model"]["data"] = draw(st.sampled_from(BAD_DATA) | st.text(max_size=10))
    return doc, "[model] data", False


@pytest.fixture(scope="module")
def spec_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("specs")
    SPEC_DATA.to_csv(folder / "d.csv", index=False)
    return folder


def check_loader(path: Path):
    """Read a spec and build its model: a model, or one of hierbayes' errors (returned)."""
    try:
        spec = read_spec(path)
    except HIERBAYES_ERRORS as exc:
        return exc
    assert spec.data.is_file()
    assert all(sampler_problem(k, v) is None for k, v in spec.sampler.items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.errors.HierbayesWarning)  # priors, few groups
        try:
            hb.Model.from_spec(spec.model, read_csv(spec.data))
        except (hb.SpecError, hb.DataError) as exc:
            event(f"model: {type(exc).__name__}")
            return None
    event("model built")
    return None


@settings(max_examples=200, deadline=None)
@given(case=hostile_specs())
def test_hostile_spec_is_read_or_refused_naming_the_key(spec_folder, case):
    doc, key, must_fail = case
    path = spec_folder / "m.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    error = check_loader(path)
    if error is None:
        assert not must_fail, f"{key} was accepted: {doc}"
        return
    event(type(error).__name__)
    if key is not None:
        assert key in str(error), (key, str(error))


@st.composite
def mangled_specs(draw):
    """The base spec with up to four random edits: values replaced, keys added or deleted."""
    doc = copy.deepcopy(BASE_SPEC)
    for _ in range(draw(st.integers(1, 4))):
        table = draw(st.sampled_from([None, "model", "priors", "sampler"]))
        where = doc if table is None else doc.get(table)
        if not isinstance(where, dict):
            continue
        key = draw(st.sampled_from(VALID_KEYS[table]) | st.text(max_size=6))
        if key in where and draw(st.booleans()):
            del where[key]
        else:
            where[key] = draw(TOML_VALUES)
    return doc


@settings(max_examples=150, deadline=None)
@given(doc=mangled_specs())
def test_mangled_specs_are_read_or_refused(spec_folder, doc):
    path = spec_folder / "r.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    error = check_loader(path)
    if error is not None:
        event(type(error).__name__)


@settings(max_examples=100, deadline=None)
@given(
    position=st.floats(0, 1),
    junk=st.binary(min_size=1, max_size=4),
    truncate=st.booleans(),
)
def test_spec_bytes_damaged(spec_folder, position, junk, truncate):
    """Bytes inserted (non-UTF-8 ones among them) or the file cut short."""
    text = toml_document(BASE_SPEC).encode()
    at = int(position * len(text))
    path = spec_folder / "b.toml"
    path.write_bytes(text[:at] if truncate else text[:at] + junk + text[at:])
    error = check_loader(path)
    if error is not None:
        event("not UTF-8" if "not UTF-8" in str(error) else str(error).split(": ")[1][:14])


def test_spec_errors_name_file_table_and_key(spec_folder):
    """A few of the messages in full."""
    path = spec_folder / "e.toml"

    def error_for(doc):
        path.write_text(toml_document(doc), encoding="utf-8")
        with pytest.raises(HIERBAYES_ERRORS) as info:
            read_spec(path)
        return str(info.value)

    doc = copy.deepcopy(BASE_SPEC)
    doc["sampler"]["draws"] = 10**12
    assert error_for(doc) == (
        f"{path} [sampler] draws: must be a whole number from 1 to 1,000,000, got 1000000000000"
    )
    doc = copy.deepcopy(BASE_SPEC)
    doc["model"]["family"] = "gausian"
    assert error_for(doc) == (
        f"{path} [model] family: unknown family 'gausian'; did you mean 'gaussian'? Valid: "
        "'bernoulli', 'beta', 'binomial', 'cumulative', 'gamma', 'gaussian', 'lognormal', "
        "'negativebinomial', 'poisson', 'student_t', 'zero_inflated_negativebinomial', "
        "'zero_inflated_poisson'"
    )
    doc = copy.deepcopy(BASE_SPEC)
    doc["model"]["link"] = "probit"
    assert error_for(doc) == (
        f"{path} [model] link: unknown link 'probit' for the gaussian family. Valid: "
        "'identity', 'log'"
    )
    doc["model"] = {"formula": "y ~ x", "data": 3}
    assert error_for(doc) == f"{path} [model] data: must be a non-empty string, got int 3"
    doc["model"] = {"formula": "y ~ x", "data": "d.cvs"}
    assert error_for(doc) == (
        f"{path} [model] data: data file 'd.cvs' does not exist (looked for "
        f"{str(spec_folder / 'd.cvs')!r}, relative to the spec file); did you mean 'd.csv'?"
    )
    doc = copy.deepcopy(BASE_SPEC)
    doc["priors"]["sd"] = {"sigma": 2}
    assert error_for(doc) == (
        f"{path} [priors] sd: a prior table needs 'dist', as in "
        '{ dist = "normal", mu = 0, sigma = 5 }'
    )
    doc["priors"]["sd"] = "halfcauchy:-5"
    assert error_for(doc) == (
        f"{path} [priors] sd: HalfCauchy: beta must be a positive finite number, got -5.0"
    )
    doc["priors"]["sd"] = {"dist": "normal", "mu": 10**400}
    assert error_for(doc) == f"{path} [priors] sd.mu: the number is too large"
    doc = copy.deepcopy(BASE_SPEC)
    doc["model"]["formula"] = "y ~ x +"
    assert error_for(doc).startswith(
        f"{path} [model] formula: formula 'y ~ x +' has a syntax error at position 7"
    )
    doc = copy.deepcopy(BASE_SPEC)
    del doc["model"]["data"]
    assert error_for(doc) == (
        f"{path} [model] data: is required: a [model] table with 'formula' and 'data'"
    )
    doc["sampler"] = [1, 2]
    del doc["model"]
    assert error_for(doc) == (
        f"{path} [model] formula: is required: a [model] table with 'formula' and 'data'"
    )


def test_spec_file_not_utf8_or_not_a_file(spec_folder):
    path = spec_folder / "latin1.toml"
    path.write_bytes(toml_document(BASE_SPEC).replace("normal:0,5", "n\xe9").encode("latin-1"))
    with pytest.raises(hb.SpecError) as info:
        read_spec(path)
    assert str(info.value).startswith(f"spec file {str(path)!r} is not UTF-8 text: byte 0xe9")
    with pytest.raises(hb.SpecError, match="is a folder, not a TOML file"):
        read_spec(spec_folder)
    deep = spec_folder / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000)
    with pytest.raises(hb.SpecError, match="nested too deeply"):
        read_spec(deep)
    deep.write_text("[sampler]\ndraws = " + "9" * 5000)  # beyond Python's int parsing limit
    with pytest.raises(hb.SpecError, match="not valid TOML: Exceeds the limit"):
        read_spec(deep)
    big = copy.deepcopy(BASE_SPEC)
    big["sampler"]["draws"] = int("9" * 4000)
    deep.write_text(toml_document(big))
    with pytest.raises(hb.SpecError) as info:
        read_spec(deep)
    assert str(info.value).endswith(
        "[sampler] draws: must be a whole number from 1 to 1,000,000, got " + "9" * 57 + "..."
    )


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
def test_hostile_data_files(spec_folder, content):
    """The CSV a spec names: a data frame or a DataError, then a model or a hierbayes error."""
    data = spec_folder / "h.csv"
    data.write_bytes(content)
    try:
        frame = read_csv(data)
    except hb.DataError as exc:
        event(str(exc).split(": ")[1][:25])
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.errors.HierbayesWarning)
        try:
            hb.Model("y ~ x + (1 | g)", frame)
        except (hb.SpecError, hb.DataError):
            pass
