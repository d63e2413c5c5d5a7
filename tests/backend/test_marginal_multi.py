"""Marginalisation with more than one grouping factor: nested and crossed Gaussian models.

Structural tests (no sampling) check the marginal log-likelihood against the dense
multivariate normal and the exact draws against the dense Gaussian conditional; the workflow
tests fit small models with few draws; the agreement tests compare the marginal and the
non-centered posteriors of the scalar parameters.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.linalg import block_diag
from scipy.stats import multivariate_normal

import hierbayes as hb
from hierbayes.backend.marginal_draws import draw_crossed_effects, draw_nested_effects
from hierbayes.backend.marginal_multi import (
    crossed_loglik,
    crossed_stats,
    marginal_layout,
    nested_loglik,
    nested_stats,
)
from hierbayes.backend.plan import plan

from .conftest import mcse_distance

#: The log-likelihoods agree with the dense multivariate normal to this (relative).
RTOL = 1e-10


def quiet_model(formula: str, data: pd.DataFrame, **kwargs) -> hb.Model:
    """A model whose few-groups warnings are not under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.IdentifiabilityWarning)
        return hb.Model(formula, data, **kwargs)


def nested_data(seed: int, n_outer: int = 5) -> pd.DataFrame:
    """Unbalanced nesting: 1 to 4 casks per batch, 1 to 4 rows per cask; a row-level x,
    known SEs s, and a cask label unique across batches (``cask_id``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_outer):
        for c in range(rng.integers(1, 5)):
            for _ in range(rng.integers(1, 5)):
                rows.append((f"b{b}", f"c{c}", f"b{b}c{c}"))
    df = pd.DataFrame(rows, columns=["batch", "cask", "cask_id"])
    df["x"] = rng.normal(size=len(df))
    df["y"] = rng.normal(size=len(df)) + df["x"]
    df["s"] = rng.uniform(0.5, 1.5, len(df))
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # rows unordered


def crossed_data(seed: int) -> pd.DataFrame:
    """Plates and samples crossed, some cells empty and some repeated; a third factor day."""
    rng = np.random.default_rng(seed)
    cells = [(p, s) for p in range(4) for s in range(7) if rng.random() < 0.7]
    rows = [cell for cell in cells for _ in range(rng.integers(1, 3))]
    df = pd.DataFrame(rows, columns=["plate", "sample"]).astype(str)
    df["plate"] = "p" + df["plate"]
    df["sample"] = "s" + df["sample"]
    df["day"] = [f"d{v}" for v in rng.integers(0, 3, len(df))]
    df["x"] = rng.normal(size=len(df))
    df["y"] = rng.normal(size=len(df)) + df["x"]
    df["s"] = rng.uniform(0.5, 1.5, len(df))
    return df


def random_factor(rng: np.random.Generator, f) -> np.ndarray:
    """A random lower Cholesky factor for factor f's effects (diagonal when uncorrelated)."""
    q = f.Z.shape[1]
    L = np.tril(rng.normal(0, 0.5, (q, q)))
    L[np.diag_indices(q)] = rng.uniform(0.2, 1.5, q)
    return L if f.correlated else np.diag(np.diag(L))


def dense_z(f) -> np.ndarray:
    """The N x (J q) design of factor f's effects (columns group-major)."""
    Z = np.zeros((len(f.codes), f.n_groups * f.Z.shape[1]))
    q = f.Z.shape[1]
    for k in range(q):
        Z[np.arange(len(f.codes)), f.codes * q + k] = f.Z[:, k]
    return Z


def residual_cov(d, sigma) -> np.ndarray:
    return np.diag(d.se**2) if sigma is None else sigma**2 * np.eye(d.n_obs)


class Compiled:
    """The marginal log-likelihood and its gradient as one compiled function of the
    parameters: beta, one L per factor and sigma (or the sampled effects, crossed)."""

    def __init__(self, design, loglik, n_inputs):
        self.beta = pt.vector("beta")
        self.Ls = [pt.matrix(f"L{i}") for i in range(n_inputs)]
        self.sigma = pt.scalar("sigma")
        self.known_se = design.se is not None
        self.extra: list = []
        value = loglik(self, None if self.known_se else self.sigma)
        inputs = [self.beta, *self.Ls, *self.extra] + ([] if self.known_se else [self.sigma])
        wrt = [self.beta, *self.Ls, *self.extra] + ([] if self.known_se else [self.sigma])
        # FAST_COMPILE: little rewriting and no C code; these checks are about the numbers
        outputs = [value, *pytensor.grad(value, wrt)]
        self.fn = pytensor.function(inputs, outputs, mode="FAST_COMPILE")

    def __call__(self, beta, Ls, sigma, extra=()):
        args = [beta, *Ls, *extra] + ([] if self.known_se else [sigma])
        value, *grads = self.fn(*args)
        return float(value), grads


NESTED_FORMULAS = [
    "y ~ 1 + (1 | batch/cask)",
    "y ~ x + (x | batch/cask)",
    "y ~ x + (x || batch) + (1 | batch:cask)",
    "y ~ x + (1 | batch) + (x | batch:cask)",
    "y ~ 0 + x + (x | batch) + (x || cask_id)",
]


@pytest.mark.parametrize("se", [None, "s"])
@pytest.mark.parametrize("formula", NESTED_FORMULAS)
def test_nested_loglik_equals_dense_gaussian(formula, se):
    df = nested_data(seed=len(formula))
    d = quiet_model(formula, df, se=se, parameterization="marginal").design
    layout = marginal_layout(d)
    assert layout.kind == "nested"
    outer, inner = (next(f for f in d.factors if f.name == n) for n in layout.marginal)
    stats = nested_stats(d)
    fn = Compiled(d, lambda c, s: nested_loglik(stats, c.beta, c.Ls[0], c.Ls[1], s), 2)
    Z = np.hstack([dense_z(outer), dense_z(inner)])
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(4):
        beta = rng.normal(size=len(d.fixed_names))
        L1, L2 = random_factor(rng, outer), random_factor(rng, inner)
        sigma = float(rng.uniform(0.3, 2.0))
        T = block_diag(*[L1 @ L1.T] * outer.n_groups, *[L2 @ L2.T] * inner.n_groups)
        cov = Z @ T @ Z.T + residual_cov(d, None if se else sigma)
        expected = multivariate_normal(d.X @ beta, cov).logpdf(d.y)
        value, grads = fn(beta, [L1, L2], sigma)
        np.testing.assert_allclose(value, expected, rtol=RTOL)
        worst = max(worst, abs(value - expected))
        assert all(np.all(np.isfinite(g)) for g in grads)
    print(f"nested {formula!r} se={se}: max |logp - dense| = {worst:.2e}")


CROSSED_FORMULAS = [
    "y ~ 1 + (1 | plate) + (1 | sample)",
    "y ~ x + (x | sample) + (1 | plate)",
    "y ~ x + (1 | sample) + (x || plate)",
    "y ~ 1 + (1 | plate) + (1 | sample) + (1 | day)",
]


@pytest.mark.parametrize("se", [None, "s"])
@pytest.mark.parametrize("formula", CROSSED_FORMULAS)
def test_crossed_loglik_equals_dense_gaussian(formula, se):
    """Given the sampled factors' effects u_o: N(y; X beta + Z_o u_o, Z_f T Z_f' + R)."""
    df = crossed_data(seed=len(formula))
    d = quiet_model(formula, df, se=se, parameterization="marginal").design
    layout = marginal_layout(d)
    assert layout.kind == "crossed" and layout.marginal == ("sample",)
    f = next(f for f in d.factors if f.name == "sample")
    others = [next(o for o in d.factors if o.name == n) for n in layout.sampled]
    stats = crossed_stats(d)
    # one cell per distinct combination of groups: never more than the rows
    joint = pd.DataFrame(np.column_stack([f.codes] + [o.codes for o in others]))
    assert len(stats.cell_group) == len(joint.drop_duplicates()) <= d.n_obs

    def loglik(c, s):
        c.extra = [pt.matrix(f"u{i}") for i in range(len(others))]
        return crossed_loglik(stats, c.beta, c.Ls[0], c.extra, s)

    fn = Compiled(d, loglik, 1)
    rng = np.random.default_rng(8)
    worst = 0.0
    for _ in range(4):
        beta = rng.normal(size=len(d.fixed_names))
        L = random_factor(rng, f)
        u = [rng.normal(size=(o.n_groups, o.Z.shape[1])) for o in others]
        sigma = float(rng.uniform(0.3, 2.0))
        offset = sum(
            np.einsum("nq,nq->n", uo[o.codes], o.Z) for uo, o in zip(u, others, strict=True)
        )
        Zf = dense_z(f)
        cov = Zf @ block_diag(*[L @ L.T] * f.n_groups) @ Zf.T + residual_cov(
            d, None if se else sigma
        )
        expected = multivariate_normal(d.X @ beta + offset, cov).logpdf(d.y)
        value, grads = fn(beta, [L], sigma, u)
        np.testing.assert_allclose(value, expected, rtol=RTOL)
        worst = max(worst, abs(value - expected))
        assert all(np.all(np.isfinite(g)) for g in grads)
    print(f"crossed {formula!r} se={se}: max |logp - dense| = {worst:.2e}")


def dense_conditional(Z, T, R, r):
    """Mean and covariance of u | y for y = Z u + e, u ~ N(0, T), e ~ N(0, R), r = y - mean."""
    Rinv = np.linalg.inv(R)
    cov = np.linalg.inv(np.linalg.inv(T) + Z.T @ Rinv @ Z)
    return cov @ Z.T @ Rinv @ r, cov


def check_moments(draws, mean, cov, S):
    """Moments of S exact draws: the mean within 5 Monte Carlo SEs, the covariance within
    6 of its SEs (sqrt((c_aa c_bb + c_ab^2) / S))."""
    sd = np.sqrt(np.diag(cov))
    z_mean = (draws.mean(axis=0) - mean) / (sd / np.sqrt(S))
    np.testing.assert_array_less(np.abs(z_mean), 5.0)
    se_cov = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / S)
    np.testing.assert_array_less(np.abs(np.cov(draws.T) - cov) / se_cov, 6.0)
    return float(np.abs(z_mean).max())


@pytest.mark.parametrize("se", [None, "s"])
def test_nested_draws_match_the_exact_conditional(se):
    """Joint moments of (u_outer, u_inner) over 40000 draws against the dense posterior."""
    d = quiet_model(
        "y ~ x + (x | batch/cask)", nested_data(3, n_outer=3), se=se, parameterization="marginal"
    ).design
    outer, inner = d.factors
    rng = np.random.default_rng(9)
    beta = np.array([0.3, 0.8])
    L1, L2 = random_factor(rng, outer), random_factor(rng, inner)
    sigma = 0.7
    S = 40_000
    u1, u2 = draw_nested_effects(
        nested_stats(d),
        np.tile(beta, (S, 1)),
        np.tile(L1, (S, 1, 1)),
        np.tile(L2, (S, 1, 1)),
        None if se else np.full(S, sigma),
        np.random.default_rng(10),
    )
    Z = np.hstack([dense_z(outer), dense_z(inner)])
    T = block_diag(*[L1 @ L1.T] * outer.n_groups, *[L2 @ L2.T] * inner.n_groups)
    R = residual_cov(d, None if se else sigma)
    mean, cov = dense_conditional(Z, T, R, d.y - d.X @ beta)
    draws = np.hstack([u1.reshape(S, -1), u2.reshape(S, -1)])  # group-major, as dense_z
    worst = check_moments(draws, mean, cov, S)
    print(f"nested draws se={se}: max |mean - exact| = {worst:.1f} Monte Carlo SEs")


def test_crossed_draws_match_the_exact_conditional():
    d = quiet_model(
        "y ~ x + (x | sample) + (1 | plate)", crossed_data(4), parameterization="marginal"
    ).design
    sample, plate = d.factors
    rng = np.random.default_rng(11)
    beta = np.array([-0.2, 0.5])
    L = random_factor(rng, sample)
    u_plate = rng.normal(size=(plate.n_groups, 1))
    sigma = 0.6
    S = 40_000
    u = draw_crossed_effects(
        crossed_stats(d),
        np.tile(beta, (S, 1)),
        np.tile(L, (S, 1, 1)),
        [np.tile(u_plate, (S, 1, 1))],
        np.full(S, sigma),
        np.random.default_rng(12),
    )
    r = d.y - d.X @ beta - u_plate[plate.codes, 0]
    T = block_diag(*[L @ L.T] * sample.n_groups)
    mean, cov = dense_conditional(dense_z(sample), T, residual_cov(d, sigma), r)
    worst = check_moments(u.reshape(S, -1), mean, cov, S)
    print(f"crossed draws: max |mean - exact| = {worst:.1f} Monte Carlo SEs")


def test_layouts_and_plans():
    nested = quiet_model("y ~ 1 + (1 | batch/cask)", nested_data(1)).design
    assert plan(nested, "auto").forms == {"batch": "marginal", "batch:cask": "marginal"}
    assert plan(nested, "auto").describe() == "auto: batch marginal; batch:cask marginal"
    assert plan(nested, "marginal").describe() == "marginal"
    crossed = quiet_model("y ~ 1 + (1 | plate) + (1 | sample)", crossed_data(1)).design
    p = plan(crossed, "auto")
    assert p.marginal and p.forms == {"plate": "non-centered", "sample": "marginal"}
    assert p.describe() == "auto: plate non-centered; sample marginal"
    assert plan(crossed, "marginal").describe() == "marginal: plate non-centered; sample marginal"
    # the factor with the most groups is integrated out, whatever its place in the formula
    assert marginal_layout(
        quiet_model("y ~ 1 + (1 | sample) + (1 | plate)", crossed_data(1)).design
    ).marginal == ("sample",)


def test_multi_factor_marginal_refused_with_a_sigma_formula():
    df = nested_data(2)
    with pytest.raises(hb.SpecError, match="only with one grouping factor"):
        quiet_model(
            "y ~ x + (1 | batch/cask)", df, sigma="~ (1 | batch)", parameterization="marginal"
        )
    m = quiet_model("y ~ x + (1 | batch/cask)", df, sigma="~ (1 | batch)")
    assert "marginal" not in m.plan.describe()


@pytest.mark.usefixtures("python_graphs")  # structural: no C compile (tests/conftest.py)
def test_crossed_graph_samples_the_other_factors_non_centered():
    model = quiet_model("y ~ x + (1 | plate) + (x | sample)", crossed_data(5))
    pm_model = model.build()
    names = sorted(v.name for v in pm_model.free_RVs)
    assert names == sorted(
        ["Intercept", "x", "sd_plate", "z_plate", "sd_sample", "cpc_sample", "sigma"]
    )
    assert pm_model.named_vars_to_dims["u_plate"] == ("plate", "plate_term")
    assert "u_sample" not in pm_model.named_vars
    point = pm_model.initial_point()
    assert np.isfinite(pm_model.compile_logp()(point))
    assert np.all(np.isfinite(pm_model.compile_dlogp()(point)))


# ---- workflow and agreement: small simulated models, fitted marginal and non-centered ----


def simulated_nested(seed: int = 21) -> pd.DataFrame:
    """8 batches x 3 casks x 3 rows: Intercept 2, sd_batch 1, sd_cask 0.6, sigma 0.5."""
    rng = np.random.default_rng(seed)
    batch = np.repeat(np.arange(8), 9)
    cask = np.tile(np.repeat(np.arange(3), 3), 8)
    u = rng.normal(0, 1.0, 8)[batch] + rng.normal(0, 0.6, 24)[batch * 3 + cask]
    return pd.DataFrame(
        {
            "y": 2.0 + u + rng.normal(0, 0.5, batch.size),
            "batch": [f"b{v}" for v in batch],
            "cask": [f"c{v}" for v in cask],
        }
    )


def simulated_crossed(seed: int = 22) -> pd.DataFrame:
    """6 plates x 10 samples, one row each: Intercept 1, sd_plate 0.8, sd_sample 1.2,
    sigma 0.5."""
    rng = np.random.default_rng(seed)
    plate, sample = np.repeat(np.arange(6), 10), np.tile(np.arange(10), 6)
    u = rng.normal(0, 0.8, 6)[plate] + rng.normal(0, 1.2, 10)[sample]
    return pd.DataFrame(
        {
            "y": 1.0 + u + rng.normal(0, 0.5, plate.size),
            "plate": [f"p{v}" for v in plate],
            "sample": [f"s{v}" for v in sample],
        }
    )


CASES = {
    "nested": (
        "y ~ 1 + (1 | batch/cask)",
        simulated_nested,
        ["Intercept", "sd_batch", "sd_batch:cask", "sigma"],
    ),
    "crossed": (
        "y ~ 1 + (1 | plate) + (1 | sample)",
        simulated_crossed,
        ["Intercept", "sd_plate", "sd_sample", "sigma"],
    ),
}


def fit_pair(case: str, draws: int, chains: int, seed: int) -> dict[str, hb.Fit]:
    from ..conftest import quiet_fit

    formula, simulate, _ = CASES[case]
    df = simulate()
    fits = {}
    for p in ("auto", "non-centered"):
        model = hb.Model(formula, df, parameterization=p)
        fits[p] = quiet_fit(model, draws=draws, tune=draws, chains=chains, random_seed=seed)
    return fits


# nested in the slow tier (about 23 s); test_marginal_and_non_centered_agree checks both there
@pytest.fixture(scope="module", params=[pytest.param("nested", marks=pytest.mark.slow), "crossed"])
def light_fits(request) -> tuple[str, dict[str, hb.Fit]]:
    """Each model fitted once, marginal (auto) and non-centered: 2 chains x 400 draws."""
    return request.param, fit_pair(request.param, draws=400, chains=2, seed=5)


def test_auto_fit_completes_the_posterior_as_non_centered(light_fits):
    case, fits = light_fits
    marginal, other = fits["auto"], fits["non-centered"]
    expected = {
        "nested": "auto: batch marginal; batch:cask marginal",
        "crossed": "auto: plate centered; sample marginal",
    }[case]
    assert marginal.model.plan.describe() == expected
    assert marginal.idata.attrs["parameterization_used"] == expected
    for f in marginal.model.design.factors:
        for prefix in ("u_", "b_"):
            a, b = marginal.idata.posterior[prefix + f.name], other.idata.posterior[prefix + f.name]
            assert a.dims == b.dims
            for dim in a.dims[2:]:
                assert list(a[dim].values) == list(b[dim].values)
            assert np.all(np.isfinite(a.values))
    ll = marginal.idata.log_likelihood["y"]
    assert ll.shape == other.idata.log_likelihood["y"].shape and np.all(np.isfinite(ll.values))
    # what reads the completed posterior: reports and predictions for the fitted rows
    table = marginal.pooling(empirical_bayes=False).table
    assert set(table["factor"]) == {f.name for f in marginal.model.design.factors}
    rows = marginal.model.data.head(5)
    mu, mu_other = marginal.predict(rows), other.predict(rows)
    assert mu.dims == ("chain", "draw", "obs") and mu.shape == mu_other.shape
    np.testing.assert_allclose(
        mu.mean(("chain", "draw")), mu_other.mean(("chain", "draw")), atol=0.3
    )


def test_marginal_and_non_centered_agree_light(light_fits):
    case, fits = light_fits
    z = mcse_distance(fits["auto"].idata, fits["non-centered"].idata, CASES[case][2])
    print(f"{case} (2 x 400): |diff| / MCSE", {k: round(float(v), 2) for k, v in z.items()})
    assert max(z.values()) < 4.0


@pytest.mark.slow
@pytest.mark.parametrize("case", ["nested", "crossed"])
def test_marginal_and_non_centered_agree(case):
    fits = fit_pair(case, draws=1500, chains=4, seed=6)
    z = mcse_distance(fits["auto"].idata, fits["non-centered"].idata, CASES[case][2])
    print(f"{case} (4 x 1500): |diff| / MCSE", {k: round(float(v), 2) for k, v in z.items()})
    assert max(z.values()) < 4.0


@pytest.mark.parametrize(
    "formula",
    ["y ~ x + w + (1 | b/c)", "y ~ x + w + (x | b) + (1 | d)"],
)
def test_per_cell_sums_give_the_statistics_plan_and_density_of_the_rows(factors_data, formula):
    """A design of per-cell sums (data in DuckDB): the nested or crossed statistics, the
    auto plan (reliabilities from the sums) and the model's log density and gradient at
    random points are the rows' (same factor orders: the fixture's rows are sorted)."""
    import duckdb

    from hierbayes.backend.plan import reliability

    rows = hb.Model(formula, factors_data)
    sums = hb.Model(formula, duckdb.connect().from_df(factors_data))
    assert sums.design.sums is not None and sums.design.sums.cells is not None
    kind = marginal_layout(rows.design).kind
    assert marginal_layout(sums.design) == marginal_layout(rows.design)
    stats = nested_stats if kind == "nested" else crossed_stats
    a, b = stats(sums.design), stats(rows.design)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if name in ("inner", "marg"):
            x, y = (
                [x.ZtZ, x.ZtX, x.Zty, x.XtX, x.Xty, x.yty],
                [y.ZtZ, y.ZtX, y.Zty, y.XtX, y.Xty, y.yty],
            )
        elif name in ("cell_group", "cell_codes", "ZZo", "ZoZo"):  # cells in another order
            continue
        for u, v in zip(
            np.atleast_1d(x) if not isinstance(x, (list, tuple)) else x,
            np.atleast_1d(y) if not isinstance(y, (list, tuple)) else y,
            strict=True,
        ):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-9, err_msg=name)
    for f, r in zip(sums.design.factors, rows.design.factors, strict=True):
        np.testing.assert_allclose(
            reliability(sums.design, f)[0], reliability(rows.design, r)[0], rtol=1e-9
        )
    assert sums.plan.describe() == rows.plan.describe()
    assert sums.plan.sampled.keys() == rows.plan.sampled.keys()
    for name, centered in sums.plan.sampled.items():
        np.testing.assert_array_equal(centered, rows.plan.sampled[name])
    graph_s, graph_r = sums.build(), rows.build()
    logp_s, logp_r = graph_s.compile_logp(), graph_r.compile_logp()
    dlogp_s, dlogp_r = graph_s.compile_dlogp(), graph_r.compile_dlogp()
    rng = np.random.default_rng(3)
    start = graph_r.initial_point()
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in start.items()}
        np.testing.assert_allclose(logp_s(point), logp_r(point), rtol=1e-12)
        np.testing.assert_allclose(dlogp_s(point), dlogp_r(point), rtol=1e-9, atol=1e-8)
