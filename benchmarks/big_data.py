"""Fits from per-group sums computed in DuckDB: 10^8 rows from Parquet, and 10^7 rows side by
side with the pandas path (issue: data at any size).

The data are written by DuckDB itself (``hb.datasets.simulate_parquet``):
``y = 1 + 0.5 x + u_0g + u_1g x + e`` with J groups, x and e standard normal, and per group
(u_0, u_1) normal with SDs 1 and 0.3 and correlation 0.4; every number is a hash of the row
number and a seed, so the same file comes out on any machine. Each fit runs in a fresh
process with the library's default settings (4 chains x 1000 draws after 1000 tuning steps,
nutpie), timed from process start to the fit's end, with that process's peak resident
memory (``ru_maxrss``). Nothing here is asserted; the table reports.

Usage (from the repository root)::

    .venv/bin/python benchmarks/big_data.py                       # 10^7 and 10^8
    .venv/bin/python benchmarks/big_data.py --rows 1e6 --pandas   # a quick check
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


def write_data(path: Path, rows: int, groups: int) -> float:
    """Write the Parquet file with DuckDB (:func:`hierbayes.datasets.simulate_parquet`);
    returns the seconds it took."""
    import hierbayes as hb

    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    hb.datasets.simulate_parquet(path, rows, groups, seed=1)
    return time.perf_counter() - start


FIT = """
import json, sys, time
start = time.perf_counter()
import numpy as np
import hierbayes as hb
path, mode = sys.argv[1], sys.argv[2]
if mode == "pandas":
    import pandas as pd
    data = pd.read_parquet(path)
else:
    data = path
read = time.perf_counter()
model = hb.Model(FORMULA, data)
built = time.perf_counter()
fit = model.fit(random_seed=1, progressbar=False)
done = time.perf_counter()
post = fit.idata.posterior
sd, corr = post["sd_g"], post["corr_g"].isel(g_term=0, g_term2=1)
summary = {
    "Intercept": post["Intercept"], "x": post["x"], "sd_Intercept": sd.isel(g_term=0),
    "sd_x": sd.isel(g_term=1), "corr": corr, "sigma": post["sigma"],
}
out = {
    "rows": model.design.n_obs,
    "reduced": model.design.sums is not None,
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
""".replace("FORMULA", repr(FORMULA))


def run_fit(path: Path, mode: str) -> dict:
    """One fit in a fresh process: its record, wall time and the process's own peak memory
    (``os.wait4`` gives that child's rusage alone)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", FIT, str(path), mode],
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
    parser.add_argument("--pandas", action="store_true", help="also fit the smallest via pandas")
    parser.add_argument("--data", default="results/big_data/data", help="where the files go")
    parser.add_argument("--out", default="results/big_data")
    args = parser.parse_args()
    sizes = sorted(int(float(r)) for r in args.rows.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i, rows in enumerate(sizes):
        path = Path(args.data) / f"rows-{rows:.0e}-groups-{args.groups}.parquet"
        made = None if path.exists() else write_data(path, rows, args.groups)
        modes = ["sums", "pandas"] if (args.pandas or len(sizes) > 1) and i == 0 else ["sums"]
        for mode in modes:
            record = run_fit(path, mode)
            record.update(file=path.name, file_mb=path.stat().st_size / 2**20, write_s=made)
            records.append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "draws_head"}), flush=True)
    (out / "results.json").write_text(json.dumps(records, indent=1))
    (out / "results.md").write_text(report(records))
    print(report(records))


def report(records: list[dict]) -> str:
    lines = [
        f"`{FORMULA}`, 10^4 groups, default settings (4 chains x 1000 draws, nutpie)",
        "",
        "| rows | path | file MB | end to end s | fit s | peak MB | R-hat | ESS | x | sd_x |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| | {r['mode']} | failed: {r['error'][-200:]!r} |")
            continue
        peak = f"{r['peak_mb']:,.0f}"
        lines.append(
            f"| {r['rows']:,} | {r['mode']} | {r['file_mb']:,.0f} | {r['wall']:.1f} | "
            f"{r['seconds_fit']:.1f} | {peak} | {r['max_rhat']:.3f} | {r['min_ess_bulk']:,.0f} "
            f"| {r['mean']['x']:.4f} ({r['sd']['x']:.4f}) | {r['mean']['sd_x']:.4f} |"
        )
    pair = [r for r in records if "error" not in r and r["rows"] == records[0].get("rows")]
    if len(pair) == 2:
        diff = max(
            abs(a - b)
            for k in pair[0]["draws_head"]
            for a, b in zip(pair[0]["draws_head"][k], pair[1]["draws_head"][k], strict=True)
        )
        lines += [
            "",
            f"Sums vs pandas at {pair[0]['rows']:,} rows: largest difference of the "
            f"first 50 draws of chain 0 over the six parameters: {diff:.2e}",
        ]
    lines += ["", "Truth: Intercept 1, x 0.5, sd_Intercept 1, sd_x 0.3, corr 0.4, sigma 1"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
