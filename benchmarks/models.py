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


@dataclass(frozen=True)
class BambiSpec:
    """The Bambi model of a benchmark.

    ``formula`` is the mean model; ``extra`` holds distributional formulas (``"sigma ~ ..."``),
    ``link`` the links of a distributional model, and ``rename`` renames data columns for
    Bambi only (a column named ``sigma`` would collide with the parameter of that name).
    """

    key: str
    label: str
    formula: str
    extra: tuple[str, ...] = ()
    link: dict[str, str] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """A model fitted by both tools on the same data.

    ``dataset`` names a shipped data set (``hb.datasets.load``); otherwise the data come from
    ``hb.datasets.simulate_hierarchical(n_groups, n_per_group, seed=DATA_SEED)``, with the
    smaller ``quick`` sizes under ``--quick``. ``compare_with`` is the key of the hierbayes
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
    )
}
