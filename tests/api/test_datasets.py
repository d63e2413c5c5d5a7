"""The data hierbayes writes for its benchmarks (hb.datasets.simulate_parquet): its Poisson
counts are Poisson draws, exactly."""

from __future__ import annotations

import duckdb
import numpy as np
from scipy import stats

import hierbayes as hb
from hierbayes.api.datasets import _poisson_count, _uniform


def test_poisson_counts_are_the_inverse_cdf_of_their_uniforms():
    """Each count is scipy's Poisson quantile of the row's uniform, for means up to 25."""
    u, mu = _uniform("range", 1, 3), "0.1 + (range % 250) / 10.0"
    rows = f"SELECT 0 AS g, 0 AS k, 1.0 AS t, {u} AS u, {mu} AS mu FROM range(100000)"
    con = duckdb.connect()
    y = con.sql(_poisson_count(rows)).df()["y"].to_numpy()
    expected = con.sql(f"SELECT u, mu FROM ({rows})").df()
    np.testing.assert_array_equal(y, stats.poisson.ppf(expected["u"], expected["mu"]))


def test_simulated_poisson_rows_recover_their_rates(tmp_path):
    """The pooled rate ratios between the levels of k (the groups' effects cancel, being
    independent of k) are the truth's within 3 standard errors; the pooled rate of level 0
    is exp(Intercept) E exp(u0) = exp(-0.5 + 0.5^2 / 2) within 3 SEs of the mean of 2,000
    groups' exp(u0) (0.011 on the log scale)."""
    path = tmp_path / "p.parquet"
    truth = hb.datasets.simulate_parquet(path, 200_000, 2000, seed=3, family="poisson")
    per_k = duckdb.sql(f"SELECT k, sum(y) AS y, sum(t) AS t FROM '{path}' GROUP BY k ORDER BY k")
    y, t = per_k.df()[["y", "t"]].to_numpy(dtype=float).T
    log_rate = np.log(y / t)
    ratios = log_rate[1:] - log_rate[0]
    se = np.sqrt(1 / y[1:] + 1 / y[0])
    np.testing.assert_allclose(ratios, [truth["C(k)[1]"], truth["C(k)[2]"]], atol=3 * se.max())
    np.testing.assert_allclose(log_rate[0], truth["Intercept"] + 0.5**2 / 2, atol=3 * 0.011)
