"""The data sets shipped in ``data/``, loaded as pandas DataFrames.

The files live once, in the repository's ``data/`` folder; a built wheel carries them as
``hierbayes/data`` (see ``pyproject.toml``). :func:`resource_path` finds either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hierbayes.errors import SpecError, unknown_name

__all__ = [
    "DATASETS",
    "Simulated",
    "load",
    "resource_path",
    "simulate_hierarchical",
    "simulate_noise_groups",
    "simulate_parquet",
]

#: Name -> (file, pandas.read_csv keyword arguments).
DATASETS: dict[str, tuple[str, dict]] = {
    "eight_schools": ("eight_schools.csv", {"dtype": {"school": str}}),
    "exam": ("exam.csv", {}),
    "grouseticks": (
        "grouseticks.csv",
        {"dtype": {"INDEX": str, "BROOD": str, "YEAR": str, "LOCATION": str}},
    ),
    "penicillin": ("penicillin.csv", {"dtype": {"plate": str, "sample": str}}),
    "wine": ("wine.csv", {"dtype": {"bottle": str, "judge": str}}),
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
    package = Path(__file__).resolve().parent.parent  # hierbayes/, from hierbayes/api/
    for base in (package / folder, package.parent / folder):
        if base.is_dir():
            return base / name if name else base
    raise FileNotFoundError(f"hierbayes cannot find its {folder!r} folder near {package}")


def load(name: str) -> pd.DataFrame:
    """Load a shipped data set by name (see ``data/README.md`` for provenance).

    Parameters
    ----------
    name : {"eight_schools", "exam", "grouseticks", "penicillin", "wine"}

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


@dataclass(frozen=True)
class Simulated:
    """Simulated data and the truth behind it (see :func:`simulate_hierarchical`).

    ``truth`` maps parameter names, spelt as in the posterior (``Intercept``, ``x``,
    ``sd_group`` as ``(intercept, slope)``, ``corr_group``, ``sigma``), to their true values;
    ``effects`` holds each group's true coefficients ``b_j`` (columns ``Intercept``, ``x``).
    """

    data: pd.DataFrame
    truth: dict = field(default_factory=dict)
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)


def simulate_hierarchical(
    n_groups: int = 50,
    n_per_group: int | Sequence[int] = 20,
    *,
    family: str = "gaussian",
    intercept: float = 0.5,
    slope: float = 1.0,
    sd_intercept: float = 0.8,
    sd_slope: float = 0.4,
    corr: float = 0.3,
    sigma: float = 1.0,
    seed: int,
) -> Simulated:
    """Varying intercepts and slopes with known truth, for benchmarks and recovery checks.

    For group j and row i, ``x_i ~ Normal(0, 1)``,
    ``(b0_j, b1_j) ~ MvNormal((intercept, slope), T)`` with SDs ``sd_intercept``,
    ``sd_slope`` and correlation ``corr``, ``eta_i = b0_j + b1_j x_i``, and
    ``y_i ~ Normal(eta_i, sigma)`` (``family="gaussian"``) or
    ``y_i ~ Bernoulli(logit^-1(eta_i))`` (``family="bernoulli"``). The matching model is
    ``y ~ x + (x | group)``.

    Parameters
    ----------
    n_groups : int
        Number of groups (at least 2).
    n_per_group : int or sequence of int
        Rows per group (each at least 1); a sequence gives unbalanced groups.
    family : {"gaussian", "bernoulli"}
    intercept, slope : float
        Population-level coefficients.
    sd_intercept, sd_slope : float
        Group-level SDs (>= 0).
    corr : float
        Correlation of a group's intercept and slope, in (-1, 1).
    sigma : float
        Residual SD (gaussian only, > 0).
    seed : int
        Seed of the NumPy generator; the same seed gives the same data.

    Examples
    --------
    >>> sim = simulate_hierarchical(n_groups=4, n_per_group=3, seed=1)
    >>> sim.data.shape, sim.data["group"].nunique(), sim.truth["Intercept"]
    ((12, 3), 4, 0.5)
    >>> sim.effects.shape
    (4, 2)
    """
    sizes = np.broadcast_to(np.asarray(n_per_group, dtype=int), (n_groups,))
    if n_groups < 2 or np.any(sizes < 1):
        raise SpecError("simulate_hierarchical needs n_groups >= 2 and n_per_group >= 1")
    if family not in ("gaussian", "bernoulli"):
        raise SpecError(unknown_name("family", str(family), ["bernoulli", "gaussian"]))
    if sd_intercept < 0 or sd_slope < 0 or not -1 < corr < 1 or not sigma > 0:
        raise SpecError(
            "simulate_hierarchical needs sd_intercept, sd_slope >= 0, -1 < corr < 1, sigma > 0"
        )
    rng = np.random.default_rng(seed)
    sd = np.array([sd_intercept, sd_slope], dtype=float)
    cov = np.outer(sd, sd) * np.array([[1.0, corr], [corr, 1.0]])
    b = rng.multivariate_normal([intercept, slope], cov, size=n_groups, method="cholesky")
    codes = np.repeat(np.arange(n_groups), sizes)
    x = rng.normal(size=codes.size)
    eta = b[codes, 0] + b[codes, 1] * x
    if family == "gaussian":
        y = eta + rng.normal(0.0, sigma, size=codes.size)
    else:
        y = (rng.random(codes.size) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    width = len(str(n_groups - 1))
    labels = np.array([f"g{k:0{width}d}" for k in range(n_groups)], dtype=object)
    data = pd.DataFrame({"group": labels[codes], "x": x, "y": y})
    truth = {
        "Intercept": intercept,
        "x": slope,
        "sd_group": (sd_intercept, sd_slope),
        "corr_group": corr,
    }
    if family == "gaussian":
        truth["sigma"] = sigma
    effects = pd.DataFrame(b, columns=["Intercept", "x"], index=pd.Index(labels, name="group"))
    return Simulated(data=data, truth=truth, effects=effects)


def _uniform(expr: str, seed: int, stream: int) -> str:
    """SQL of a uniform (0, 1) number: the 64-bit hash of a distinct integer for each
    ``expr`` (< 10^12), ``seed`` and ``stream`` (< 64). (DuckDB's two-argument hash is no
    good here: ``hash(i, 10)`` and ``hash(i, 11)`` correlate at 0.98.)"""
    key = f"(({expr}) + {int(seed)} * 1000000000000) * 64 + {int(stream)}"
    return f"((hash({key}) >> 11)::DOUBLE + 0.5) / 9007199254740992.0"


def _normal(expr: str, seed: int, stream: int) -> str:
    """SQL of a standard normal number (Box-Muller) from streams ``stream``, ``stream + 1``."""
    u1, u2 = _uniform(expr, seed, stream), _uniform(expr, seed, stream + 1)
    return f"sqrt(-2.0 * ln({u1})) * cos(2.0 * pi() * {u2})"


def simulate_parquet(
    path: str | Path,
    rows: int,
    groups: int = 10_000,
    *,
    seed: int,
    family: str = "gaussian",
    crossed: int = 0,
) -> dict:
    """Write grouped data with known truth to a Parquet file with DuckDB, rows never in
    Python; returns the truth.

    For row i (0..rows-1) in group ``g = i mod groups``:

    * ``family="gaussian"``: ``y = 1 + 0.5 x + u0_g + u1_g x + e`` with ``x`` and ``e``
      standard normal and ``(u0_g, u1_g)`` normal with SDs 1 and 0.3 and correlation 0.4;
      the model is ``y ~ x + (x | g)``; 10^8 rows take 1.7 GiB;
    * ``family="bernoulli"``: a three-level predictor ``k`` (0, 1, 2 equally often) and
      ``y ~ Bernoulli(logit^-1(-0.5 + 0.8 [k = 1] - 0.6 [k = 2] + u0_g))``, ``u0_g`` normal
      with SD 1; the model is ``y ~ C(k) + (1 | g)``, whose 10^8 rows are at most 6 groups'
      worth of distinct rows per group;
    * ``family="poisson"``: the same ``k``, an exposure ``t`` uniform on (0.5, 2.5), and
      ``y ~ Poisson(t exp(-0.5 + 0.8 [k = 1] - 0.6 [k = 2] + u0_g))``, ``u0_g`` normal with
      SD 0.5; the model is ``y ~ C(k) + offset(np.log(t)) + (1 | g)``, whose rows are all
      distinct but sum into at most 3 cells per group.

    ``crossed=H`` (gaussian) adds a second grouping column ``h``, crossed with ``g``: row i's
    ``h`` is a hash of i modulo H, and its effect ``v_h``, normal with SD 0.5, is added to
    ``y``; the model is ``y ~ x + (x | g) + (1 | h)``.

    Every number is a function of the row (or group) number and ``seed`` through DuckDB's
    64-bit hash, so the same arguments write the same file on any machine, whatever DuckDB's
    thread count (the group effects share row 0..J-1's numbers with other streams:
    independent hashes).

    Examples
    --------
    >>> import duckdb, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "small.parquet")
    >>> truth = simulate_parquet(path, rows=1000, groups=10, seed=1)
    >>> duckdb.sql(f"SELECT count(*), count(DISTINCT g) FROM '{path}'").fetchall(), truth["x"]
    ([(1000, 10)], 0.5)
    >>> crossed = os.path.join(tempfile.mkdtemp(), "crossed.parquet")
    >>> simulate_parquet(crossed, rows=1000, groups=10, seed=1, crossed=5)["sd_h"]
    0.5
    >>> duckdb.sql(f"SELECT count(DISTINCT h), count(DISTINCT (g, h)) FROM '{crossed}'").fetchall()
    [(5, 50)]
    """
    import duckdb

    if rows < 2 * groups or groups < 2 or not 0 <= seed < 100_000 or rows >= 10**12:
        raise SpecError(
            "simulate_parquet needs groups >= 2, at least 2 rows per group, fewer than 10^12 "
            "rows and 0 <= seed < 100000"
        )
    effects = f"""SELECT range AS g, {_normal("range", seed, 0)} AS z0,
                         {_normal("range", seed, 2)} AS z1 FROM range({int(groups)})"""
    if crossed and (family != "gaussian" or crossed < 2):
        raise SpecError("simulate_parquet's crossed= needs the gaussian family and >= 2 groups")
    if family == "gaussian":
        h, v, join = "", "", ""
        if crossed:
            h = f", (hash(range * 64 + 10) % {int(crossed)})::INTEGER AS h"
            v = " + 0.5 * v.zh"
            join = f"""JOIN (SELECT range AS h, {_normal("range", seed, 12)} AS zh
                             FROM range({int(crossed)})) v USING (h)"""
        rows_sql = f"""SELECT range % {int(groups)} AS g, {_normal("range", seed, 4)} AS x,
                              {_normal("range", seed, 6)} AS e{h} FROM range({int(rows)})"""
        columns = f"""{"r.h, " if crossed else ""}r.x,
                     1.0 + 0.5 * r.x + z0 + 0.3 * (0.4 * z0 + sqrt(0.84) * z1) * r.x + r.e{v}
                     AS y"""
        truth = {"Intercept": 1.0, "x": 0.5, "sd_Intercept": 1.0, "sd_x": 0.3, "corr": 0.4}
        truth["sigma"] = 1.0
        if crossed:
            truth["sd_h"] = 0.5
    elif family == "bernoulli":
        u = _uniform("range", seed, 8)
        rows_sql = f"""SELECT range % {int(groups)} AS g, (hash(range * 64 + 9) % 3)::INTEGER
                              AS k, {u} AS u FROM range({int(rows)})"""
        eta = "-0.5 + 0.8 * (r.k = 1)::INTEGER - 0.6 * (r.k = 2)::INTEGER + z0"
        columns = f"r.k, (r.u < 1.0 / (1.0 + exp(-({eta}))))::INTEGER AS y"
        truth = {"Intercept": -0.5, "C(k)[1]": 0.8, "C(k)[2]": -0.6, "sd_Intercept": 1.0}
    elif family == "poisson":
        rows_sql = f"""SELECT range % {int(groups)} AS g, (hash(range * 64 + 9) % 3)::INTEGER
                              AS k, 0.5 + 2.0 * {_uniform("range", seed, 15)} AS t,
                              {_uniform("range", seed, 14)} AS u FROM range({int(rows)})"""
        eta = "-0.5 + 0.8 * (r.k = 1)::INTEGER - 0.6 * (r.k = 2)::INTEGER + 0.5 * z0"
        columns = f"r.k, r.t, r.u, r.t * exp({eta}) AS mu"
        truth = {"Intercept": -0.5, "C(k)[1]": 0.8, "C(k)[2]": -0.6, "sd_Intercept": 0.5}
    else:
        raise SpecError(unknown_name("family", str(family), ["bernoulli", "gaussian", "poisson"]))
    select = f"""SELECT r.g::INTEGER AS g, {columns} FROM ({rows_sql}) r JOIN ({effects}) USING (g)
                 {join if family == "gaussian" else ""}"""
    if family == "poisson":
        select = _poisson_count(select)
    duckdb.connect().execute(
        f"COPY ({select}) TO '{Path(path)}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"
    )
    return truth


def _poisson_count(select: str, top: int = 80) -> str:
    """SQL of ``select``'s rows g, k, t with a Poisson(mu) count y from their columns mu and
    u (uniform), by inversion: y = #{j: F(j) < u}, the Poisson CDF F(j) built term by term,
    p_j = p_(j-1) mu / j, one nested select per term (one select list would inline every
    alias into the next, which takes DuckDB a minute to plan). Counts above ``top`` are cut
    to ``top``: for mu <= 25 that has probability below 10^-10."""
    sql = f"SELECT g, k, t, u, mu, exp(-mu) AS p, exp(-mu) AS f, 0 AS y FROM ({select})"
    for j in range(1, top + 1):
        sql = (
            f"SELECT g, k, t, u, mu, p * mu / {j} AS p, f + p * mu / {j} AS f, "
            f"y + (u > f)::INTEGER AS y FROM ({sql})"
        )
    return f"SELECT g, k, t, y FROM ({sql})"
