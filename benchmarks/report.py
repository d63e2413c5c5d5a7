"""The results table of :mod:`run`: one Markdown row per timed job.

Reads only what :mod:`run` keeps on each job (its benchmark, tool, variant, spec and
``result``: the parent's measurements and the worker's record), so it imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["table"]


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(jobs: Sequence[Any]) -> str:
    """The Markdown results table of the timed jobs."""
    head = [
        "model",
        "tool",
        "variant",
        "wall s",
        "min ESS bulk",
        "ESS/s",
        "divergences",
        "max R-hat",
        "peak RSS MB",
        "peak PSS MB",
        "hierbayes/Bambi ESS/s",
        "note",
    ]
    rows = []
    rate: dict[tuple[str, bool], float] = {}
    for job in jobs:
        r = job.result
        s = r.get("record", {}).get("summary", {})
        if r.get("wall_s") and s.get("min_ess_bulk") is not None and r["status"] == "ok":
            r["ess_per_s"] = s["min_ess_bulk"] / r["wall_s"]
            if job.tool == "bambi":
                rate[(job.benchmark.name, job.cold)] = r["ess_per_s"]
    hashes: dict[str, set[str]] = {}
    for job in jobs:
        digest = job.result.get("record", {}).get("data_hash")
        if digest:
            hashes.setdefault(job.benchmark.name, set()).add(digest)
    for job in jobs:
        r = job.result
        rec = r.get("record", {})
        s = rec.get("summary", {})
        b = job.benchmark
        variant = job.variant
        if job.tool == "hierbayes":
            sampler = rec.get("sampler") or job.spec.get("sampler") or "?"
            if job.spec.get("sampler") is None:  # nothing passed: the library's default
                sampler += " (default)"
            used = rec.get("parameterization_used")
            variant += f"; {used}; {sampler}" if used else f"; {sampler}"
        if job.cold:
            variant += "; cold cache"
        ratio = None
        bambi_rate = rate.get((b.name, job.cold))
        notes = [] if r["status"] == "ok" else [r["status"]]
        if job.tool == "hierbayes" and bambi_rate and r.get("ess_per_s"):
            ratio = r["ess_per_s"] / bambi_rate
            if job.vkey.split("-")[0] != b.compare_with:
                notes.append("ratio against Bambi's uncorrelated model")
        if len(hashes.get(b.name, ())) > 1:
            notes.append("the tools read different data")
        if s.get("min_ess_var"):
            notes.append(f"min ESS: {s['min_ess_var']}")
        rows.append(
            [
                b.name,
                job.tool,
                variant,
                _fmt(r.get("wall_s"), 1),
                _fmt(s.get("min_ess_bulk")),
                _fmt(r.get("ess_per_s"), 1),
                _fmt(s.get("divergences")),
                _fmt(s.get("max_rhat"), 3),
                _fmt(r["peak_mb"]["fit_rss"] or None),
                _fmt(r["peak_mb"]["fit_pss"] or None),
                _fmt(ratio, 1) + ("x" if ratio else ""),
                "; ".join(notes),
            ]
        )

    rows = [[c.replace("|", "\\|") for c in row] for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])
