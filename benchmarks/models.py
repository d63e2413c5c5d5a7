"""The benchmark models: data, the hierbayes formulas and the Bambi formula of each.

Plain data, no heavy imports: :mod:`run` reads it to plan the jobs and hands each worker a
JSON spec built from it. Bambi's ``(x | g)`` is an *uncorrelated* intercept and slope (Bambi
has no correlated group-level effects), so it is compared with hierbayes' ``(x || g)``; the
correlated hierbayes model is run beside it and compared with the same Bambi row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DATA_SEED", "SAMPLER_SEED", "Benchmark", "HbVariant", "BambiSpec", "BENCHMARKS"]

#: Seed of the simulated data sets (the same rows for both tools: they read one CSV file).
DATA_SEED = 20261122
#: Seed of every sampler run.
SAMPLER_SEED = 1


@dataclass(frozen=True)
class HbVariant:
    """One hierbayes model of a benchmark: a key, a label, an lme4 formula and its options."""

    key: str
    label: str
    formula: str
    se: str | None = None
    priors: dict[str, str] = field(default_factory=dict)
    family: str = "gaussian"
    trials: str | None = None


@dataclass(frozen=True)
class BambiSpec:
    """The Bambi model of a benchmark.

    ``formula`` is the mean model; ``extra`` holds distributional formulas (``"sigma ~ ..."``),
    ``link`` the links of a distributional model, and ``rename`` renames data columns for
    Bambi only (a column named ``sigma`` would collide with the parameter of that name).
    ``family`` is Bambi's family name (its default link: logit, log). ``prior_names`` maps a
    hierbayes auxiliary parameter to Bambi's name for it (beta's ``phi`` is Bambi's ``kappa``).
    """

    key: str
    label: str
    formula: str
    extra: tuple[str, ...] = ()
    link: dict[str, str] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)
    family: str = "gaussian"
    prior_names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """A model fitted by both tools on the same data.

    ``dataset`` names a shipped data set (``hb.datasets.load``); ``simulator`` a function of
    :mod:`simulate` (its name in ``simulate.SIMULATORS``); otherwise the data come from
    ``hb.datasets.simulate_hierarchical(n_groups, n_per_group, seed=DATA_SEED)``, with the
    smaller ``quick`` sizes under ``--quick``. ``dtype`` is what ``pandas.read_csv`` needs to
    read the grouping columns back as strings. ``compare_with`` is the key of the hierbayes
    variant that is the like-for-like comparison with Bambi. ``cold_cache`` adds a run of
    each tool with an empty PyTensor compile directory; ``small`` marks models cheap enough
    to warm the compile cache with an untimed run first.
    """

    name: str
    title: str
    hb: tuple[HbVariant, ...]
    bambi: BambiSpec | None
    compare_with: str
    dataset: str | None = None
    simulator: str | None = None
    dtype: dict[str, str] | None = None
    sizes: tuple[int, int] = (0, 0)
    quick: tuple[int, int] = (0, 0)
    cold_cache: bool = False
    small: bool = False

    def shape(self, quick: bool) -> tuple[int, int]:
        """``(n_groups, n_per_group)`` of a simulated benchmark."""
        return self.quick if quick else self.sizes


def _simulated(name: str, sizes: tuple[int, int], quick: tuple[int, int]) -> Benchmark:
    n_groups, n_per_group = sizes
    return Benchmark(
        name=name,
        title=f"simulated, N = {n_groups * n_per_group:,}, J = {n_groups:,}",
        hb=(
            HbVariant("uncorrelated", "uncorrelated (x || group)", "y ~ x + (x || group)"),
            HbVariant("correlated", "correlated (x | group)", "y ~ x + (x | group)"),
        ),
        bambi=BambiSpec("uncorrelated", "uncorrelated (x | group)", "y ~ x + (x | group)"),
        compare_with="uncorrelated",
        sizes=sizes,
        quick=quick,
    )


def _one(
    name: str,
    title: str,
    formula: str,
    bambi_formula: str,
    groups: tuple[str, ...],
    family: str = "gaussian",
    *,
    trials: str | None = None,
    bambi_family: str | None = None,
    bambi_link: dict[str, str] | None = None,
    prior_names: dict[str, str] | None = None,
) -> Benchmark:
    """A simulated benchmark (:mod:`simulate`) with one hierbayes model and its Bambi twin
    (Bambi's family name, links and auxiliary parameters' names where they differ)."""
    label = formula.split("~", 1)[1].strip()
    bambi_label = bambi_formula.split("~", 1)[1].strip()
    bambi = BambiSpec(
        "model",
        bambi_label,
        bambi_formula,
        link=bambi_link or {},
        family=bambi_family or family,
        prior_names=prior_names or {},
    )
    return Benchmark(
        name=name,
        title=title,
        hb=(HbVariant("model", label, formula, family=family, trials=trials),),
        bambi=bambi,
        compare_with="model",
        simulator=name,
        dtype=dict.fromkeys(groups, "str"),
        small=True,
    )


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            name="eight_schools",
            title="eight schools, known se",
            dataset="eight_schools",
            # the project's reference priors (models/eight_schools.toml)
            hb=(
                HbVariant(
                    "known_se",
                    "known se: y ~ 1 + (1 | school)",
                    "y ~ 1 + (1 | school)",
                    se="sigma",
                    priors={"Intercept": "normal:0,5", "sd": "halfcauchy:5"},
                ),
            ),
            # sigma_i = exp(log se_i): a distributional model whose sigma is an offset only
            bambi=BambiSpec(
                "known_se",
                "known se: sigma ~ 0 + offset(log(se))",
                "y ~ 1 + (1|school)",
                extra=("sigma ~ 0 + offset(np.log(se))",),
                link={"mu": "identity", "sigma": "log"},
                rename={"sigma": "se"},
            ),
            compare_with="known_se",
            cold_cache=True,
            small=True,
        ),
        Benchmark(
            name="exam",
            title="London Exam, 4,059 pupils, 65 schools",
            dataset="exam",
            hb=(
                HbVariant(
                    "uncorrelated",
                    "uncorrelated (standLRT || school)",
                    "normexam ~ standLRT + (standLRT || school)",
                ),
                HbVariant(
                    "correlated",
                    "correlated (standLRT | school)",
                    "normexam ~ standLRT + (standLRT | school)",
                ),
            ),
            bambi=BambiSpec(
                "uncorrelated",
                "uncorrelated (standLRT | school)",
                "normexam ~ standLRT + (standLRT | school)",
            ),
            compare_with="uncorrelated",
            small=True,
        ),
        _simulated("sim_1e5", (1_000, 100), (50, 20)),
        _simulated("sim_1e6", (10_000, 100), (100, 20)),
        # Bambi has no a/b shorthand: batch/cask is batch plus the batch:cask interaction
        _one(
            "nested",
            "nested, like Pastes: 10 batches x 3 casks x 2 rows",
            "y ~ 1 + (1 | batch/cask)",
            "y ~ 1 + (1|batch) + (1|batch:cask)",
            ("batch", "cask"),
        ),
        _one(
            "nested_large",
            "nested: 200 batches x 5 casks x 5 rows (quick: 40 batches)",
            "y ~ 1 + (1 | batch/cask)",
            "y ~ 1 + (1|batch) + (1|batch:cask)",
            ("batch", "cask"),
        ),
        _one(
            "crossed",
            "crossed, like Penicillin: 24 plates x 6 samples",
            "y ~ 1 + (1 | plate) + (1 | sample)",
            "y ~ 1 + (1|plate) + (1|sample)",
            ("plate", "sample"),
        ),
        _one(
            "glmm_bernoulli",
            "Bernoulli GLMM: 2,000 rows, 60 groups, 4 predictors",
            "y ~ x1 + x2 + x3 + x4 + (1 | group)",
            "y ~ x1 + x2 + x3 + x4 + (1|group)",
            ("group",),
            family="bernoulli",
        ),
        _one(
            "glmm_crossed",
            "crossed Bernoulli GLMM, like VerbAgg: 316 subjects x 24 items",
            "y ~ anger + mode + (1 | subject) + (1 | item)",
            "y ~ anger + mode + (1|subject) + (1|item)",
            ("subject", "item"),
            family="bernoulli",
        ),
        _one(
            "glmm_poisson",
            "Poisson GLMM, like grouseticks: 400 rows, 100 broods in 25 locations",
            "y ~ x + (1 | brood) + (1 | location)",
            "y ~ x + (1|brood) + (1|location)",
            ("brood", "location"),
            family="poisson",
        ),
        _one(
            "glmm_binomial",
            "binomial GLMM, like cbpp: 80 herds x 8 periods, 2 to 30 trials a row",
            "y ~ x + (1 | herd)",
            "p(y, n) ~ x + (1|herd)",
            ("herd",),
            family="binomial",
            trials="n",
        ),
        _one(
            "glmm_negbin",
            "negative binomial GLMM: 800 counts in 50 groups",
            "y ~ x + (1 | group)",
            "y ~ x + (1|group)",
            ("group",),
            family="negativebinomial",
        ),
        _one(
            "glmm_gamma",
            "gamma GLMM (log link): 800 rows in 40 groups",
            "y ~ x + (1 | group)",
            "y ~ x + (1|group)",
            ("group",),
            family="gamma",
            bambi_link={"mu": "log"},
        ),
        _one(
            "glmm_beta",
            "beta GLMM (logit link): 800 proportions in 40 groups",
            "y ~ x + (1 | group)",
            "y ~ x + (1|group)",
            ("group",),
            family="beta",
            prior_names={"phi": "kappa"},
        ),
        _one(
            "glmm_student_t",
            "Student-t GLMM: 800 rows in 40 groups",
            "y ~ x + (1 | group)",
            "y ~ x + (1|group)",
            ("group",),
            family="student_t",
            bambi_family="t",
        ),
    )
}
