"""Fits of data in Parquet files, never read as rows: 10^8 rows, and 10^7 rows side by side
with the pandas path (issue: data at any size).

The data are written by DuckDB itself (``hb.datasets.simulate_parquet``), every number a hash
of the row number and a seed, so the same file comes out on any machine:

* ``--family gaussian`` (default): ``y ~ x + (x | g)``, fitted from per-group sums computed
  in DuckDB (``y = 1 + 0.5 x + u_0g + u_1g x + e``, SDs 1 and 0.3, correlation 0.4);
* ``--family bernoulli``: ``y ~ C(k) + (1 | g)`` with a three-level k, fitted from the
  distinct rows with their counts (one GROUP BY in DuckDB);
* ``--family poisson``: ``y ~ C(k) + offset(np.log(t)) + (1 | g)`` with a continuous exposure
  t, so that no two rows are alike, fitted from the cells (k, g) with their counts and
  exposures summed (one GROUP BY in DuckDB);
* ``--family crossed``: gaussian, ``y ~ x + (x | g) + (1 | h)`` with ``h`` (``--crossed``
  groups, SD 0.5) crossed with ``g``, fitted from per-cell sums (one GROUP BY g, h): its
  sampling cost grows with the cells (at most groups x crossed), not the rows. NUTS
  trajectories of a crossed model part between the two paths at the 1e-12 level, so compare
  their posterior means, not their draws.

Each fit runs in a fresh process with the library's default settings (4 chains x 1000 draws
after 1000 tuning steps, nutpie), timed from process start to the fit's end, with that
process's peak resident memory (``ru_maxrss``). Nothing here is asserted; the table reports.

Usage (from the repository root)::

    .venv/bin/python benchmarks/big_data.py                        # 10^7 and 10^8
    .venv/bin/python benchmarks/big_data.py --rows 1e6 --pandas    # a quick check
    .venv/bin/python benchmarks/big_data.py --family bernoulli --rows 1e6,1e8
    .venv/bin/python benchmarks/big_data.py --family poisson --rows 1e6,1e7,1e8 --pandas
    .venv/bin/python benchmarks/big_data.py --family crossed --groups 1000 --crossed 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMULA = "y ~ x + (x | g)"


def write_data(path: Path, rows: int, groups: int, family: str, crossed: int) -> float:
    """Write the Parquet file with DuckDB (:func:`hierbayes.datasets.simulate_parquet`);
    returns the seconds it took."""
    import hierbayes as hb

    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    if family == "crossed":
        hb.datasets.simulate_parquet(path, rows, groups, seed=1, crossed=crossed)
    else:
        hb.datasets.simulate_parquet(path, rows, groups, seed=1, family=family)
    return time.perf_counter() - start


FIT = """
import json, sys, time
start = time.perf_counter()
import numpy as np
import hierbayes as hb
path, mode, formula, family = sys.argv[1:5]
if mode == "pandas":
    import pandas as pd
    data = pd.read_parquet(path)
else:
    data = path
read = time.perf_counter()
model = hb.Model(formula, data, family="gaussian" if family == "crossed" else family)
built = time.perf_counter()
fit = model.fit(random_seed=1, progressbar=False)
done = time.perf_counter()
post = fit.idata.posterior
summary = {name: post[name] for name in model.design.fixed_names}
for term in post["g_term"].values:
    summary[f"sd_{term}"] = post["sd_g"].sel(g_term=term)
if "corr_g" in post:
    summary["corr"] = post["corr_g"].isel(g_term=0, g_term2=1)
if "sd_h" in post:
    summary["sd_h"] = post["sd_h"].sel(h_term="Intercept")
if "sigma" in post:
    summary["sigma"] = post["sigma"]
d = model.design
out = {
    "rows": d.n_rows,
    "form": "sums" if d.sums is not None else "cells" if d.summed_offsets is not None
    else "distinct rows" if d.multiplicity is not None else "rows",
    "distinct": d.n_obs if d.multiplicity is not None else None,
    "cells": len(d.sums.gram) if d.sums is not None and d.sums.cells is not None else None,
    "seconds_read": read - start,
    "seconds_model": built - read,
    "seconds_fit": done - built,
    "mean": {k: float(v.mean()) for k, v in summary.items()},
    "sd": {k: float(v.std()) for k, v in summary.items()},
    "divergences": fit.diagnostics.divergences,
    "max_rhat": float(fit.diagnostics.max_rhat),
    "min_ess_bulk": float(fit.diagnostics.min_ess_bulk),
    "draws_head": {k: v.values[0, :50].tolist() for k, v in summary.items()},
}
print("RESULT " + json.dumps(out))
"""

#: family -> the model fitted to ``hb.datasets.simulate_parquet(..., family=family)``
FORMULAS = {
    "gaussian": "y ~ x + (x | g)",
    "bernoulli": "y ~ C(k) + (1 | g)",
    "poisson": "y ~ C(k) + offset(np.log(t)) + (1 | g)",
    "crossed": "y ~ x + (x | g) + (1 | h)",
}


def run_fit(path: Path, mode: str, family: str) -> dict:
    """One fit in a fresh process: its record, wall time and the process's own peak memory
    (``os.wait4`` gives that child's rusage alone)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", FIT, str(path), mode, FORMULAS[family], family],
            stdout=stdout,
            stderr=stderr,
            text=True,
            env={**os.environ, "CI": "1"},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    line = next((s for s in out.splitlines() if s.startswith("RESULT ")), None)
    if status or line is None:
        return {"mode": mode, "error": err[-2000:], "wall": wall}
    record = json.loads(line[len("RESULT ") :])
    record.update(mode=mode, wall=wall, peak_mb=usage.ru_maxrss / 1024)  # KiB on Linux
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e7,1e8", help="comma-separated row counts")
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--family", default="gaussian", choices=sorted(FORMULAS))
    parser.add_argument("--crossed", type=int, default=50, help="h's groups (--family crossed)")
    parser.add_argument("--pandas", action="store_true", help="also fit the smallest via pandas")
    parser.add_argument("--data", default="results/big_data/data", help="where the files go")
    parser.add_argument("--out", default="results/big_data")
    args = parser.parse_args()
    sizes = sorted(int(float(r)) for r in args.rows.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i, rows in enumerate(sizes):
        crossed = f"-crossed-{args.crossed}" if args.family == "crossed" else ""
        name = f"{args.family}-rows-{rows:.0e}-groups-{args.groups}{crossed}.parquet"
        path = Path(args.data) / name
        made = (
            None
            if path.exists()
            else write_data(path, rows, args.groups, args.family, args.crossed)
        )
        modes = ["engine", "pandas"] if (args.pandas or len(sizes) > 1) and i == 0 else ["engine"]
        for mode in modes:
            record = run_fit(path, mode, args.family)
            record.update(file=path.name, file_mb=path.stat().st_size / 2**20, write_s=made)
            records.append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "draws_head"}), flush=True)
    (out / "results.json").write_text(json.dumps(records, indent=1))
    (out / "results.md").write_text(report(records, args.family))
    print(report(records, args.family))


def report(records: list[dict], family: str) -> str:
    lines = [
        f"`{FORMULAS[family]}`, {family}, default settings (4 chains x 1000 draws, nutpie)",
        "",
        "| rows | read as | file MB | end to end s | model s | fit s | peak MiB | R-hat | ESS "
        "| posterior means |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| | {r['mode']} | failed: {r['error'][-200:]!r} |")
            continue
        form = r["form"] + (f" ({r['distinct']:,})" if r.get("distinct") else "")
        form += f" ({r['cells']:,} cells)" if r.get("cells") else ""
        means = ", ".join(f"{k} {v:.3f}" for k, v in r["mean"].items())
        lines.append(
            f"| {r['rows']:,} | {form} ({r['mode']}) | {r['file_mb']:,.0f} | {r['wall']:.1f} | "
            f"{r['seconds_model']:.1f} | {r['seconds_fit']:.1f} | {r['peak_mb']:,.0f} | "
            f"{r['max_rhat']:.3f} | {r['min_ess_bulk']:,.0f} | {means} |"
        )
    pair = [r for r in records if "error" not in r and r["rows"] == records[0].get("rows")]
    if len(pair) == 2 and family in ("crossed", "poisson"):  # other graphs: compare the means
        diff = max(abs(pair[0]["mean"][k] - pair[1]["mean"][k]) for k in pair[0]["mean"])
        lines += [
            "",
            f"Engine vs pandas at {pair[0]['rows']:,} rows: largest difference of the "
            f"posterior means above: {diff:.2e}",
        ]
    elif len(pair) == 2:
        diff = max(
            abs(a - b)
            for k in pair[0]["draws_head"]
            for a, b in zip(pair[0]["draws_head"][k], pair[1]["draws_head"][k], strict=True)
        )
        lines += [
            "",
            f"Engine vs pandas at {pair[0]['rows']:,} rows: largest difference of the first "
            f"50 draws of chain 0 over the parameters above: {diff:.2e}",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
