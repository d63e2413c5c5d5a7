"""Bad input: each case raises a clear error naming the column, the rows and the fix."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb

from ..conftest import quiet_fit

F = "y ~ 1 + (1 | school)"


def model(df, formula=F, **kw):
    kw.setdefault("se", "sigma")
    return hb.Model(formula, df, **kw)


def test_missing_column_suggests_the_closest(eight):
    with pytest.raises(
        hb.DataError, match=r"column 'schol' .* not in the data\. Did you mean 'school'"
    ):
        model(eight, "y ~ 1 + (1 | schol)")


def test_missing_se_column(eight):
    with pytest.raises(
        hb.DataError, match="column 'se' is used by the model but is not in the data"
    ):
        model(eight, se="se")


@pytest.mark.parametrize("column", ["y", "sigma", "school"])
def test_nan_in_any_used_column_names_column_and_rows(eight, column):
    df = eight.copy()
    df[column] = df[column].astype(object)
    df.loc[[2, 5], column] = None
    with pytest.raises(hb.DataError) as info:
        model(df)
    msg = str(info.value)
    assert f"column {column!r} has missing values" in msg
    assert "2 rows (2, 5)" in msg
    assert "never drops rows silently" in msg


def test_inf_is_named(eight):
    df = eight.assign(y=eight["y"].astype(float))
    df.loc[7, "y"] = np.inf
    with pytest.raises(hb.DataError, match=r"column 'y' has infinite values in 1 row \(7\)"):
        model(df)


def test_unused_columns_may_hold_nan(eight):
    """Only the columns the model uses are checked; nothing else is touched."""
    df = eight.assign(note=[None] * 8)
    assert model(df).design.n_obs == 8


@pytest.mark.parametrize("bad", [0.0, -3.0])
def test_se_must_be_positive(eight, bad):
    df = eight.assign(sigma=eight["sigma"].astype(float))
    df.loc[[1, 4], "sigma"] = bad
    with pytest.raises(hb.DataError, match=r"'sigma' has values <= 0 in 2 rows \(1, 4\)"):
        model(df)


def test_text_response(eight):
    with pytest.raises(hb.DataError, match="response column 'school' has dtype"):
        model(eight, "school ~ 1 + (1 | school)")


def test_unknown_term_in_formula(eight):
    with pytest.raises(
        hb.DataError, match="column 'x' is used by the model but is not in the data"
    ):
        model(eight, "y ~ 1 + x + (1 | school)")


def test_unknown_function_in_formula(eight):
    with pytest.raises(hb.SpecError, match="formulae cannot evaluate"):
        model(eight, "y ~ 1 + nosuchfunction(sigma) + (1 | school)")


def test_formula_syntax_error(eight):
    with pytest.raises(hb.SpecError, match=re.escape("formula 'y ~ 1 + (1 | school'")):
        model(eight, "y ~ 1 + (1 | school")


def test_fewer_than_two_groups(eight):
    df = eight.assign(school="A")
    with pytest.raises(hb.DataError, match=r"grouping column 'school' has 1 level\(s\)"):
        model(df)


def test_fewer_than_five_groups_warns(eight):
    with pytest.warns(
        hb.IdentifiabilityWarning, match="only 4 groups: its SD is weakly identified"
    ):
        model(eight.iloc[:4])


def test_five_groups_do_not_warn(eight):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(eight.iloc[:5])


def test_unknown_prior_key_suggests_closest(eight):
    with pytest.raises(
        hb.SpecError, match=r"unknown prior key 'Intercpt'; did you mean 'Intercept'"
    ):
        model(eight, priors={"Intercpt": hb.priors.Normal(0, 5)})


def test_sigma_prior_with_known_se(eight):
    with pytest.raises(hb.SpecError, match="not estimated when se= gives known standard errors"):
        model(eight, priors={"sigma": hb.priors.HalfNormal(1)})


def test_prior_support_must_fit_key(eight):
    with pytest.raises(hb.SpecError, match="does not suit a standard deviation"):
        model(eight, priors={"sd": hb.priors.Normal(0, 1)})
    with pytest.raises(hb.SpecError, match="does not suit a coefficient"):
        model(eight, priors={"Intercept": hb.priors.HalfNormal(1)})


def test_prior_arguments_out_of_range_from_strings(eight):
    with pytest.raises(hb.SpecError, match="beta must be a positive finite number, got -5.0"):
        model(eight, priors={"sd": "halfcauchy:-5"})


@pytest.mark.parametrize(
    "prior, message",
    [
        (hb.priors.InverseGamma(1, 1), "pull a group SD towards zero"),
        (hb.priors.HalfFlat(), "improper"),
    ],
)
def test_questionable_priors_warn(eight, prior, message):
    with pytest.warns(hb.PriorWarning, match=message):
        model(eight, priors={"sd": prior})


def test_unknown_family_and_parameterization(eight):
    with pytest.raises(hb.SpecError, match="unknown family 'gausian'; did you mean 'gaussian'"):
        model(eight, family="gausian")
    with pytest.raises(hb.SpecError, match="unknown parameterization 'noncentred'.*'non-centered'"):
        model(eight, parameterization="noncentred")


def test_constant_and_collinear_predictors():
    df = pd.DataFrame(
        {
            "y": [1.0, 2, 3, 5],
            "x": [1.0, 1, 1, 1],
            "w": [1.0, 2, 3, 4],
            "v": [2.0, 4, 6, 8],
            "g": list("aabb"),
        }
    )
    with pytest.raises(hb.DataError, match="predictor 'x' is constant"):
        hb.Model("y ~ x + (1 | g)", df)
    with pytest.raises(
        hb.DataError, match=r"predictor 'v' is a linear combination of \['Intercept', 'w'\]"
    ):
        hb.Model("y ~ w + v + (1 | g)", df)


def test_constant_response_without_se():
    df = pd.DataFrame({"y": [1.0] * 4, "g": list("aabb")})
    with pytest.raises(hb.DataError, match="response column 'y' is constant"):
        hb.Model("y ~ 1 + (1 | g)", df)


def test_not_a_dataframe():
    with pytest.raises(hb.DataError, match="must be a pandas DataFrame"):
        hb.Model("y ~ 1", {"y": [1, 2]})


def test_fit_arguments(eight_models):
    m = eight_models["non-centered"]
    with pytest.raises(hb.SpecError, match="draws must be a whole number from 1 to 1,000,000"):
        m.fit(draws=0)
    with pytest.raises(hb.SpecError, match="target_accept must be in"):
        m.fit(target_accept=1.0)


def test_no_rows_are_dropped_or_reordered(regression_data):
    m = hb.Model("y ~ x + (1 | g)", regression_data)
    np.testing.assert_array_equal(m.design.y, regression_data["y"].to_numpy())
    assert list(m.design.index) == list(regression_data.index)
    labels = m.design.factors[0].levels[m.design.factors[0].codes]
    np.testing.assert_array_equal(labels, regression_data["g"].to_numpy())


def test_dropna_drops_and_reports_per_group(regression_data):
    df = regression_data.copy()
    df.loc[[3, 4, 40], "x"] = np.nan
    df.loc[7, "y"] = np.inf
    counts = df.loc[[3, 4, 7, 40], "g"].value_counts(sort=False)
    expected = ", ".join(f"{g}: {c}" for g, c in counts.items())  # g00: 2, g01: 1, g03: 1
    with pytest.warns(hb.DataWarning, match=rf"dropped 4 of 413 rows .* per 'g': {expected} \("):
        m = hb.Model("y ~ x + (1 | g)", df, dropna=True)
    assert list(m.dropped) == [3, 4, 7, 40]
    assert m.design.n_obs == len(df) - 4
    np.testing.assert_array_equal(m.design.index, df.index.drop([3, 4, 7, 40]))
    with pytest.raises(hb.DataError, match="never drops rows silently"):
        hb.Model("y ~ x + (1 | g)", df)


def test_dropna_with_complete_data_changes_nothing(regression_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = hb.Model("y ~ x + (1 | g)", regression_data, dropna=True)
    assert m.dropped.empty and m.design.n_obs == len(regression_data)


# --- the audit: each entry point refuses bad input naming column, rows and fix ----------------


def test_groups_with_one_observation_are_allowed(eight):
    """Every school has one observation: allowed (empirical Bayes notes where its own-fit
    baseline cannot use such a group; see test_eb)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = model(eight)
    assert (m.design.factors[0].counts == 1).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"draws": 1.5}, "draws must be a whole number from 1 to 1,000,000, got 1.5"),
        ({"draws": True}, "draws must be a whole number from 1 to 1,000,000, got True"),
        ({"tune": -1}, "tune must be a whole number from 1 to 1,000,000, got -1"),
        ({"chains": 0}, "chains must be a whole number from 1 to 64, got 0"),
        ({"chains": "4"}, "chains must be a whole number from 1 to 64, got '4'"),
        ({"chains": 10**6}, "chains must be a whole number from 1 to 64, got 1000000"),
        ({"cores": 0}, r"cores must be a whole number from 1 to 64 \(or None\), got 0"),
        ({"cores": "2"}, r"cores must be a whole number from 1 to 64 \(or None\), got '2'"),
        ({"target_accept": 0.2}, r"target_accept must be in \[0.5, 1\), got 0.2"),
        ({"target_accept": float("nan")}, r"target_accept must be in \[0.5, 1\), got nan"),
        ({"target_accept": "0.9"}, r"target_accept must be a number in \[0.5, 1\), got '0.9'"),
        ({"target_accept": None}, r"target_accept must be a number in \[0.5, 1\), got None"),
        ({"random_seed": -1}, r"random_seed must be a whole number from 0 to 2\*\*32 - 1"),
        ({"random_seed": 1.5}, r"random_seed must be a whole number .* got 1.5"),
        ({"sampler": "stan"}, "unknown sampler 'stan'"),
    ],
)
def test_fit_argument_types(eight_models, kwargs, message):
    with pytest.raises(hb.SpecError, match=message):
        eight_models["non-centered"].fit(**kwargs)


@pytest.fixture(scope="module")
def small_fits(eight_fit, regression_fit):
    """Fits with known SEs (eight schools), estimated sigma, and a brief binomial one."""
    rng = np.random.default_rng(5)
    g = np.repeat([f"g{k:02d}" for k in range(6)], 8)
    x = rng.normal(size=g.size)
    n = rng.integers(1, 9, g.size)
    binomial = pd.DataFrame({"k": rng.binomial(n, 0.4), "n": n, "x": x, "g": g})
    model = hb.Model(
        "k ~ x + (1 | g)", binomial, family="binomial", trials="n", parameterization="non-centered"
    )
    brief = quiet_fit(model, draws=100, tune=100, chains=1, cores=1, random_seed=2)
    return {"se": eight_fit, "gaussian": regression_fit, "binomial": brief}


NEW = pd.DataFrame(
    {"x": [0.1, 0.2, 0.3, 0.4], "g": ["g00", "g01", "g02", "g03"], "n": [4, 4, 4, 4]},
    index=[10, 11, 12, 13],
)


@pytest.mark.parametrize(
    "column, values, message",
    [
        (
            "x",
            [0.1, np.nan, 0.3, np.nan],
            "column 'x' has missing values (NaN/None) in 2 rows (11, 13). hierbayes never "
            "drops rows silently: remove or impute these rows before fitting",
        ),
        (
            "x",
            [0.1, np.inf, 0.3, 0.4],
            "column 'x' has infinite values in 1 row (11). hierbayes never drops rows "
            "silently: remove or impute these rows before fitting",
        ),
        (
            "x",
            ["0.1", "a", "0.3", "b"],
            "column 'x' holds numbers in the model's data but not in 2 rows (11, 13) of the "
            "new data: convert it with pd.to_numeric",
        ),
        (
            "g",
            ["g00", None, "g02", "g03"],
            "column 'g' has missing values (NaN/None) in 1 row (11)",
        ),
    ],
)
def test_predict_bad_cells_name_column_and_rows(small_fits, column, values, message):
    new = NEW.assign(**{column: values})
    with pytest.raises(hb.DataError) as info:
        small_fits["gaussian"].predict(new)
    assert str(info.value).startswith(message)


def test_predict_missing_column_suggests_the_closest(small_fits):
    with pytest.raises(hb.DataError, match=r"column 'x' .* not in the data\. Did you mean 'xx'"):
        small_fits["gaussian"].predict(NEW.rename(columns={"x": "xx"}))


@pytest.mark.parametrize("seed", [-1, 1.5, "1", True])
def test_predict_random_seed(small_fits, seed):
    with pytest.raises(
        hb.SpecError,
        match=re.escape(f"random_seed must be None or a whole number >= 0, got {seed!r}"),
    ):
        small_fits["gaussian"].predict(NEW, random_seed=seed)


@pytest.mark.parametrize(
    "values, what",
    [([1.0, 0.0, -2.0, 3.0], "2 rows (1, 2)"), (["1", "a", "2", "3"], "1 row (1)")],
)
def test_predict_response_needs_positive_standard_errors(small_fits, eight, values, what):
    new = eight.iloc[:4].assign(sigma=values)
    assert small_fits["se"].predict(new).shape[-1] == 4  # the mean does not use them
    with pytest.raises(hb.DataError) as info:
        small_fits["se"].predict(new, kind="response")
    assert str(info.value) == (
        f"standard-error column 'sigma' has values that are not positive numbers in {what}; "
        "kind='response' draws the response with them: correct these rows"
    )


@pytest.mark.parametrize(
    "values, what",
    [
        ([4, 2.5, 0, 4], "2 rows (11, 12)"),
        ([4, -2, 4, 4], "1 row (11)"),
        (["4", "four", "4", "4"], "1 row (11)"),
    ],
)
def test_predict_response_needs_whole_trials(small_fits, values, what):
    new = NEW.assign(n=values)
    with pytest.raises(hb.DataError) as info:
        small_fits["binomial"].predict(new, kind="response")
    assert str(info.value) == (
        f"trials column 'n' has values that are not whole numbers of at least 1 in {what}; "
        "kind='response' draws the response with them: correct these rows"
    )
    with pytest.raises(hb.DataError, match="column 'n' is used by the model but is not in"):
        small_fits["binomial"].predict(NEW.drop(columns="n"), kind="response")


@pytest.mark.parametrize("kind", ["mean", "response"])
def test_predict_accepts_good_rows(small_fits, kind):
    pred = small_fits["binomial"].predict(NEW, kind=kind, random_seed=1)
    assert pred.shape == (1, 100, 4) and np.isfinite(pred.values).all()


def test_empirical_bayes_needs_a_model(small_fits):
    fit = small_fits["gaussian"]
    with pytest.raises(hb.SpecError) as info:
        hb.empirical_bayes(fit)
    assert str(info.value) == (
        "empirical_bayes needs a hierbayes.Model, got Fit: pass fit.model, as in "
        "hb.empirical_bayes(hb.Model(formula, data))"
    )
    with pytest.raises(hb.SpecError, match="needs a hierbayes.Model, got DataFrame, as in"):
        hb.empirical_bayes(fit.model.data)
    assert hb.empirical_bayes(fit.model).factor == "g"


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: hb.priors.Normal(10**400, 1), hb.SpecError, "mu must be a finite number"),
        (lambda: hb.priors.from_string("normal:"), hb.SpecError, "nothing after ':'"),
        (
            lambda: hb.Model("y ~ 1", pd.DataFrame({"y": np.array([1 + 1j, 2, 3])})),
            hb.DataError,
            "response column 'y' has dtype complex128",
        ),
        (
            lambda: hb.Model(
                "y ~ 1 + (1 | g)",
                pd.DataFrame({"y": [1e305, -1e305, 3e305, 5.0, 1, 2], "g": list("aabbcc")}),
            ),
            hb.DataError,
            r"column 'y' holds values too large to compute with \(largest \|value\| 3e\+305\)",
        ),
    ],
)
def test_extreme_values_are_named_not_crashed_on(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_constant_or_collinear_group_level_columns_are_refused(regression_data):
    df = regression_data.assign(c=1.5, x2=2 * regression_data["x"])
    with pytest.raises(
        hb.DataError, match=r"group-level terms of 'g': predictor 'c' is constant \(1.5 in every"
    ):
        hb.Model("y ~ x + (c | g)", df)
    with pytest.raises(
        hb.DataError,
        match=r"group-level terms of 'g': predictor 'x2' is a linear combination of "
        r"\['Intercept', 'x'\]",
    ):
        hb.Model("y ~ x + (x + x2 | g)", df)


def test_dates_and_huge_predictors_are_named(regression_data):
    df = regression_data.assign(
        d=pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(regression_data)), "D"),
        big=regression_data["x"] * 1e305,
    )
    with pytest.raises(hb.DataError, match=r"column 'd' holds dates \(datetime64\[\w+\]\): conv"):
        hb.Model("y ~ d + (1 | g)", df)
    with pytest.raises(hb.DataError, match="predictor 'big' holds values too large to compute"):
        hb.Model("y ~ big + (1 | g)", df)
