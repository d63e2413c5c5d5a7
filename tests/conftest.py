"""Shared fixtures. Each distinct model is built, compiled and sampled once per session."""

from __future__ import annotations

import os
import signal
import warnings

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytensor  # noqa: E402
import pytest  # noqa: E402

import hierbayes as hb  # noqa: E402

#: The posteriordb model eight_schools_noncentered: mu ~ N(0, 5), tau ~ half-Cauchy(5).
EIGHT_PRIORS = {"Intercept": hb.priors.Normal(0, 5), "sd": hb.priors.HalfCauchy(5)}
EIGHT_FORMULA = "y ~ 1 + (1 | school)"


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in every test, as in an interactive Python.

    A shell that starts the suite in the background hands Python an ignored SIGINT, and the
    tests that press Ctrl-C (``signal.raise_signal``) would then test nothing.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def eight() -> pd.DataFrame:
    return hb.datasets.load("eight_schools")


@pytest.fixture(scope="session")
def eight_models(eight) -> dict[str, hb.Model]:
    return {
        p: hb.Model(EIGHT_FORMULA, eight, se="sigma", parameterization=p, priors=EIGHT_PRIORS)
        for p in ("non-centered", "centered")
    }


@pytest.fixture
def python_graphs():
    """PyTensor's Python implementations (FAST_COMPILE) for structural checks, which evaluate
    each graph a few times: no C compile per graph (about 0.45 s a module on an empty cache)."""
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield


def quiet_fit(model: hb.Model, **kwargs) -> hb.Fit:
    """Fit with few draws; the ESS/R-hat warnings that few draws provoke are not under test."""
    kwargs = {"draws": 300, "tune": 300, "chains": 2, "cores": 2, "progressbar": False, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)
        return model.fit(**kwargs)


def assert_same_draws(a: hb.Fit, b: hb.Fit, names, atol: float) -> None:
    """Two fits' draws of ``names`` agree to ``atol`` (same design and seed by two routes)."""
    for name in names:
        np.testing.assert_allclose(
            a.idata.posterior[name].values,
            b.idata.posterior[name].values,
            rtol=0,
            atol=atol,
            err_msg=name,
        )


@pytest.fixture(scope="session")
def factors_data() -> pd.DataFrame:
    """Classes (c) nested in 12 schools (b), crossed with 8 raters (d); x a row predictor, w a
    school-level one. Sorted by b, c, d, and the first class holds every rater, so the rows'
    first-appearance order of every factor is the sums' sorted order."""
    rng = np.random.default_rng(44)
    b = rng.integers(0, 12, 2400)
    c = rng.integers(0, 4, 2400)
    d = rng.integers(0, 8, 2400)
    b[:8], c[:8], d[:8] = 0, 0, np.arange(8)
    x, w = rng.normal(size=2400), rng.normal(size=12)
    y = 1.0 + 0.5 * x + 0.4 * w[b] + rng.normal(0, 0.8, 12)[b] + rng.normal(0, 0.3, 12)[b] * x
    y = y + rng.normal(0, 0.5, (12, 4))[b, c] + rng.normal(0, 0.6, 8)[d] + rng.normal(size=2400)
    frame = pd.DataFrame({"y": y, "x": x, "w": w[b], "b": [f"s{k:02d}" for k in b], "c": c, "d": d})
    return frame.sort_values(["b", "c", "d"], kind="stable").reset_index(drop=True)


def write_files(frame: pd.DataFrame, root) -> None:
    """``frame`` as Parquet (whole, and in two parts) and CSV in the folder ``root``."""
    frame.to_parquet(root / "all.parquet", index=False)
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(root / "part-1.parquet", index=False)
    frame.iloc[half:].to_parquet(root / "part-2.parquet", index=False)
    frame.to_csv(root / "all.csv", index=False)


@pytest.fixture(scope="session")
def eight_fit(eight_models) -> hb.Fit:
    """Non-centered eight schools, 4 x 2000 draws: the reference-posterior run (about 10 s)."""
    return eight_models["non-centered"].fit(
        draws=2000, tune=1000, chains=4, cores=2, random_seed=20261122, progressbar=False
    )


@pytest.fixture(scope="session")
def regression_data() -> pd.DataFrame:
    """Simulated varying-intercept data with known truth: 30 groups of 2 to 25 rows."""
    rng = np.random.default_rng(11)
    sizes = rng.integers(2, 26, size=30)
    g = np.repeat(np.arange(30), sizes)
    x = rng.normal(size=g.size)
    u = rng.normal(0, 0.8, size=30)
    y = 1.5 + 0.7 * x + u[g] + rng.normal(0, 0.5, size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k:02d}" for k in g]})


@pytest.fixture(scope="session")
def regression_fit(regression_data) -> hb.Fit:
    """y ~ x + (1 | g) on the simulated data, 2 chains x 500 draws."""
    return quiet_fit(
        hb.Model("y ~ x + (1 | g)", regression_data), draws=500, tune=500, random_seed=3
    )
