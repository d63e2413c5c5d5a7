"""Where the time of one nutpie fit goes: ``python benchmarks/profile.py <model>``,
with <model> one of eight_schools, exam and sim_1e6.

Times, in one process: the import of hierbayes, the model (design, plan, sufficient
statistics), the graph, then the phases of ``Model.fit(sampler="nutpie")``, otherwise with
default settings (4 chains x 1000 draws), each timed by wrapping the function that does it:
nutpie's compilation (PyTensor's graph rewriting, numba, the cached wrappers), tuning and
sampling, the exact draws of a
marginal model's group effects, the pointwise log-likelihood and the diagnostics. Then the time
of one log density and gradient, called from Python on the compiled model, and the number of
leapfrog steps of the kept draws. Run it twice: the first run fills the compile cache.
"""

from __future__ import annotations

import json
import resource
import sys
import time

START = time.perf_counter()
import hierbayes as hb  # noqa: E402

IMPORT_S = time.perf_counter() - START
import nutpie  # noqa: E402

from hierbayes.api import fit as fit_module  # noqa: E402
from hierbayes.api import model as model_module  # noqa: E402
from hierbayes.backend import samplers  # noqa: E402
from hierbayes.backend.nutpie import compile_model  # noqa: E402

PHASES: dict[str, float] = {}


def timed(module: object, name: str, label: str) -> None:
    """Replace ``module.name`` by a wrapper that adds its time to ``PHASES[label]``."""
    function = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            PHASES[label] = PHASES.get(label, 0.0) + time.perf_counter() - start

    setattr(module, name, wrapper)


def main(which: str) -> dict[str, object]:
    timed(samplers, "compile_model", "compile")
    timed(nutpie, "sample", "tuning and sampling")
    timed(model_module, "add_group_effects", "group-effect draws")
    timed(model_module, "pointwise_log_likelihood", "pointwise log-likelihood")
    timed(fit_module, "diagnose", "diagnostics")
    if which == "eight_schools":
        df = hb.datasets.load("eight_schools")
        start = time.perf_counter()
        model = hb.Model("y ~ 1 + (1 | school)", df, se="sigma")
    elif which == "sim_1e6":
        df = hb.datasets.simulate_hierarchical(10_000, 100, seed=20261122).data
        start = time.perf_counter()
        model = hb.Model("y ~ x + (x | group)", df)
    elif which == "exam":
        df = hb.datasets.load("exam")
        start = time.perf_counter()
        model = hb.Model("normexam ~ standLRT + (standLRT || school)", df)
    else:
        raise SystemExit(f"unknown model {which!r}: eight_schools, exam or sim_1e6")
    PHASES["model"] = time.perf_counter() - start
    start = time.perf_counter()
    model.build()
    PHASES["graph"] = time.perf_counter() - start
    start = time.perf_counter()
    fit = model.fit(random_seed=1, progressbar=False, sampler="nutpie")
    fit_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    compiled = compile_model(model.build(), nutpie)
    point = compiled.initial_point_func(1)
    for _ in range(50):
        compiled.logp_func(point)
    start, n = time.perf_counter(), 1000
    for _ in range(n):
        compiled.logp_func(point)
    steps = int(fit.idata.sample_stats["n_steps"].sum())
    return {
        "model": which,
        "plan": model.plan.describe(),
        "import s": round(IMPORT_S, 2),
        **{f"{k} s": round(v, 3) for k, v in PHASES.items()},
        "fit s": round(fit_s, 2),
        "peak RSS MB (until the fit returned)": round(peak_mb),
        "logp+gradient ms": round((time.perf_counter() - start) / n * 1e3, 4),
        "leapfrog steps, kept draws": steps,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "eight_schools"), indent=1))
