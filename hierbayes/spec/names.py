"""Names in the graph and the posterior: each variable and dimension needs one of its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hierbayes.errors import SpecError

__all__ = ["INTERCEPT_PRIOR", "RESERVED_DIMS", "SHIFTED_INTERCEPT", "check_names", "free_name"]


#: Dimension names that belong to the posterior itself (ArviZ reserves chain, draw and
#: __sample__; obs indexes the observations).
RESERVED_DIMS = ("chain", "draw", "__sample__", "obs")

#: What the graph samples in the intercept's place under the intercept shear
#: (:mod:`hierbayes.backend.graph`).
SHIFTED_INTERCEPT = "Intercept_shifted"
#: The Potential that carries the intercept's prior under the shear.
INTERCEPT_PRIOR = "Intercept_prior"


def check_names(
    response: str,
    fixed_names: Sequence[str],
    *,
    aux: Sequence[str],
    factors: Sequence[str],
) -> None:
    """Refuse names that would collide in the graph or the posterior, naming the fix.

    Every variable (response, coefficients, the family's ``aux`` parameters (``sigma``, ...),
    ``sd_/b_/u_/z_/cpc_/corr_/zbar_<f>``, the intercept shear's ``Intercept_shifted``,
    ``b_<f>_shifted`` and ``b_/z_<f>_contrast``, nested centering's ``b_<f>_nested`` and
    ``b_<f>_centered_nested``, ``marginal_<response>``) needs a name of its
    own, and every dimension (each factor, ``<f>_term``, ``<f>_term2``, ``<f>_centered``,
    ``<f>_noncentered``, ``<f>_contrast``, and
    :data:`RESERVED_DIMS`) too.

    Examples
    --------
    >>> check_names("y", ["Intercept", "x"], aux=["sigma"], factors=["g"])
    >>> check_names("y", ["Intercept"], aux=["sigma"], factors=["chain"])
    Traceback (most recent call last):
    ...
    hierbayes.errors.SpecError: grouping column 'chain' cannot keep its name: ...
    """
    names = [response, *fixed_names, *aux]
    if "cutpoints" in aux:
        names.append("cutpoints_centered")  # what the graph samples (backend.graph)
    kinds = ("sd", "b", "u", "z", "cpc", "corr", "zbar")
    names += [f"{kind}_{f}" for f in factors for kind in kinds]
    # what the intercept shear samples (backend.graph)
    names += [f"b_{f}{tag}" for f in factors for tag in ("_shifted", "_centered_shifted")]
    # what nested centering samples (backend.graph)
    names += [f"b_{f}{tag}" for f in factors for tag in ("_nested", "_centered_nested")]
    names += [f"{kind}_{f}_contrast" for f in factors for kind in ("b", "z")]
    if "Intercept" in fixed_names:
        names += [SHIFTED_INTERCEPT, INTERCEPT_PRIOR]
    names.append(f"marginal_{response}")
    keys = sorted({"sd", "corr"} & set(fixed_names))
    if keys:
        raise SpecError(
            f"coefficient {keys[0]!r} would share its prior key with every group-level "
            f"{'SD' if keys[0] == 'sd' else 'correlation'} (priors={{{keys[0]!r}: ...}}): "
            f"rename the column, e.g. data.rename(columns={{{keys[0]!r}: {keys[0] + '_value'!r}}})"
        )
    slashed = [n for n in names if "/" in n]
    if slashed:
        raise SpecError(
            f"model variable {slashed[0]!r} would hold '/', which PyMC does not allow in a "
            "name: write the term without it (I(x * 0.5) for I(x / 2)), compute the column "
            "before fitting, or rename the category levels that hold '/'"
        )
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise SpecError(
            f"model variable name(s) {repeated} would repeat: rename the response or the "
            f"column, e.g. data.rename(columns={{{repeated[0]!r}: {repeated[0] + '_value'!r}}})"
        )
    dims: dict[str, str] = {}
    reserved = RESERVED_DIMS + (("cutpoint",) if "cutpoints" in aux else ())
    for f in factors:
        if f in reserved:
            raise SpecError(
                f"grouping column {f!r} cannot keep its name: {', '.join(reserved)} "
                "are the posterior's own dimensions. Rename it, e.g. "
                f"data.rename(columns={{{f!r}: {f + '_id'!r}}})"
            )
        for suffix in ("", "_term", "_term2", "_centered", "_noncentered", "_contrast"):
            dim = f"{f}{suffix}"
            if dim in dims and dims[dim] != f:
                raise SpecError(
                    f"grouping factors {dims[dim]!r} and {f!r} would both name a "
                    f"dimension {dim!r} of the posterior: rename one of the columns"
                )
            dims[dim] = f
    clash = sorted(set(names) & (set(dims) | set(reserved)))
    if clash:
        raise SpecError(
            f"{clash[0]!r} would name both a variable of the model (the response or a "
            "coefficient) and a dimension of the posterior (a grouping factor, or one of "
            f"{', '.join(RESERVED_DIMS)}): rename the column, e.g. "
            f"data.rename(columns={{{clash[0]!r}: {clash[0] + '_value'!r}}})"
        )


def free_name(name: str, taken: Sequence[str]) -> str:
    """``name``, prefixed with "_" until none of ``taken`` has it: a column of our own beside
    the data's (the count of distinct rows, a cell's summed offsets).

    Examples
    --------
    >>> free_name("rows", ["y", "rows", "_rows"])
    '__rows'
    """
    while name in taken:
        name = f"_{name}"
    return name
