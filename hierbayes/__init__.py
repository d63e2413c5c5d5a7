"""hierbayes: Bayesian hierarchical (multilevel) models from lme4-style formulas.

>>> import hierbayes as hb
>>> df = hb.datasets.load("eight_schools")
>>> model = hb.Model("y ~ 1 + (1 | school)", df, se="sigma")  # doctest: +SKIP
>>> fit = model.fit(random_seed=1)  # doctest: +SKIP
>>> fit.pooling().table  # doctest: +SKIP
"""

from hierbayes.analysis import report
from hierbayes.analysis.compare import compare
from hierbayes.analysis.eb import EmpiricalBayes, empirical_bayes
from hierbayes.analysis.report import PoolingReport
from hierbayes.api import datasets
from hierbayes.api.fit import Fit
from hierbayes.api.load import load
from hierbayes.api.model import Model
from hierbayes.api.sbc import SBCInterrupted, SBCResult, sbc
from hierbayes.backend import samplers
from hierbayes.errors import (
    DataError,
    DataWarning,
    FileFormatError,
    IdentifiabilityWarning,
    MissingDependencyError,
    PriorWarning,
    SamplingError,
    SamplingWarning,
    SpecError,
)
from hierbayes.spec import priors
from hierbayes.version import __version__

__all__ = [
    "DataError",
    "DataWarning",
    "EmpiricalBayes",
    "FileFormatError",
    "Fit",
    "Model",
    "IdentifiabilityWarning",
    "MissingDependencyError",
    "PoolingReport",
    "PriorWarning",
    "SBCInterrupted",
    "SBCResult",
    "SamplingError",
    "SamplingWarning",
    "SpecError",
    "__version__",
    "compare",
    "datasets",
    "empirical_bayes",
    "load",
    "priors",
    "report",
    "samplers",
    "sbc",
]
