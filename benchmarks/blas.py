"""PyTensor's C code with and without a BLAS: ``python benchmarks/blas.py``.

pip-installed PyTensor finds no BLAS to link its C code to: its matrix products (``Dot22``,
``Gemv``, ``Ger``) then have no C code and run as Python thunks that call NumPy, inside the
C virtual machine. hierbayes links it to the OpenBLAS in SciPy's wheels on import
(:mod:`hierbayes.backend.blas`, which explains the flags). This script measures what that
buys: the ``linked`` variant is hierbayes' default, the ``unlinked`` one sets
``blas__ldflags`` to empty, PyTensor's own state on a pip install.

Each variant runs in fresh processes with its own empty ``base_compiledir`` (so the C caches
do not mix) and otherwise the same environment; the rounds alternate the variants. Measured:

* the CPU time of one log density + gradient evaluation, as PyMC's NUTS calls it
  (``model.logp_dlogp_function``), one BLAS thread, for a Bernoulli GLMM (2,000 rows, 60
  groups, four predictors), the Exam model non-centred and the Exam model marginal; CPU
  time, because on a shared machine the wall time also counts the waits for a core;
* a full ``fit(sampler="pymc", draws=500, tune=500, chains=2, random_seed=1)`` of the GLMM,
  after an untimed compilation of the same model: CPU time of all its processes, wall time
  and PyMC's sampling time;
* the first read of ``blas__ldflags`` in a process (set in both variants: a read of the
  string; unset, PyTensor searches for a BLAS, about half a second).

The processes of one variant run one after another, so a shared machine's load can differ
between them; a last run (``--paired``) compiles both variants in one process, setting
``blas__ldflags`` between the compilations, and times them in interleaved blocks.

The numbers go to the terminal as a table (``benchmarks/README.md``, section BLAS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hierbayes.backend.blas import find_openblas, linked_flags  # noqa: E402
from models import DATA_SEED  # noqa: E402  (benchmarks/ is a folder of scripts)

#: Seed of the fit and of the evaluation points (the GLMM's data use the benchmarks' seed).
FIT_SEED = 1
#: Operations that are (or become) BLAS calls, counted in each compiled function.
BLAS_OPS = ("Dot22", "Dot22Scalar", "Gemm", "Gemv", "CGemv", "Ger", "CGer", "BatchedDot", "Dot")

# --------------------------------------------------------------------------------------
# the models (built in the worker)


def models() -> dict[str, Any]:
    """The three timed models, as ``hierbayes.Model`` objects."""
    from simulate import glmm_bernoulli

    import hierbayes as hb

    exam = hb.datasets.load("exam")
    formula = "normexam ~ standLRT + (standLRT | school)"
    return {
        "GLMM bernoulli": hb.Model(
            "y ~ x1 + x2 + x3 + x4 + (1 | group)",
            glmm_bernoulli(DATA_SEED),
            family="bernoulli",
        ),
        "Exam non-centered": hb.Model(formula, exam, parameterization="non-centered"),
        "Exam marginal": hb.Model(formula, exam),
    }


def _blas_ops(function: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in function.maker.fgraph.toposort():
        name = type(node.op).__name__
        if name in BLAS_OPS:
            counts[name] = counts.get(name, 0) + 1
    return counts


def time_gradient(model: Any, seconds: float, repeats: int) -> dict[str, Any]:
    """Milliseconds per log density + gradient evaluation, in ``repeats`` timed blocks.

    Each block's CPU time (``time.process_time``) and wall time are divided by its calls;
    the CPU time does not count the time this process waits for a core, which other work on
    a shared machine takes, so it is the measure that compares (the wall time is kept too).
    """
    import numpy as np
    from pymc.blocking import DictToArrayBijection

    graph = model.build()
    start = time.perf_counter()
    f = graph.logp_dlogp_function(ravel_inputs=True)
    f.set_extra_values({})
    compile_s = time.perf_counter() - start
    x0 = DictToArrayBijection.map(graph.initial_point(random_seed=FIT_SEED)).data
    rng = np.random.default_rng(FIT_SEED)
    points = [x0 + 0.1 * rng.standard_normal(x0.size) for _ in range(16)]
    logp, grad = f(points[0])
    for x in points:  # warm-up
        f(x)
    t = time.perf_counter()
    for x in points:
        f(x)
    once = max(1e-7, (time.perf_counter() - t) / len(points))
    loops = max(1, int(seconds / once) // len(points))
    cpu, wall = [], []
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        for _ in range(loops):
            for x in points:
                f(x)
        cpu.append(1e3 * (time.process_time() - c) / (loops * len(points)))
        wall.append(1e3 * (time.perf_counter() - t) / (loops * len(points)))
    return {
        "cpu_ms": cpu,
        "wall_ms": wall,
        "calls": loops * len(points) * repeats,
        "compile_s": compile_s,
        "n_params": int(x0.size),
        "logp_at_start": float(logp),
        "grad_norm_at_start": float(np.linalg.norm(grad)),
        "blas_ops": _blas_ops(f._pytensor_function),
        "parameterization": model.plan.describe(),
    }


def time_paired(built: dict[str, Any], flags: str, blocks: int) -> dict[str, Any]:
    """Both variants in one process, their blocks interleaved: CPU ms per call of each.

    ``blas__ldflags`` is read when a function is compiled, so setting it between two
    compilations gives the two variants side by side (their C modules have different cache
    keys); alternating short blocks puts both under the same machine load.
    """
    import numpy as np
    import pytensor
    from pymc.blocking import DictToArrayBijection

    out: dict[str, Any] = {}
    for name, model in built.items():
        fns = {}
        for variant, value in (("unlinked", ""), ("linked", flags)):
            pytensor.config.blas__ldflags = value
            graph = model.build()
            f = graph.logp_dlogp_function(ravel_inputs=True)
            f.set_extra_values({})
            fns[variant] = f
        x0 = DictToArrayBijection.map(graph.initial_point(random_seed=FIT_SEED)).data
        rng = np.random.default_rng(FIT_SEED)
        points = [x0 + 0.1 * rng.standard_normal(x0.size) for _ in range(16)]
        cpu: dict[str, list[float]] = {v: [] for v in fns}
        for k in range(2 * blocks):
            order = list(fns) if k % 2 else list(fns)[::-1]
            for variant in order:
                f = fns[variant]
                c = time.process_time()
                for _ in range(20):
                    for x in points:
                        f(x)
                cpu[variant].append(1e3 * (time.process_time() - c) / (20 * len(points)))
        out[name] = {
            "cpu_ms": cpu,
            "blas_ops": {v: _blas_ops(f._pytensor_function) for v, f in fns.items()},
        }
    return out


def _cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (PyMC's chain processes)."""
    import resource

    return sum(
        u.ru_utime + u.ru_stime
        for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


# --------------------------------------------------------------------------------------
# the worker: one variant in a fresh process


def worker(task: str, out: Path, seconds: float, repeats: int, fit: dict[str, int]) -> None:
    """Run ``task`` (``eval``, ``paired`` or ``fit``) under this process's flags; write JSON."""
    import warnings

    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    import pytensor
    from threadpoolctl import threadpool_info, threadpool_limits

    t = time.perf_counter()
    record: dict[str, Any] = {"blas__ldflags": pytensor.config.blas__ldflags}
    # unset, PyTensor looks for a BLAS on first use in every process (this is that cost)
    record["ldflags_s"] = time.perf_counter() - t
    built = models()
    if task == "eval":
        with threadpool_limits(limits=1, user_api="blas"):  # as hierbayes samples
            record["models"] = {k: time_gradient(m, seconds, repeats) for k, m in built.items()}
    elif task == "paired":
        flags = linked_flags(*find_openblas())
        with threadpool_limits(limits=1, user_api="blas"):
            record["models"] = time_paired(built, flags, blocks=4 * repeats)
    else:
        model = built["GLMM bernoulli"]
        graph = model.build()
        t = time.perf_counter()
        graph.logp_dlogp_function(ravel_inputs=True)  # fills the C cache: compiling not timed
        record["precompile_s"] = time.perf_counter() - t
        t, c = time.perf_counter(), _cpu_s()
        result = model.fit(sampler="pymc", random_seed=FIT_SEED, progressbar=False, **fit)
        record["wall_s"] = time.perf_counter() - t
        record["cpu_s"] = _cpu_s() - c
        idata = result.idata
        record["sampling_s"] = float(idata.posterior.attrs["sampling_time"])
        record["gradients"] = int(idata.sample_stats["n_steps"].sum())
        record["divergences"] = int(idata.sample_stats["diverging"].sum())
        record["intercept_mean"] = float(idata.posterior["Intercept"].mean())
        record["sd_mean"] = float(idata.posterior["sd_group"].mean())
    record["blas_libraries"] = sorted(
        {Path(i["filepath"]).name for i in threadpool_info() if i["user_api"] == "blas"}
    )
    out.write_text(json.dumps(record, indent=1))


# --------------------------------------------------------------------------------------
# the parent


def run_variant(
    variant: str, flags: str | None, compiledir: Path, task: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One worker process of ``variant``; its record."""
    env = dict(os.environ)
    own = [f"base_compiledir={compiledir}"]
    if flags is not None:
        own.append(f"blas__ldflags={flags}")
    env["PYTENSOR_FLAGS"] = ",".join([*filter(None, [env.get("PYTENSOR_FLAGS", "")]), *own])
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = Path(tmp.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", task, "--record", str(out)]
    cmd += ["--seconds", str(args.seconds), "--repeats", str(args.repeats)]
    cmd += ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the {variant} {task} worker failed:\n{done.stderr[-3000:]}")
    record = json.loads(out.read_text())
    out.unlink()
    record["process_s"] = time.perf_counter() - t
    return record


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def _ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"


def report(evals: dict[str, list[dict]], fits: dict[str, list[dict]]) -> str:
    """The Markdown table: per model, each variant's ms per gradient and the ratio.

    Per model and variant: the lowest CPU ms per call over every timed block of every round
    (the least disturbed by other work) and, in brackets, the median block; the ratio of the
    lowest; in the note, the median (and range) over rounds of each round's ratio of medians.
    """
    rows = []
    for name in evals["unlinked"][0]["models"]:
        runs = {v: [r["models"][name] for r in rs] for v, rs in evals.items()}
        low = {v: min(min(m["cpu_ms"]) for m in ms) for v, ms in runs.items()}
        mid = {v: statistics.median(t for m in ms for t in m["cpu_ms"]) for v, ms in runs.items()}
        # each round runs the two variants back to back: its ratio sees the same machine load
        rounds = [
            statistics.median(d["cpu_ms"]) / statistics.median(lk["cpu_ms"])
            for d, lk in zip(runs["unlinked"], runs["linked"], strict=False)
        ]
        first = {v: ms[0] for v, ms in runs.items()}
        same = abs(first["unlinked"]["logp_at_start"] - first["linked"]["logp_at_start"])
        rows.append(
            [
                name,
                f"{first['unlinked']['n_params']}; {first['unlinked']['parameterization']}",
                "CPU ms per logp+gradient",
                f"{low['unlinked']:.4f} ({mid['unlinked']:.4f})",
                f"{low['linked']:.4f} ({mid['linked']:.4f})",
                f"{low['unlinked'] / low['linked']:.2f}x",
                f"rounds {statistics.median(rounds):.2f}x "
                f"({min(rounds):.2f}-{max(rounds):.2f}); "
                f"{_ops(first['unlinked']['blas_ops'])} -> {_ops(first['linked']['blas_ops'])}"
                f"; logp differs by {same:.1e}",
            ]
        )
    if fits:
        fd, fl = fits["unlinked"], fits["linked"]
        note = (
            f"gradients {fd[0]['gradients']:,} / {fl[0]['gradients']:,}; divergences "
            f"{fd[0]['divergences']} / {fl[0]['divergences']}; mean Intercept "
            f"{fd[0]['intercept_mean']:.4f} / {fl[0]['intercept_mean']:.4f}"
        )
        measures = (
            ("cpu_s", "fit CPU s (all processes)"),
            ("wall_s", "fit wall s"),
            ("sampling_s", "PyMC sampling wall s"),
        )
        for key, label in measures:
            d = statistics.median(r[key] for r in fd)
            lk = statistics.median(r[key] for r in fl)
            rows.append(
                [
                    "GLMM bernoulli",
                    "fit(sampler='pymc')",
                    label,
                    f"{d:.2f}",
                    f"{lk:.2f}",
                    f"{d / lk:.2f}x",
                    note,
                ]
            )
            note = ""
    head = ["model", "parameters", "measure", "unlinked", "linked", "unlinked/linked", "note"]
    return _table(head, rows)


def report_paired(runs: list[dict]) -> str:
    """The table of the one-process comparison: median (lowest) block of each variant."""
    rows = []
    for name in runs[0]["models"]:
        cpu = {
            v: [t for r in runs for t in r["models"][name]["cpu_ms"][v]]
            for v in ("unlinked", "linked")
        }
        mid = {v: statistics.median(ts) for v, ts in cpu.items()}
        ops = runs[0]["models"][name]["blas_ops"]
        rows.append(
            [
                name,
                f"{mid['unlinked']:.4f} ({min(cpu['unlinked']):.4f})",
                f"{mid['linked']:.4f} ({min(cpu['linked']):.4f})",
                f"{mid['unlinked'] / mid['linked']:.2f}x",
                f"{_ops(ops['unlinked'])} -> {_ops(ops['linked'])}",
            ]
        )
    return _table(["model", "unlinked", "linked", "unlinked/linked", "BLAS operations"], rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of the eval runs")
    p.add_argument("--seconds", type=float, default=0.25, help="length of one timed block")
    p.add_argument("--repeats", type=int, default=8, help="timed blocks per model and run")
    p.add_argument("--fit-rounds", type=int, default=2, help="fits per variant (0: none)")
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--tune", type=int, default=500)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--paired", type=int, default=1, help="one-process paired runs (0: none)")
    p.add_argument("--worker", choices=["eval", "paired", "fit"], help=argparse.SUPPRESS)
    p.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run both variants and print the table."""
    args = parse_args(argv)
    fit = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "cores": args.chains}
    if args.worker:
        worker(args.worker, args.record, args.seconds, args.repeats, fit)
        return 0
    found = find_openblas()
    if found is None:
        print("no LP64 OpenBLAS with scipy_-prefixed symbols found (SciPy's scipy.libs,")
        print("scipy-openblas32): nothing to compare on this platform.")
        return 1
    flags = linked_flags(*found)
    variants = {"unlinked": "", "linked": flags}
    print(f"linked: blas__ldflags={flags}\n", flush=True)
    evals: dict[str, list[dict]] = {v: [] for v in variants}
    fits: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="hierbayes-blas-") as tmp:
        dirs = {v: Path(tmp) / v for v in variants}
        for k in range(max(args.rounds, args.fit_rounds)):
            for v, f in variants.items():
                if k < args.rounds:
                    print(f"round {k + 1}: {v} eval ...", end=" ", flush=True)
                    evals[v].append(run_variant(v, f, dirs[v], "eval", args))
                    print(f"{evals[v][-1]['process_s']:.0f} s", flush=True)
                if k < args.fit_rounds:
                    print(f"round {k + 1}: {v} fit ...", end=" ", flush=True)
                    fits[v].append(run_variant(v, f, dirs[v], "fit", args))
                    print(f"{fits[v][-1]['process_s']:.0f} s", flush=True)
        paired = []
        for k in range(args.paired):
            print(f"paired {k + 1}: both in one process ...", end=" ", flush=True)
            paired.append(run_variant("paired", None, Path(tmp) / "paired", "paired", args))
            print(f"{paired[-1]['process_s']:.0f} s", flush=True)
    first = evals["unlinked"][0]
    print(f"\nunlinked blas__ldflags: {first['blas__ldflags']!r}")
    for v, runs in evals.items():
        spent = statistics.median(r["ldflags_s"] for r in [*runs, *fits[v]])
        print(f"first read of blas__ldflags in a process ({v}): {spent:.3f} s (median)")
    print(f"BLAS libraries loaded (unlinked): {', '.join(first['blas_libraries'])}")
    print(f"BLAS libraries loaded (linked): {', '.join(evals['linked'][0]['blas_libraries'])}")
    print(
        f"{args.rounds} rounds x {args.repeats} blocks of ~{args.seconds} s per model, one "
        f"BLAS thread; fits: {args.fit_rounds} per variant, medians\n"
    )
    print(report(evals, {k: v for k, v in fits.items() if v}))
    if paired:
        print(
            f"\none process, {args.paired} run(s), variants' blocks interleaved, CPU ms per call:\n"
        )
        print(report_paired(paired))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
