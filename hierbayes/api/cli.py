"""Command line: ``hierbayes eight-schools`` (the tutorial) and ``hierbayes fit SPEC.toml``.

Both fit a model, print the model, the diagnostics and the pooling table, and write
``pooling.png``, ``pooling.csv``, ``ppc.png`` (not for a model of per-group sums or distinct
rows: a Parquet file is read by DuckDB, :func:`hierbayes.spec.specfile.model_data`),
``summary.txt`` and ``posterior.nc`` (the fit as :meth:`hierbayes.Fit.save` writes it, so
``hb.load`` reads it back ready to report and predict) into ``--out``. The
files appear together, each complete, once all are written
(:func:`hierbayes.posterior.storage.atomic_write_all`).

Exit status: 0 when the sampler's diagnostics pass, 1 when they fail (the results are
written all the same), 2 for bad input, with one line naming the problem (a formula error
adds the formula and a caret under the problem), and 130 for Ctrl-C, with one line saying
what was written (nothing, unless Ctrl-C came after the files were complete). The sampler's
progress bar shows on a terminal; ``--no-progress`` hides it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hierbayes.api.datasets import resource_path
from hierbayes.api.model import Model
from hierbayes.backend.samplers import DEFAULT_SAMPLER, SAMPLERS
from hierbayes.errors import DataError, MissingDependencyError, SpecError
from hierbayes.posterior.storage import atomic_write, atomic_write_all
from hierbayes.spec.modelspec import PARAMETERIZATIONS
from hierbayes.spec.priors import from_string
from hierbayes.spec.specfile import (
    SAMPLER_KEYS,
    RunSpec,
    model_data,
    read_spec,
    sampler_problem,
    spec_from_tables,
    spec_text,
)
from hierbayes.version import __version__

__all__ = ["main", "run", "EXIT_INTERRUPTED"]

#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Sampler options of both commands: attribute -> option name.
_SAMPLER_OPTIONS = {
    "draws": "--draws",
    "tune": "--tune",
    "chains": "--chains",
    "cores": "--cores",
    "random_seed": "--seed",
}


def _check_out(out: Path) -> None:
    """Fail before sampling if ``out`` cannot become a writable folder."""
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise SpecError(f"--out {str(out)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"--out {str(out)!r}: the folder {str(existing)!r} is not writable")


def _write(out: Path, writes: list, written: list[Path]) -> None:
    """Write all results into ``out`` at once; after a failure remove the folders made."""
    made = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_all(writes, done=written)
    except BaseException:
        if not written:
            for folder in made:  # innermost first
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise


def run(spec: RunSpec, out: Path, settings: dict[str, Any], written: list[Path]) -> int:
    """Fit ``spec``, print the results and write them into ``out``; return the exit status.

    ``settings`` are the keyword arguments of :meth:`hierbayes.Model.fit`; ``written``
    receives each file as it is complete.

    Examples
    --------
    >>> from hierbayes.api.datasets import resource_path
    >>> spec = read_spec(resource_path("models", "eight_schools.toml"))
    >>> written = []
    >>> run(spec, Path("results/es"), {"draws": 500, "random_seed": 1}, written)  # doctest: +SKIP
    0
    >>> [p.name for p in written]  # doctest: +SKIP
    ['pooling.png', 'pooling.csv', 'ppc.png', 'summary.txt', 'posterior.nc']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    model = Model.from_spec(spec.model, model_data(spec.data))
    print(model, end="\n\n")
    fit = model.fit(**settings)  # Ctrl-C raises KeyboardInterrupt (hierbayes.core.interrupts)
    summary = repr(fit)  # lme4's layout, printed and written
    print(f"{summary}\n")
    writes, figure = [], None
    if model.design.factors:  # a model without group-level terms has no pooling to report
        report = fit.pooling()
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(
                f"Pooling ({100 * report.hdi_prob:g}% HDI)\n"
                f"{report.summary.round(3).to_string(index=False)}\n"
            )
            print(report.table.round(3).to_string(index=False))
            for note in report.notes:
                print(f"note: {note}")
        figure = report.plot()
        writes += [
            (out / "pooling.png", lambda p: figure.savefig(p, dpi=120, format="png")),
            (out / "pooling.csv", lambda p: report.table.to_csv(p, index=False)),
        ]
    ppc = None
    if model.design.reduced is None:  # rows to replicate
        ppc = fit.plot_ppc(draws=100, random_seed=settings.get("random_seed"))
        writes += [(out / "ppc.png", lambda p: ppc.savefig(p, dpi=120, format="png"))]
    else:
        print(f"note: no ppc.png: the model holds {model.design.reduced}, not rows")
    writes += [
        (out / "summary.txt", lambda p: p.write_text(f"{summary}\n", encoding="utf-8")),
        (out / "posterior.nc", fit.write_netcdf),  # hb.load reads it
    ]
    try:
        _write(out, writes, written)
    finally:
        for fig in (figure, ppc):
            if fig is not None:
                plt.close(fig)
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0 if fit.diagnostics.ok else 1


def _parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="hierbayes", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hierbayes {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--parameterization",
            choices=PARAMETERIZATIONS,
            default=None,
            help="graph form of the group-level terms (default: the spec's, else the model's)",
        )
        p.add_argument(
            "--sampler",
            choices=SAMPLERS,
            default=DEFAULT_SAMPLER,
            help=f"NUTS implementation ({DEFAULT_SAMPLER})",
        )
        p.add_argument("--draws", type=int, help="draws per chain (default: the spec's)")
        p.add_argument("--tune", type=int, help="tuning steps per chain")
        p.add_argument("--chains", type=int, help="number of chains")
        p.add_argument("--cores", type=int, help="chains run in parallel")
        p.add_argument("--seed", dest="random_seed", type=int, help="random seed")
        p.add_argument(
            "--no-progress",
            dest="progressbar",
            action="store_false",
            default=None,
            help="hide the progress bar (shown on a terminal by default)",
        )

    eight = sub.add_parser("eight-schools", help="the eight-schools tutorial, end to end")
    eight.add_argument(
        "--hyperprior",
        default=None,
        metavar="PRIOR",
        help="prior on the group SD, e.g. halfcauchy:5, halft:3,5, halfnormal:5, "
        "exponential:0.2, invgamma:1,1, halfflat (default halfcauchy:5)",
    )
    eight.add_argument("--out", type=Path, default=Path("results/eight_schools"))
    common_options(eight)

    fit = sub.add_parser(
        "fit", help="fit a model: a TOML spec (see models/), or --formula and --data"
    )
    fit.add_argument("spec", type=Path, nargs="?", help="a TOML spec (or give --formula, --data)")
    fit.add_argument("--formula", help='an lme4 formula, e.g. "y ~ x + (1 | g)"')
    fit.add_argument("--data", type=Path, help="a CSV or Parquet file (with --formula)")
    for option, what in OPTION_COLUMNS.items():
        fit.add_argument(f"--{option}", metavar="COLUMN" if what == "column" else None, help=what)
    fit.add_argument(
        "--save-spec", type=Path, metavar="FILE.toml", help="also write the spec as TOML, to rerun"
    )
    fit.add_argument("--out", type=Path, default=None, help="default: results/<spec name>")
    common_options(fit)
    return parser


#: ``hierbayes fit``'s model options without a spec file: the [model] keys of a TOML spec.
OPTION_COLUMNS = {
    "family": "the response's family (gaussian, bernoulli, poisson, ...)",
    "link": "the link function (default: the family's canonical link)",
    "se": "column",
    "trials": "column",
    "offset": "column",
    "weights": "column",
}


def _fit_spec(args: argparse.Namespace) -> RunSpec:
    """``hierbayes fit``'s spec: the TOML file, or one made from --formula and --data (the same
    checks as a spec file's [model] table; named after the data file)."""
    given = [f"--{k}" for k in ("formula", "data", *OPTION_COLUMNS) if getattr(args, k)]
    if args.spec is not None:
        if given:
            raise SpecError(f"give a spec file or {', '.join(given)}, not both")
        return read_spec(args.spec)
    if args.formula is None or args.data is None:
        raise SpecError(
            "give a spec file (hierbayes fit models/eight_schools.toml) or both --formula and "
            '--data (hierbayes fit --formula "y ~ x + (1 | g)" --data data.csv)'
        )
    model = {"formula": args.formula, "data": str(args.data)}
    model |= {k: getattr(args, k) for k in OPTION_COLUMNS if getattr(args, k) is not None}
    return spec_from_tables(
        {"model": model}, Path.cwd() / "command line", "command line", name=args.data.stem
    )


def _save_spec(spec: RunSpec, settings: dict[str, Any], path: Path) -> None:
    """Write ``spec`` with the run's sampler settings as TOML, ``path`` relative to it."""
    run_spec = dataclasses.replace(
        spec, sampler={k: settings[k] for k in SAMPLER_KEYS if settings.get(k) is not None}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: p.write_text(spec_text(run_spec, path.parent), encoding="utf-8"))
    print(f"wrote {path}")


def _with_options(spec: RunSpec, args: argparse.Namespace) -> RunSpec:
    """The spec with the command line's --parameterization and --hyperprior applied."""
    model = spec.model
    if args.parameterization is not None:
        model = dataclasses.replace(model, parameterization=args.parameterization)
    if getattr(args, "hyperprior", None):
        try:
            prior = from_string(args.hyperprior)
        except SpecError as exc:
            raise SpecError(f"--hyperprior: {exc}") from None
        model = dataclasses.replace(model, priors={**model.priors, "sd": prior})
    return dataclasses.replace(spec, model=model)


def _settings(spec: RunSpec, args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of Model.fit: the spec's [sampler] table, then the options."""
    settings = dict(spec.sampler)
    for key, option in _SAMPLER_OPTIONS.items():
        value = getattr(args, key)
        if value is not None:
            problem = sampler_problem(key, value)
            if problem is not None:
                raise SpecError(f"{option}: {problem}")
            settings[key] = value
    settings["progressbar"] = args.progressbar  # None: on in a terminal, off otherwise
    settings["sampler"] = args.sampler
    return settings


def _interrupted(out: Path | None, written: list[Path]) -> str:
    if not written:
        return "interrupted: nothing was written" + (f" to {out}" if out is not None else "")
    names = ", ".join(p.name for p in written)
    verb = "is" if len(written) == 1 else "are"
    return f"interrupted: {names} in {out} {verb} complete; nothing else was written"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hierbayes`` command; returns the exit status.

    Examples
    --------
    >>> main(["fit", "no-such-spec.toml"])  # doctest: +SKIP
    hierbayes: error: spec file 'no-such-spec.toml' does not exist
    2
    """
    out: Path | None = None
    written: list[Path] = []
    try:
        args = _parser().parse_args(argv)
        warnings.formatwarning = lambda msg, cat, *a, **k: f"warning ({cat.__name__}): {msg}\n"
        if args.command == "eight-schools":
            spec = read_spec(resource_path("models", "eight_schools.toml"))
            out = args.out
        else:
            spec = _fit_spec(args)
            out = args.out or Path("results") / spec.name
        spec = _with_options(spec, args)
        settings = _settings(spec, args)
        _check_out(out)
        if args.command == "fit" and args.save_spec is not None:
            _save_spec(spec, settings, args.save_spec)
        return run(spec, out, settings, written)
    except (DataError, SpecError, MissingDependencyError) as exc:
        print(f"hierbayes: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hierbayes: {_interrupted(out, written)}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
