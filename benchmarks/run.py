"""hierbayes against Bambi on the same models and data, in one run: ``python benchmarks/run.py``.

Each (tool, model) fit runs in a fresh subprocess (hierbayes in this virtualenv, Bambi in
its own, ``benchmarks/.envs/bambi``, made on first use), one after another. This process
times each one from its start until the worker marks its fit done, samples the memory of
its process tree, kills it past a time or memory limit, and prints a Markdown table; the
table, every record and every worker's log go to ``--out``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from report import table  # noqa: E402

from models import (  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
    BENCHMARKS,
    DATA_SEED,
    SAMPLER_SEED,
    Benchmark,
)

BAMBI_ENV = HERE / ".envs" / "bambi"
BAMBI_REQUIREMENTS = HERE / "requirements-bambi.txt"
#: Memory sampling interval of the process tree, seconds.
SAMPLE_EVERY = 0.2
#: Untimed warm-up runs: enough draws to compile and start every chain.
WARMUP = {"draws": 20, "tune": 20, "chains": 2}


@dataclass
class Job:
    """One subprocess: a tool fitting one model variant."""

    benchmark: Benchmark
    tool: str  # "hierbayes" or "bambi"
    vkey: str  # the variant's key in models.py
    variant: str  # the variant's label
    spec: dict[str, Any]
    cold: bool = False
    warmup: bool = False
    timeout: float = 3600.0
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A file-name-safe name, e.g. ``exam-hierbayes-correlated``."""
        parts = [self.benchmark.name, self.tool, self.vkey]
        if self.cold:
            parts.append("cold")
        if self.warmup:
            parts.append("warmup")
        return "-".join(parts)


# --------------------------------------------------------------------------------------
# data and priors


def prepare_data(benchmark: Benchmark, folder: Path, quick: bool) -> tuple[Path, dict | None]:
    """Write the benchmark's data to one CSV both tools read; return it and its dtypes."""
    import hierbayes as hb

    path = folder / f"{benchmark.name}.csv"
    if benchmark.dataset:
        df = hb.datasets.load(benchmark.dataset)
        dtype = {"school": "str"} if benchmark.dataset == "eight_schools" else None
    elif benchmark.simulator:
        from simulate import SIMULATORS

        df = SIMULATORS[benchmark.simulator](DATA_SEED, quick)
        dtype = benchmark.dtype
    else:
        n_groups, n_per_group = benchmark.shape(quick)
        df = hb.datasets.simulate_hierarchical(n_groups, n_per_group, seed=DATA_SEED).data
        dtype = {"group": "str"}
    df.to_csv(path, index=False)
    return path, dtype


def _prior_json(prior: Any) -> dict[str, Any]:
    """A hierbayes prior spec -> the JSON the Bambi worker turns into ``bmb.Prior``."""
    from dataclasses import fields

    name = type(prior).__name__
    if name not in {"Normal", "StudentT", "HalfNormal", "HalfCauchy", "HalfStudentT", "Gamma"}:
        raise ValueError(f"no Bambi equivalent for the hierbayes prior {prior}")
    return {"dist": name, "args": {f.name: getattr(prior, f.name) for f in fields(prior)}}


def bambi_priors(benchmark: Benchmark, data: Path, dtype: dict | None) -> dict[str, Any]:
    """The priors of the like-for-like hierbayes model, keyed as Bambi names its terms.

    ``Intercept`` and each population-level term keep their names; the SD prior of factor
    ``g`` goes on every group-level term ``1|g``, ``x|g`` (a nested factor ``a/b`` is hierbayes'
    factors ``a`` and ``a:b``, Bambi's terms ``1|a`` and ``1|a:b``); ``sigma`` stays ``sigma``,
    and the other auxiliary parameters take Bambi's names (``BambiSpec.prior_names``).
    Families without one (bernoulli, poisson) have no ``sigma`` key to pass.
    """
    import pandas as pd

    import hierbayes as hb

    variant = next(v for v in benchmark.hb if v.key == benchmark.compare_with)
    df = pd.read_csv(data, dtype=dtype)
    model = hb.Model(
        variant.formula,
        df,
        se=variant.se,
        priors=variant.priors,
        family=variant.family,
        trials=variant.trials,
    )
    names = benchmark.bambi.prior_names if benchmark.bambi else {}
    out: dict[str, Any] = {}
    for key, prior in model.priors.items():
        if key.startswith("corr_"):
            continue
        if key.startswith("sd_"):
            factor = next(f for f in model.design.factors if f"sd_{f.name}" == key)
            for term in factor.terms:
                name = f"{'1' if term == 'Intercept' else term}|{factor.name}"
                out[name] = {"dist": "Normal", "args": {"mu": 0.0, "sigma": _prior_json(prior)}}
        else:
            out[names.get(key, key)] = _prior_json(prior)
    return out


# --------------------------------------------------------------------------------------
# the Bambi virtualenv


def _requirements_hash() -> str:
    return hashlib.sha256(BAMBI_REQUIREMENTS.read_bytes()).hexdigest()[:16]


def bambi_python(base_python: str) -> Path:
    """The Bambi virtualenv's interpreter; make the virtualenv first if it is missing/stale."""
    python = BAMBI_ENV / "bin" / "python"
    stamp = BAMBI_ENV / ".requirements"
    if python.exists() and stamp.exists() and stamp.read_text() == _requirements_hash():
        return python
    print(f"making the Bambi virtualenv {BAMBI_ENV.relative_to(REPO)} ...", flush=True)
    if not python.exists():
        subprocess.run([base_python, "-m", "venv", str(BAMBI_ENV)], check=True)
    log = BAMBI_ENV / "pip.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-r", str(BAMBI_REQUIREMENTS)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode:
        sys.exit(f"pip could not install Bambi; see {log}")
    stamp.write_text(_requirements_hash())
    return python


# --------------------------------------------------------------------------------------
# running one job


class TreeMonitor(threading.Thread):
    """Samples the summed RSS and PSS of a process and all its descendants.

    ``getrusage(RUSAGE_CHILDREN)`` would give only the largest single descendant, over this
    process's whole life, not the sum of the processes alive together (PyMC's chain workers
    run beside the main process), and not per run; so the tree is sampled instead. RSS,
    cheap to read, every ``SAMPLE_EVERY`` seconds; the list of descendants and their PSS
    (``/proc/<pid>/smaps_rollup``, dearer) every ``SLOW_EVERY``-th sample. RSS counts pages
    shared between processes once per process (an upper bound of physical memory); PSS
    shares them out (the physical footprint). Peaks are kept up to the moment the worker
    marks its fit done and over the whole process.
    """

    SLOW_EVERY = 5

    def __init__(self, pid: int, marker: Path, limit_mb: float) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.marker = marker
        self.limit_mb = limit_mb
        self.stop = threading.Event()
        self.peak = {"fit_rss": 0.0, "fit_pss": 0.0, "total_rss": 0.0, "total_pss": 0.0}
        self.over_limit = False

    def _sum(self, procs: list[psutil.Process], pss: bool) -> float:
        total = 0.0
        for proc in procs:
            try:
                info = proc.memory_full_info() if pss else proc.memory_info()
            except psutil.Error:  # a chain process that has just ended
                continue
            total += getattr(info, "pss", info.rss) if pss else info.rss
        return total / 1e6

    def _keep(self, kind: str, value: float, fit_done: bool) -> None:
        if not fit_done:
            self.peak[f"fit_{kind}"] = max(self.peak[f"fit_{kind}"], value)
        self.peak[f"total_{kind}"] = max(self.peak[f"total_{kind}"], value)

    def run(self) -> None:
        procs: list[psutil.Process] = []
        tick = 0
        while not self.stop.is_set():
            slow = tick % self.SLOW_EVERY == 0
            tick += 1
            if slow:
                try:
                    procs = [self.root, *self.root.children(recursive=True)]
                except psutil.Error:  # the worker has ended
                    return
            fit_done = self.marker.exists()
            rss = self._sum(procs, pss=False)
            self._keep("rss", rss, fit_done)
            if slow:
                self._keep("pss", self._sum(procs, pss=True), fit_done)
            if rss > self.limit_mb:
                self.over_limit = True
                return
            self.stop.wait(SAMPLE_EVERY)


def _kill_tree(proc: subprocess.Popen) -> None:
    """End the worker's process group (started in its own session), politely then not."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_job(job: Job, python: Path, worker: Path, work: Path, logs: Path, limit_mb: float):
    """Run one worker; fill ``job.result`` with its record and the parent's measurements."""
    spec_path = work / f"{job.key}.spec.json"
    marker = work / f"{job.key}.fit_done"
    record_path = work / f"{job.key}.record.json"
    for path in (marker, record_path):
        path.unlink(missing_ok=True)
    spec = {**job.spec, "marker": str(marker), "record": str(record_path)}
    spec_path.write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    compiledir = None
    if job.cold:
        # base_compiledir holds PyTensor's C modules and its numba cache (with hierbayes'
        # cached nutpie wrappers): a new one empties both
        compiledir = Path(tempfile.mkdtemp(prefix="compiledir-", dir=work))
        flags = env.get("PYTENSOR_FLAGS", "")
        env["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={compiledir}") if f)
    log_path = logs / f"{job.key}.log"
    with log_path.open("w") as log:
        start = time.time()
        proc = subprocess.Popen(
            [str(python), str(worker), str(spec_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(HERE),
            env=env,
            start_new_session=True,
        )
        monitor = TreeMonitor(proc.pid, marker, limit_mb)
        monitor.start()
        status = "ok"
        try:
            while True:
                try:
                    proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.time() - start > job.timeout:
                    status = f"timeout: stopped after {job.timeout:.0f} s"
                    _kill_tree(proc)
                    break
                if monitor.over_limit:
                    status = f"stopped: process tree above {limit_mb / 1000:.0f} GB"
                    _kill_tree(proc)
                    break
        except BaseException:  # Ctrl-C: the worker is in its own session and did not get it
            _kill_tree(proc)
            raise
        finally:
            end = time.time()
            monitor.stop.set()
            monitor.join()
    if compiledir is not None:
        shutil.rmtree(compiledir, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": job.benchmark.name,
        "tool": job.tool,
        "variant": job.vkey,
        "label": job.variant,
        "cold_cache": job.cold,
        "warmup": job.warmup,
        "status": status,
        "process_s": end - start,
        "peak_mb": monitor.peak,
        "log": str(log_path.relative_to(log_path.parents[1])),
        "spec": {k: v for k, v in job.spec.items() if k not in ("priors",)},
    }
    if status == "ok" and proc.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or ["(no output)"]
        error = tail[0].rsplit("._", 1)[-1]  # numpy._core._exceptions._ArrayMemoryError: ...
        result["status"] = f"failed (exit {proc.returncode}): {error[:150]}"
    if marker.exists():
        done = json.loads(marker.read_text())
        result["wall_s"] = done["fit_done"] - start
        # the worker's own peak RSS is exact; the sampled tree sum cannot be below it
        own = done["rusage_mb"]["self"]
        result["peak_mb"]["fit_rss"] = max(result["peak_mb"]["fit_rss"], own)
        result["peak_mb"]["total_rss"] = max(result["peak_mb"]["total_rss"], own)
    if record_path.exists():
        record = json.loads(record_path.read_text())
        times = record["times"]
        record["phases_s"] = {
            "startup_and_import": times["import"] - start,
            "read_data": times["data"] - times["import"],
            "build_model": times["model"] - times["data"],
            "fit": times["fit"] - times["model"],
            "summary (excluded)": times["summary"] - times["fit"],
        }
        result["record"] = record
    job.result = result


# --------------------------------------------------------------------------------------
# planning and reporting


def library_default_sampler() -> str:
    """The sampler hierbayes' ``Model.fit`` uses when given none (its signature's default)."""
    import inspect

    import hierbayes as hb

    parameter = inspect.signature(hb.Model.fit).parameters.get("sampler")
    return "pymc" if parameter is None else str(parameter.default)


def hierbayes_samplers(args: argparse.Namespace, default: str) -> list[tuple[str | None, str]]:
    """(what to pass as ``fit(sampler=...)``, the sampler that runs), one per hierbayes row.

    ``--samplers`` names samplers; ``default`` is the library's default, passed as nothing
    (None), and so is a name equal to it: the default is one row whichever sampler it is,
    and the others are rows of their own. An empty ``--samplers`` gives ``--sampler`` alone.
    """
    if args.samplers:
        names = [n.strip() for n in args.samplers.split(",") if n.strip()]
    else:
        names = [args.sampler or "default"]
    out: list[tuple[str | None, str]] = []
    for name in names:
        row = (None, default) if name in ("default", default) else (name, name)
        if row not in out:
            out.append(row)
    return out


def plan_jobs(
    args: argparse.Namespace, names: Sequence[str], default_sampler: str = "pymc"
) -> list[Job]:
    """Every job of the run, warm-ups first within each model."""
    jobs: list[Job] = []
    settings = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "cores": args.cores,
        "seed": SAMPLER_SEED,
    }
    hb_options = {
        "parameterization": args.parameterization,
        "sampler": args.sampler,
        "log_likelihood": {"default": None, "yes": True, "no": False}[args.log_likelihood],
    }
    for name in names:
        b = BENCHMARKS[name]
        timed: list[Job] = []
        if not args.skip_hierbayes:
            for passed, runs in hierbayes_samplers(args, default_sampler):
                for v in b.hb:
                    spec = {"formula": v.formula, "se": v.se, "priors": v.priors, **hb_options}
                    spec |= {"trials": v.trials}
                    spec |= {"family": v.family, "sampler": passed}
                    key = v.key if runs == "pymc" else f"{v.key}-{runs}"
                    timed.append(Job(b, "hierbayes", key, v.label, {**spec, **settings}))
                    timed[-1].timeout = args.timeout
        if not args.skip_bambi and b.bambi is not None:
            s = b.bambi
            spec = {"formula": s.formula, "extra": list(s.extra), "link": s.link}
            spec |= {"rename": s.rename, "family": s.family}
            timed.append(Job(b, "bambi", s.key, s.label, {**spec, **settings}))
            timed[-1].timeout = args.bambi_timeout
        if args.warmup == "all" or (args.warmup == "small" and b.small):
            jobs += [replace(j, spec={**j.spec, **WARMUP}, warmup=True) for j in timed]
        jobs += timed
        if b.cold_cache:
            jobs += [replace(j, cold=True) for j in timed]
    return jobs


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--models",
        default=",".join(BENCHMARKS),
        help=f"comma-separated, from {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--draws", type=int, default=None, help="kept draws per chain (1000; quick 200)")
    p.add_argument(
        "--tune", type=int, default=None, help="tuning steps per chain (1000; quick 200)"
    )
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--cores", type=int, default=2, help="chains run in parallel, both tools")
    p.add_argument("--quick", action="store_true", help="small simulated data, 200 draws/tune")
    p.add_argument("--skip-bambi", action="store_true")
    p.add_argument("--skip-hierbayes", action="store_true")
    p.add_argument(
        "--bambi-timeout", type=float, default=1800.0, help="seconds before a Bambi run is stopped"
    )
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds before a hierbayes run is stopped"
    )
    p.add_argument(
        "--max-memory-gb",
        type=float,
        default=16.0,
        help="stop a run whose process tree's summed RSS goes above this",
    )
    p.add_argument(
        "--bambi-priors",
        choices=["matched", "default"],
        default="matched",
        help="Bambi with the hierbayes model's priors, or with its own defaults",
    )
    p.add_argument(
        "--parameterization",
        default=None,
        help="hierbayes parameterization (default: the library default)",
    )
    p.add_argument(
        "--sampler",
        default=None,
        help="hierbayes sampler when --samplers is '': pymc, nutpie, numpyro (default: the "
        "library default)",
    )
    p.add_argument(
        "--samplers",
        default="default,pymc,nutpie",
        help="hierbayes samplers, one row each; 'default' passes none (the library default), "
        "and a name equal to the default is the same row ('' for --sampler alone)",
    )
    p.add_argument(
        "--log-likelihood",
        choices=["default", "yes", "no"],
        default="default",
        help="hierbayes fit(log_likelihood=...): keep the library default unless asked",
    )
    p.add_argument(
        "--warmup",
        choices=["small", "all", "none"],
        default="small",
        help="untimed runs that fill the PyTensor compile cache first (small: eight schools, Exam)",
    )
    p.add_argument(
        "--bambi-python",
        default=sys.executable,
        help="Python 3.11 interpreter the Bambi virtualenv is made from",
    )
    p.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    args = p.parse_args(argv)
    args.draws = args.draws or (200 if args.quick else 1000)
    args.tune = args.tune or (200 if args.quick else 1000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; choose from {list(BENCHMARKS)}")
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python_bambi = None if args.skip_bambi else bambi_python(args.bambi_python)
    default_sampler = library_default_sampler()
    jobs = plan_jobs(args, names, default_sampler)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="hierbayes-bench-") as tmp:
        work = Path(tmp)
        for name in names:
            b = BENCHMARKS[name]
            data, dtype = prepare_data(b, work, args.quick)
            priors = None
            if args.bambi_priors == "matched" and not args.skip_bambi and b.bambi:
                priors = bambi_priors(b, data, dtype)
            for job in jobs:
                if job.benchmark.name == name:
                    job.spec.update({"data": str(data), "dtype": dtype})
                    if job.tool == "bambi":
                        job.spec["priors"] = priors
        cpu_before = _cpu_seconds()
        for k, job in enumerate(jobs, 1):
            if job.tool == "bambi":
                python, worker = python_bambi, HERE / "worker_bambi.py"
            else:
                python, worker = Path(sys.executable), HERE / "worker_hierbayes.py"
            what = f"[{k}/{len(jobs)}] {job.key}"
            print(f"{what} ...", end=" ", flush=True)
            run_job(job, python, worker, work, logs, args.max_memory_gb * 1000)
            r = job.result
            wall = f"{r['wall_s']:.1f} s" if "wall_s" in r else "-"
            print(f"{r['status']} (wall {wall}, process {r['process_s']:.1f} s)", flush=True)
    timed = [j for j in jobs if not j.warmup]
    text = table(timed)
    settings = (
        f"hierbayes' default sampler {default_sampler}; "
        f"{args.chains} chains x {args.draws} draws ({args.tune} tuning), {args.cores} cores, "
        f"seed {SAMPLER_SEED}, data seed {DATA_SEED}{', quick sizes' if args.quick else ''}"
    )
    print(f"\n{settings}\n\n{text}")
    out.mkdir(parents=True, exist_ok=True)
    from hierbayes.posterior.storage import (
        atomic_write_all,  # both files appear together, never half-written
    )

    markdown = f"Started {started}; {settings}.\n\n{text}\n"
    summary = {
        "started": started,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "default_sampler": default_sampler,
        "cpu_count": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 1e9,
        "runs": [j.result for j in jobs],
    }
    summary["parent_cpu_s_while_running"] = _cpu_seconds() - cpu_before  # monitor overhead
    record = json.dumps(summary, indent=1, default=str)
    atomic_write_all(
        [
            (out / "results.md", lambda p: p.write_text(markdown)),
            (out / "results.json", lambda p: p.write_text(record)),
        ]
    )
    print(f"\nwritten: {out / 'results.md'}, {out / 'results.json'}, {logs}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
