"""Column and level names a user may have: each fits, or is refused before anything compiles.

The dangerous ones are the posterior's own dimensions (chain, draw, obs; "sample", which
stacking used to create) and variables (Intercept, sigma, sd_<f>, ...), and names with spaces,
colons, brackets or slashes. lme4's Penicillin data (a factor named ``sample``) is the case
that crashed after 52 s of sampling.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb

from ..conftest import quiet_fit


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(8), 6)
    y = 1.0 + rng.normal(0, 0.7, 8)[g] + rng.normal(0, 0.5, g.size)
    return pd.DataFrame({"y": y, "x": rng.normal(size=g.size), "g": [f"s{k}" for k in g]})


def structural(model: hb.Model) -> None:
    """The graph builds, its coords hold every group, and logp and its gradient are finite."""
    graph = model.build()
    for f in model.design.factors:
        assert list(graph.coords[f.name]) == list(f.levels)
    point = graph.initial_point()
    assert np.isfinite(graph.compile_logp()(point))
    assert all(np.isfinite(v).all() for v in graph.compile_dlogp()(point).ravel())


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize(
    ("formula", "rename"),
    [
        ("y ~ x + (1 | sample)", {"g": "sample"}),
        ("y ~ x + (1 | term)", {"g": "term"}),
        ("y ~ x + (1 | b)", {"g": "b"}),
        ("y ~ x + (1 | `my group`)", {"g": "my group"}),
        ("`my y` ~ `my x` + (`my x` || g)", {"y": "my y", "x": "my x"}),
        ("y ~ `x[1]` + (1 | g)", {"x": "x[1]"}),
        ("draws ~ chains + (1 | g)", {"y": "draws", "x": "chains"}),
    ],
)
def test_names_that_fit(base, formula, rename):
    data = base.rename(columns=rename)
    model = hb.Model(formula, data, parameterization="non-centered")
    structural(model)
    assert list(data.columns) == [rename.get(c, c) for c in base.columns]  # not mutated


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
@pytest.mark.parametrize("labels", [["a:b", "c:d"], ["1", "2"], ["x[1]", "x[2]"], ["nan", "None"]])
def test_level_names_that_fit(base, labels):
    data = base.assign(g=np.where(np.arange(len(base)) % 2 == 0, labels[0], labels[1]))
    with pytest.warns(hb.IdentifiabilityWarning, match="only 2 groups"):
        model = hb.Model("y ~ x + (1 | g)", data, parameterization="centered")
    structural(model)
    assert list(model.design.factors[0].levels) == labels


@pytest.mark.parametrize(
    ("formula", "rename", "message"),
    [
        ("y ~ x + (1 | chain)", {"g": "chain"}, "grouping column 'chain' cannot keep its name"),
        ("y ~ x + (1 | draw)", {"g": "draw"}, "grouping column 'draw' cannot keep its name"),
        ("y ~ x + (1 | obs)", {"g": "obs"}, "grouping column 'obs' cannot keep its name"),
        ("y ~ obs + (1 | g)", {"x": "obs"}, "'obs' would name both a variable"),
        ("obs ~ x + (1 | g)", {"y": "obs"}, "'obs' would name both a variable"),
        ("y ~ x + (1 | sigma)", {"g": "sigma"}, "'sigma' would name both a variable"),
        ("y ~ x + (1 | Intercept)", {"g": "Intercept"}, "'Intercept' would name both"),
        ("y ~ x + (1 | x)", {}, "'x' would name both a variable"),
        ("y ~ sd + (1 | g)", {"x": "sd"}, "coefficient 'sd' would share its prior key"),
        ("y ~ corr + (1 | g)", {"x": "corr"}, "coefficient 'corr' would share its prior"),
        ("y ~ sd_g + (1 | g)", {"x": "sd_g"}, r"variable name\(s\) \['sd_g'\] would repeat"),
        ("sigma ~ x + (1 | g)", {"y": "sigma"}, r"\['sigma'\] would repeat"),
        ("y ~ I(x / 2) + (1 | g)", {}, "'I\\(x / 2\\)' would hold '/'"),
        ("y ~ `a/b` + (1 | g)", {"x": "a/b"}, "'a/b' would hold '/'"),
        ("y ~ x + (x | g) + (1 | g_term)", {}, "would both name a dimension 'g_term'"),
        ("y ~ x + (1 | `a/b`)", {"g": "a/b"}, "holds '/' or ':'"),
    ],
)
def test_names_refused_before_anything_compiles(base, formula, rename, message):
    data = base.rename(columns=rename).assign(g_term=np.tile(["p", "q"], len(base) // 2))
    with pytest.raises((hb.SpecError, hb.DataError), match=message):
        hb.Model(formula, data)


def test_labels_that_read_the_same_are_refused(base):
    data = base.assign(g=[1, "1", 2, "2"] * (len(base) // 4))
    with pytest.raises(hb.DataError, match=r"labels that differ in type but read the same"):
        hb.Model("y ~ x + (1 | g)", data)


@pytest.fixture(scope="module")
def penicillin() -> pd.DataFrame:
    return hb.datasets.load("penicillin")


@pytest.fixture(scope="module")
def penicillin_fit(penicillin) -> hb.Fit:
    model = hb.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin)
    return quiet_fit(model, draws=150, tune=300, random_seed=1)


def test_penicillin_with_a_factor_named_sample_runs_the_whole_path(
    penicillin, penicillin_fit, tmp_path
):
    """lme4's REML fit: intercept 22.97, sd plate 0.847, sd sample 1.932, residual 0.550."""
    post = penicillin_fit.idata.posterior
    assert post["b_sample"].sizes["sample"] == 6 and post["b_plate"].sizes["plate"] == 24
    np.testing.assert_allclose(float(post["Intercept"].median()), 22.97, atol=1.0)
    np.testing.assert_allclose(float(post["sd_plate"].median()), 0.847, rtol=0.3)
    np.testing.assert_allclose(float(post["sigma"].median()), 0.550, rtol=0.2)
    table = penicillin_fit.pooling().table
    assert set(table["factor"]) == {"plate", "sample"} and len(table) == 30
    summary = penicillin_fit.summary().table
    assert "sd_sample[Intercept]" in summary.index
    pred = penicillin_fit.predict(penicillin.head(3))
    again = hb.load(penicillin_fit.save(tmp_path / "penicillin.nc"))
    np.testing.assert_allclose(again.predict(penicillin.head(3)), pred)
    with warnings.catch_warnings():  # 2 x 150 draws: the ESS check may fail, not under test
        warnings.simplefilter("ignore", hb.SamplingWarning)
        compared = hb.compare({"both": penicillin_fit, "again": again})
    assert list(compared.index) == ["both", "again"] or list(compared.index) == ["again", "both"]


def test_columns_named_obs_or_with_a_slash_save_and_load(base, tmp_path):
    """Columns that name no variable (an offset, known SEs) may have any name."""
    data = base.assign(**{"a/b": 0.1 * base["x"], "obs": 0.5 + 0.01 * np.arange(len(base))})
    model = hb.Model("y ~ x + (1 | g)", data, se="obs", offset="a/b")
    fit = quiet_fit(model, draws=30, tune=60, random_seed=2)
    again = hb.load(fit.save(tmp_path / "slash.nc"))
    assert again.model.design.columns == ("y", "x", "g", "obs", "a/b")
    np.testing.assert_allclose(again.model.design.offset, data["a/b"], rtol=1e-15)
    np.testing.assert_allclose(again.predict(data.head(2)), fit.predict(data.head(2)))
