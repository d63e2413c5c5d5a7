"""The London Exam replication, full Bayes (slow): the four models against their REML figures.

Run with ``python -m pytest -m slow``. The REML/EB figures themselves are reproduced in the
default tier (tests/test_eb.py).
"""

import numpy as np
import pytest

import hierbayes as hb
from hierbayes.datasets import resource_path
from hierbayes.specfile import read_csv, read_spec

pytestmark = pytest.mark.slow

SPECS = {
    "OLS": "exam_ols",
    "intercepts": "exam_intercepts",
    "slopes": "exam_slopes",
    "HLM": "exam_hlm",
}


@pytest.fixture(scope="module")
def exam_fits():
    fits = {}
    for name, file in SPECS.items():
        spec = read_spec(resource_path("models", f"{file}.toml"))
        model = hb.Model.from_spec(spec.model, read_csv(spec.data))
        fits[name] = model.fit(**spec.sampler, cores=2, progressbar=False)
    return fits


def within_two_sd(draws: np.ndarray, value: float) -> bool:
    return abs(draws.mean() - value) <= 2 * draws.std()


@pytest.mark.parametrize("name", list(SPECS))
def test_reml_figures_within_two_posterior_sds(exam_fits, name):
    fit = exam_fits[name]
    eb = hb.empirical_bayes(fit.model)
    post = fit.idata.posterior
    assert fit.diagnostics.divergences == 0 and fit.diagnostics.max_rhat <= 1.01
    for term, value in eb.fixed.items():
        assert within_two_sd(post[term].values.ravel(), value), (term, value)
    assert within_two_sd(post["sigma"].values.ravel() ** 2, eb.sigma2)
    for term in eb.cov_re.index:
        variance = post["sd_school"].sel(school_term=term).values.ravel() ** 2
        assert within_two_sd(variance, eb.cov_re.loc[term, term]), (term, eb.cov_re)


def test_compare_ranks_the_hlm_first(exam_fits):
    table = hb.compare(exam_fits)
    assert table.index[0] == "HLM"
    np.testing.assert_allclose(table.loc["OLS", "residual_sd"], 0.805, atol=0.01)
    np.testing.assert_allclose(table.loc["HLM", "residual_sd"], 0.744, atol=0.01)
