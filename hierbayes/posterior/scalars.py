"""The scalar parameters of a design, one by one: what simulation-based calibration ranks.

Population coefficients, group SDs, correlations (each pair once), the family's auxiliary
parameters (each cutpoint), then every group's coefficient; a distributional parameter's
coefficients, SDs and group coefficients beside the model's. :func:`scalar_values` reads
their variables from a posterior or prior dataset, checking their dims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierbayes.errors import SpecError
from hierbayes.spec.design import Design

__all__ = ["Scalar", "scalar_parameters", "scalar_values"]


@dataclass(frozen=True)
class Scalar:
    """One scalar parameter: its column label, model variable and index within the variable."""

    label: str
    var: str
    index: tuple[int, ...]
    dims: tuple[str, ...]


def scalar_parameters(design: Design) -> list[Scalar]:
    """Population coefficients, group SDs, correlations, the family's auxiliary parameters,
    then every group coefficient; a distributional parameter's coefficients, SDs and group
    coefficients beside the model's."""
    factors = [*design.factors, *(f for d in design.dpars for f in d.factors)]
    names = design.fixed_names + tuple(n for d in design.dpars for n in d.fixed_names)
    out = [Scalar(name, name, (), ()) for name in names]
    for f in factors:
        for t, term in enumerate(f.terms):
            out.append(Scalar(f"sd_{f.name}[{term}]", f"sd_{f.name}", (t,), (f.term_dim,)))
        if f.correlated:
            for i, j in zip(*np.triu_indices(len(f.terms), k=1), strict=True):
                out.append(
                    Scalar(
                        f"corr_{f.name}[{f.terms[i]}, {f.terms[j]}]",
                        f"corr_{f.name}",
                        (int(i), int(j)),
                        (f.term_dim, f"{f.term_dim}2"),
                    )
                )
    for name in design.aux:
        if name == "cutpoints":
            out += [
                Scalar(f"cutpoints[{k}]", name, (k,), ("cutpoint",))
                for k in range(len(design.response_levels) - 1)
            ]
        else:
            out.append(Scalar(name, name, (), ()))
    for f in factors:
        for j, level in enumerate(f.levels):
            for t, term in enumerate(f.terms):
                out.append(
                    Scalar(
                        f"b_{f.name}[{level}, {term}]", f"b_{f.name}", (j, t), (f.name, f.term_dim)
                    )
                )
    return out


def scalar_values(dataset: Any, scalars: Sequence[Scalar], where: str) -> dict[str, np.ndarray]:
    """Each variable's values (chain, draw, ...), checking that its dims are the expected ones."""
    out: dict[str, np.ndarray] = {}
    for s in scalars:
        if s.var in out:
            continue
        if s.var not in dataset:
            raise SpecError(f"{where} has no variable {s.var!r}, which SBC needs")
        var = dataset[s.var]
        if tuple(var.dims[2:]) != s.dims:
            raise SpecError(f"{where}: {s.var!r} has dims {var.dims[2:]}, expected {s.dims}")
        out[s.var] = np.asarray(var.values, dtype=float)
    return out
