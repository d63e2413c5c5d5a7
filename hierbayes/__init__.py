"""hierbayes: Bayesian hierarchical (multilevel) models from lme4-style formulas.

>>> import hierbayes as hb
>>> df = hb.datasets.load("eight_schools")
>>> model = hb.Model("y ~ 1 + (1 | school)", df, se="sigma")  # doctest: +SKIP
>>> fit = model.fit(random_seed=1)  # doctest: +SKIP
>>> fit.pooling().table  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from hierbayes import datasets, priors, report, samplers
from hierbayes.compare import compare
from hierbayes.eb import EmpiricalBayes, empirical_bayes
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
from hierbayes.fit import Fit
from hierbayes.io import load
from hierbayes.model import Model
from hierbayes.report import PoolingReport
from hierbayes.sbc import SBCInterrupted, SBCResult, sbc

try:
    __version__ = version("hierbayes")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

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
