"""Simulated data of the benchmarks that are not ``simulate_hierarchical``'s shape.

NumPy and pandas only: :mod:`run` writes each data set once to the CSV file both tools read,
and :mod:`blas` fits the same Bernoulli GLMM. Every function takes the seed and ``quick``
(smaller sizes under ``--quick``, where a model has them) and returns the rows. Population
predictors are centred exactly, because Bambi centres them before sampling and puts the
intercept's prior on the centred intercept: with centred data both tools put it on the same
parameter. Group labels are zero-padded strings (``b07``), read back as strings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = [
    "SIMULATORS",
    "crossed",
    "glmm_bernoulli",
    "glmm_beta",
    "glmm_binomial",
    "glmm_crossed",
    "glmm_gamma",
    "glmm_negbin",
    "glmm_poisson",
    "glmm_student_t",
    "nested",
]


def _labels(prefix: str, n: int) -> np.ndarray:
    width = len(str(n - 1))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def _centred(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=n)
    return x - x.mean()


def _bernoulli(rng: np.random.Generator, eta: np.ndarray) -> np.ndarray:
    return (rng.random(eta.size) < 1.0 / (1.0 + np.exp(-eta))).astype(int)


def nested(
    seed: int, quick: bool = False, *, shape: tuple[int, int, int] = (10, 3, 2)
) -> pd.DataFrame:
    """``y ~ 1 + (1 | batch/cask)``: casks nested in batches, like lme4's Pastes.

    ``shape`` is (batches, casks per batch, rows per cask); Pastes is 10 x 3 x 2 with a mean
    strength of 60.05, a batch SD of 1.29, a cask-within-batch SD of 2.90 and a residual SD
    of 0.82 (lme4's REML estimates), which are the true values here. Cask labels repeat
    across batches (``a``, ``b``, ``c``), as in Pastes: only the nesting tells them apart.
    """
    n_batch, n_cask, n_rep = shape
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.29, n_batch)
    b = rng.normal(0.0, 2.90, (n_batch, n_cask))
    batch = np.repeat(np.arange(n_batch), n_cask * n_rep)
    cask = np.tile(np.repeat(np.arange(n_cask), n_rep), n_batch)
    y = 60.05 + a[batch] + b[batch, cask] + rng.normal(0.0, 0.82, batch.size)
    return pd.DataFrame(
        {"batch": _labels("b", n_batch)[batch], "cask": _labels("c", n_cask)[cask], "y": y}
    )


def nested_large(seed: int, quick: bool = False) -> pd.DataFrame:
    """The nested model at 200 batches x 5 casks x 5 rows (5,000 rows; quick: 40 x 5 x 5)."""
    return nested(seed, quick, shape=(40, 5, 5) if quick else (200, 5, 5))


def crossed(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ 1 + (1 | plate) + (1 | sample)``: 24 plates x 6 samples, one row each.

    Like lme4's Penicillin, whose REML estimates are the truth: mean diameter 22.97, plate SD
    0.85, sample SD 1.93, residual SD 0.55.
    """
    rng = np.random.default_rng(seed)
    n_plate, n_sample = 24, 6
    u = rng.normal(0.0, 0.85, n_plate)
    v = rng.normal(0.0, 1.93, n_sample)
    plate = np.repeat(np.arange(n_plate), n_sample)
    sample = np.tile(np.arange(n_sample), n_plate)
    y = 22.97 + u[plate] + v[sample] + rng.normal(0.0, 0.55, plate.size)
    return pd.DataFrame(
        {"plate": _labels("p", n_plate)[plate], "sample": _labels("s", n_sample)[sample], "y": y}
    )


def glmm_bernoulli(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ x1 + x2 + x3 + x4 + (1 | group)``, Bernoulli with a logit link.

    60 groups of 20 to 46 rows (2,000 rows in all, unbalanced), four standard normal
    predictors (centred), coefficients (0.5, -0.3, 0.2, 0.0), intercept -0.4, group SD 0.8.
    """
    rng = np.random.default_rng(seed)
    n_groups = 60
    sizes = rng.integers(20, 47, n_groups)
    sizes[-1] += 2000 - sizes.sum()  # exactly 2,000 rows
    group = np.repeat(np.arange(n_groups), sizes)
    n = group.size
    x = np.column_stack([_centred(rng, n) for _ in range(4)])
    u = rng.normal(0.0, 0.8, n_groups)
    eta = -0.4 + x @ np.array([0.5, -0.3, 0.2, 0.0]) + u[group]
    data = {"group": _labels("g", n_groups)[group]}
    data |= {f"x{k + 1}": x[:, k] for k in range(4)}
    return pd.DataFrame({**data, "y": _bernoulli(rng, eta)})


def glmm_crossed(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ anger + mode + (1 | subject) + (1 | item)``, Bernoulli: subjects x items.

    Like lme4's VerbAgg: 316 subjects each answer all 24 items (7,584 rows). ``anger`` is a
    subject-level score and ``mode`` an item-level one (both centred); intercept -0.2,
    coefficients 0.4 and -0.7, subject SD 1.3, item SD 0.6.
    """
    rng = np.random.default_rng(seed)
    n_subject, n_item = 316, 24
    anger = rng.normal(size=n_subject)
    mode = np.tile([-0.5, 0.5], n_item // 2)
    u = rng.normal(0.0, 1.3, n_subject)
    v = rng.normal(0.0, 0.6, n_item)
    subject = np.repeat(np.arange(n_subject), n_item)
    item = np.tile(np.arange(n_item), n_subject)
    a, m = anger[subject] - anger[subject].mean(), mode[item] - mode[item].mean()
    eta = -0.2 + 0.4 * a - 0.7 * m + u[subject] + v[item]
    return pd.DataFrame(
        {
            "subject": _labels("s", n_subject)[subject],
            "item": _labels("i", n_item)[item],
            "anger": a,
            "mode": m,
            "y": _bernoulli(rng, eta),
        }
    )


def glmm_poisson(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ x + (1 | brood) + (1 | location)``, Poisson with a log link.

    Like lme4's grouseticks (403 counts of ticks on grouse chicks): 400 rows, 100 broods of
    4 chicks, 25 locations of 4 broods; ``x`` (centred) is a location-level covariate such as
    altitude. Intercept log 3, coefficient -0.5, brood SD 0.6, location SD 0.8.
    """
    rng = np.random.default_rng(seed)
    n_location, broods_per, chicks = 25, 4, 4
    n_brood = n_location * broods_per
    brood = np.repeat(np.arange(n_brood), chicks)
    location = brood // broods_per
    x_loc = rng.normal(size=n_location)
    x = x_loc[location] - x_loc[location].mean()
    eta = np.log(3.0) - 0.5 * x + rng.normal(0.0, 0.6, n_brood)[brood]
    eta += rng.normal(0.0, 0.8, n_location)[location]
    return pd.DataFrame(
        {
            "brood": _labels("b", n_brood)[brood],
            "location": _labels("l", n_location)[location],
            "x": x,
            "y": rng.poisson(np.exp(eta)),
        }
    )


def _one_factor(
    rng: np.random.Generator, n_groups: int, n_per_group: int, sd: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group codes, a centred predictor x and the group effects u[group] of a one-factor
    design with ``n_per_group`` rows in each of ``n_groups`` groups."""
    group = np.repeat(np.arange(n_groups), n_per_group)
    return group, _centred(rng, group.size), rng.normal(0.0, sd, n_groups)[group]


def glmm_binomial(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ x + (1 | herd)``, binomial (logit) with ``n`` trials per row.

    Like lme4's cbpp (cases out of herd sizes, by herd), larger: 80 herds x 8 periods (640
    rows), 2 to 30 trials a row. Intercept -1, coefficient 0.5, herd SD 0.7.
    """
    rng = np.random.default_rng(seed)
    herd, x, u = _one_factor(rng, 80, 8, 0.7)
    n = rng.integers(2, 31, herd.size)
    p = 1.0 / (1.0 + np.exp(-(-1.0 + 0.5 * x + u)))
    return pd.DataFrame({"herd": _labels("h", 80)[herd], "x": x, "n": n, "y": rng.binomial(n, p)})


def glmm_negbin(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ x + (1 | group)``, negative binomial (log link, ``alpha`` 2): overdispersed
    counts, 50 groups x 16 rows (800). Intercept log 4, coefficient 0.4, group SD 0.5."""
    rng = np.random.default_rng(seed)
    group, x, u = _one_factor(rng, 50, 16, 0.5)
    mu, alpha = np.exp(np.log(4.0) + 0.4 * x + u), 2.0
    y = rng.negative_binomial(alpha, alpha / (alpha + mu))
    return pd.DataFrame({"group": _labels("g", 50)[group], "x": x, "y": y})


def glmm_gamma(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ x + (1 | group)``, gamma (log link, shape ``alpha`` 5): positive amounts, 40
    groups x 20 rows (800). Intercept log 10, coefficient 0.3, group SD 0.4."""
    rng = np.random.default_rng(seed)
    group, x, u = _one_factor(rng, 40, 20, 0.4)
    mu, alpha = np.exp(np.log(10.0) + 0.3 * x + u), 5.0
    return pd.DataFrame(
        {"group": _labels("g", 40)[group], "x": x, "y": rng.gamma(alpha, mu / alpha)}
    )


def glmm_beta(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ x + (1 | group)``, beta (logit link, precision ``phi`` 20): proportions in
    (0, 1), 40 groups x 20 rows (800). Intercept 0.3, coefficient 0.5, group SD 0.5."""
    rng = np.random.default_rng(seed)
    group, x, u = _one_factor(rng, 40, 20, 0.5)
    mu, phi = 1.0 / (1.0 + np.exp(-(0.3 + 0.5 * x + u))), 20.0
    return pd.DataFrame(
        {"group": _labels("g", 40)[group], "x": x, "y": rng.beta(mu * phi, (1.0 - mu) * phi)}
    )


def glmm_student_t(seed: int, quick: bool = False) -> pd.DataFrame:
    """``y ~ x + (1 | group)``, Student-t (identity link, ``sigma`` 1, ``nu`` 4): heavy-tailed
    residuals, 40 groups x 20 rows (800). Intercept 1, coefficient 0.5, group SD 0.8."""
    rng = np.random.default_rng(seed)
    group, x, u = _one_factor(rng, 40, 20, 0.8)
    y = 1.0 + 0.5 * x + u + rng.standard_t(4.0, group.size)
    return pd.DataFrame({"group": _labels("g", 40)[group], "x": x, "y": y})


#: Benchmark name -> its simulator.
SIMULATORS: dict[str, Callable[..., pd.DataFrame]] = {
    "nested": nested,
    "nested_large": nested_large,
    "crossed": crossed,
    "glmm_bernoulli": glmm_bernoulli,
    "glmm_crossed": glmm_crossed,
    "glmm_poisson": glmm_poisson,
    "glmm_binomial": glmm_binomial,
    "glmm_negbin": glmm_negbin,
    "glmm_gamma": glmm_gamma,
    "glmm_beta": glmm_beta,
    "glmm_student_t": glmm_student_t,
}
