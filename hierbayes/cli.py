"""Command line: ``hierbayes eight-schools`` (the tutorial) and ``hierbayes fit SPEC.toml``.

Both fit a model, print the model, the diagnostics and the pooling table, and write
``pooling.png``, ``pooling.csv`` and ``posterior.nc`` (the whole InferenceData, netCDF)
into ``--out``. Bad input exits with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from hierbayes.datasets import resource_path
from hierbayes.errors import DataError, SpecError
from hierbayes.io import atomic_write
from hierbayes.priors import from_string
from hierbayes.spec import PARAMETERIZATIONS, ModelSpec
from hierbayes.specfile import RunSpec, read_csv, read_spec

__all__ = ["main"]


def run(spec: RunSpec, out: Path, sampler_overrides: dict) -> int:
    """Fit ``spec``, print the results and write them into ``out``; return the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from hierbayes.model import Model

    model = Model.from_spec(spec.model, read_csv(spec.data))
    print(model, end="\n\n")
    settings = {**spec.sampler, **{k: v for k, v in sampler_overrides.items() if v is not None}}
    fit = model.fit(**settings)
    print(f"Diagnostics\n{fit.diagnostics}\n")
    print(f"Population-level and group-SD parameters\n{fit.summary().to_string()}\n")
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "posterior.nc"]
    if model.design.factors:  # a model without group-level terms has no pooling to report
        report = fit.pooling()
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(
                f"Pooling ({100 * report.hdi_prob:g}% HDI)\n"
                f"{report.summary.round(3).to_string(index=False)}\n"
            )
            print(report.table.round(3).to_string(index=False))
        plot = report.plot()
        atomic_write(out / "pooling.png", lambda p: plot.savefig(p, dpi=120, format="png"))
        atomic_write(out / "pooling.csv", lambda p: report.table.to_csv(p, index=False))
        written = [out / "pooling.png", out / "pooling.csv", *written]
    atomic_write(out / "posterior.nc", lambda p: fit.idata.to_netcdf(str(p), engine="h5netcdf"))
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0 if fit.diagnostics.ok else 1


def _parser() -> argparse.ArgumentParser:
    from hierbayes import __version__

    parser = argparse.ArgumentParser(prog="hierbayes", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hierbayes {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def sampler_options(p: argparse.ArgumentParser) -> None:
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
            help="hide the progress bar",
        )

    eight = sub.add_parser("eight-schools", help="the eight-schools tutorial, end to end")
    eight.add_argument("--parameterization", choices=PARAMETERIZATIONS, default=None)
    eight.add_argument(
        "--hyperprior",
        default=None,
        metavar="PRIOR",
        help="prior on the group SD, e.g. halfcauchy:5, halft:3,5, halfnormal:5, "
        "exponential:0.2, invgamma:1,1, halfflat (default halfcauchy:5)",
    )
    eight.add_argument("--out", type=Path, default=Path("results/eight_schools"))
    sampler_options(eight)

    fit = sub.add_parser("fit", help="fit a model described by a TOML spec (see models/)")
    fit.add_argument("spec", type=Path)
    fit.add_argument("--out", type=Path, default=None, help="default: results/<spec name>")
    sampler_options(fit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hierbayes`` command."""
    args = _parser().parse_args(argv)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning ({cat.__name__}): {msg}\n"
    overrides = {
        k: getattr(args, k)
        for k in ("draws", "tune", "chains", "cores", "random_seed", "progressbar")
    }
    try:
        if args.command == "eight-schools":
            spec = read_spec(resource_path("models", "eight_schools.toml"))
            model = spec.model
            priors = dict(model.priors)
            if args.hyperprior:
                priors["sd"] = from_string(args.hyperprior)
            spec = RunSpec(
                name=spec.name,
                model=ModelSpec(
                    model.formula,
                    se=model.se,
                    family=model.family,
                    parameterization=args.parameterization or model.parameterization,
                    priors=priors,
                ),
                data=spec.data,
                sampler=spec.sampler,
            )
            out = args.out
        else:
            spec = read_spec(args.spec)
            out = args.out or Path("results") / spec.name
        return run(spec, out, overrides)
    except (DataError, SpecError) as exc:
        print(f"hierbayes: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hierbayes: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
