"""Formula transforms: everything formulae evaluates, names from the caller, safe files.

References: NumPy computed directly, and patsy's ``bs`` (the same column space); stateful
transforms keep the training data's state in predict, also after save and load.
"""

import numpy as np
import pandas as pd
import patsy
import pytest

import hierbayes as hb
from hierbayes.api.cli import main

from ..conftest import quiet_fit


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(21)
    g = np.repeat(np.arange(12), 15)
    x = rng.uniform(0.5, 3.0, g.size)
    z = rng.normal(size=g.size)
    u = rng.normal(0, 0.5, 12)
    y = 1.0 + 0.8 * np.log(x) + 0.3 * z**2 + u[g] + rng.normal(0, 0.4, g.size)
    k = rng.choice(["a", "b", "c"], g.size)
    return pd.DataFrame({"y": y, "x": x, "z": z, "k": k, "g": [f"s{j}" for j in g]})


def double(v):
    return 2.0 * v


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("log(x)", lambda d: np.log(d["x"])),
        ("np.log(x)", lambda d: np.log(d["x"])),
        ("sqrt(x)", lambda d: np.sqrt(d["x"])),
        ("I(x**2)", lambda d: d["x"] ** 2),
        ("{x**2}", lambda d: d["x"] ** 2),
        ("I(x + pi)", lambda d: d["x"] + np.pi),
        ("scale(x)", lambda d: (d["x"] - d["x"].mean()) / d["x"].std(ddof=0)),
        ("center(x)", lambda d: d["x"] - d["x"].mean()),
        ("double(x)", lambda d: 2.0 * d["x"]),  # a function of the caller's
    ],
)
def test_transformed_columns_equal_numpy(data, term, expected):
    """Population-level and group-level terms alike."""
    for formula in (f"y ~ {term} + (1 | g)", f"y ~ 1 + (0 + {term} | g)"):
        design = hb.Model(formula, data).design
        column = design.X[:, -1] if design.X.shape[1] > 1 else design.factors[0].Z[:, 0]
        np.testing.assert_allclose(column, expected(data), rtol=1e-12)
        assert design.columns == ("y", "x", "g")


def test_splines_and_polynomials_span_patsys_columns(data):
    x = data["x"].to_numpy()
    for term, reference in (
        ("bs(x, df=4)", np.asarray(patsy.dmatrix("1 + bs(x, df=4)", data))),
        ("poly(x, 2)", np.column_stack([np.ones_like(x), x, x**2])),
    ):
        X = hb.Model(f"y ~ {term} + (1 | g)", data).design.X
        assert X.shape[1] == reference.shape[1]
        coef = np.linalg.lstsq(reference, X, rcond=None)[0]
        np.testing.assert_allclose(reference @ coef, X, atol=1e-10)
    Q = hb.Model("y ~ poly(x, 2) + (1 | g)", data).design.X[:, 1:]
    np.testing.assert_allclose(Q.T @ Q, np.eye(2), atol=1e-12)  # orthonormal, as R's poly
    design = hb.Model("y ~ C(k, Treatment('b')) + (1 | g)", data).design
    assert design.fixed_names == (
        "Intercept",
        "C(k, Treatment('b'))[a]",
        "C(k, Treatment('b'))[c]",
    )
    np.testing.assert_array_equal(design.X[:, 1], (data["k"] == "a").to_numpy(float))


def test_columns_inside_transforms_are_still_checked(data):
    bad = data.copy()
    bad.loc[[3, 7], "x"] = np.nan
    with pytest.raises(hb.DataError, match=r"column 'x' has missing values .* 2 rows \(3, 7\)"):
        hb.Model("y ~ log(x) + (1 | g)", bad)
    with pytest.warns(hb.DataWarning, match="dropped 2 of 180 rows"):
        dropped = hb.Model("y ~ log(x) + (1 | g)", bad, dropna=True)
    assert list(dropped.dropped) == [3, 7]
    with pytest.raises(
        hb.DataError, match=r"term 'log\(x - 1\)' is not a finite number in \d+ rows"
    ):
        hb.Model("y ~ log(x - 1) + (1 | g)", data)
    with pytest.raises(hb.SpecError, match="'nosuch' is neither a data column nor a known"):
        hb.Model("y ~ nosuch(x) + (1 | g)", data)
    with pytest.raises(hb.DataError, match="column 'zz' is used by the model but is not in"):
        hb.Model("y ~ I(zz * 2) + (1 | g)", data)
    assert list(data.columns) == ["y", "x", "z", "k", "g"] and not data.isna().any().any()


@pytest.mark.parametrize(
    ("formula", "name"),
    [
        ("y ~ double(x) + (1 | g)", "'double'"),
        ("y ~ open(x) + (1 | g)", "'open'"),
        ("y ~ os.system(x) + (1 | g)", "'os.system'"),
        ("y ~ np.load(x) + (1 | g)", "'np.load'"),
        ("y ~ eval(x) + (1 | g)", "'eval'"),
        ("y ~ x.__class__ + (1 | g)", "'x.__class__'"),
    ],
)
def test_the_safe_namespace_refuses_other_names(data, formula, name):
    secret = 1.0  # noqa: F841 (a caller's name the safe namespace must not see)
    with pytest.raises(hb.SpecError, match=f"{name}, which a formula read from a file"):
        hb.Model(formula, data, namespace="safe")
    hb.Model("y ~ log(x) + I(x + pi) + scale(z) + (1 | g)", data, namespace="safe")
    with pytest.raises(hb.DataError, match="column 'secret' is used by the model but is not"):
        hb.Model("y ~ I(x + secret) + (1 | g)", data, namespace="safe")


def test_a_spec_file_cannot_run_code(tmp_path, capsys, data):
    data.to_csv(tmp_path / "d.csv", index=False)
    flag = tmp_path / "ran"
    for formula in (
        f"y ~ __import__('os').system('touch {flag}') + (1 | g)",
        f"y ~ os.system('touch {flag}') + (1 | g)",
        "y ~ open(x) + (1 | g)",
    ):
        spec = tmp_path / "m.toml"
        spec.write_text(f'[model]\nformula = "{formula}"\ndata = "d.csv"\n')
        assert main(["fit", str(spec), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "syntax error" in err or "which a formula read from a file" in err
        assert not flag.exists() and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def stateful_fit(data) -> hb.Fit:
    """Stateful transforms in both parts: predictions need the training data's state."""
    model = hb.Model("y ~ scale(x) + poly(z, 2) + (scale(x) || g)", data)
    return quiet_fit(model, draws=100, tune=200, random_seed=4)


def fitted_linear_predictor(fit: hb.Fit) -> np.ndarray:
    """X beta + Z u[g] from the posterior and the training design: (S, N)."""
    d = fit.model.design
    post = fit.idata.posterior
    beta = np.stack([post[n].values.reshape(-1) for n in d.fixed_names], axis=1)
    f = d.factors[0]
    u = post[f"u_{f.name}"].values.reshape(-1, f.n_groups, len(f.terms))
    return beta @ d.X.T + np.einsum("snk,nk->sn", u[:, f.codes], f.Z)


def test_predicting_training_rows_reproduces_the_fit(stateful_fit, data, tmp_path):
    eta = fitted_linear_predictor(stateful_fit)
    full = stateful_fit.predict(data).values.reshape(eta.shape)
    np.testing.assert_allclose(full, eta, rtol=1e-10, atol=1e-12)
    rows = [5, 40, 41, 170]  # scale() refitted on these rows alone would differ
    part = stateful_fit.predict(data.iloc[rows]).values.reshape(-1, len(rows))
    np.testing.assert_allclose(part, eta[:, rows], rtol=1e-10, atol=1e-12)
    path = stateful_fit.save(tmp_path / "fit.nc")
    again = hb.load(path)
    np.testing.assert_allclose(
        again.predict(data.iloc[rows]).values.reshape(-1, len(rows)), eta[:, rows], rtol=1e-10
    )


def test_load_takes_the_functions_a_formula_needs(data, tmp_path):
    model = hb.Model("y ~ double(x) + (1 | g)", data)
    fit = quiet_fit(model, draws=50, tune=100, random_seed=2)
    path = fit.save(tmp_path / "fit.nc")
    with pytest.raises(hb.SpecError, match=r"calls 'double'.*namespace="):
        hb.load(path)
    again = hb.load(path, namespace={"double": double})
    np.testing.assert_allclose(again.predict(data.head(3)), fit.predict(data.head(3)))


def test_numbers_stored_as_text_are_refused_unless_meant_as_categories(data):
    """A bare text column of measurements (not whole numbers) would become one category per
    value: refused, naming the column and the fix; C(x) keeps it as categories; text
    categories and whole-number codes such as years are categories, as R factors are."""
    text = data.assign(x=data["x"].round(2).astype(str))
    with pytest.raises(hb.DataError, match=r"column 'x' holds numbers stored as text .* C\(x\)"):
        hb.Model("y ~ x + (1 | g)", text)
    with pytest.raises(hb.DataError, match="column 'x' holds numbers stored as text"):
        hb.Model("y ~ z + (1 | g)", text, sigma="~ x")
    levels = text["x"].nunique()
    assert len(hb.Model("y ~ C(x) + (1 | g)", text).design.fixed_names) == levels
    assert hb.Model("y ~ k + (1 | g)", data).design.fixed_names == ("Intercept", "k[b]", "k[c]")
    years = data.assign(year=np.where(data["z"] > 0, "95", "96"))  # whole-number codes
    names = hb.Model("y ~ year + (1 | g)", years).design.fixed_names
    assert names == ("Intercept", "year[96]")
