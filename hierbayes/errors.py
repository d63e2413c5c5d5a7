"""Exceptions and warnings raised by hierbayes.

Every error a user can provoke with their data or their specification is a
:class:`ValueError` subclass whose message names the column, the rows and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import get_close_matches

__all__ = [
    "DataError",
    "SpecError",
    "SamplingError",
    "FileFormatError",
    "HierbayesWarning",
    "PriorWarning",
    "IdentifiabilityWarning",
    "MissingDependencyError",
    "DataWarning",
    "SamplingWarning",
    "describe_rows",
    "unknown_name",
]


class DataError(ValueError):
    """The data cannot be used as given: a column is missing, has bad values, or too few groups."""


class SpecError(ValueError):
    """The model specification is invalid: formula, prior, option or spec-file key."""


class FileFormatError(ValueError):
    """A file is not a complete hierbayes fit: truncated, altered, or of another kind."""


class SamplingError(RuntimeError):
    """Sampling finished but failed its diagnostic checks (raised only when asked to be strict)."""


class HierbayesWarning(UserWarning):
    """Base class of the warnings hierbayes issues."""


class PriorWarning(HierbayesWarning):
    """A prior that is allowed but known to behave badly (improper, or biased towards small SDs)."""


class IdentifiabilityWarning(HierbayesWarning):
    """The data carry little information about a parameter (e.g. a group SD with few groups)."""


class DataWarning(HierbayesWarning):
    """Rows were dropped on request (``dropna=True``): how many, and from which groups."""


class SamplingWarning(HierbayesWarning):
    """A sampler diagnostic (divergences, R-hat, ESS, E-BFMI) failed its threshold."""


def describe_rows(labels: Sequence, limit: int = 5) -> str:
    """Describe offending rows by their index labels: the first few and how many in all.

    Examples
    --------
    >>> describe_rows([3, 7, 9, 11, 12, 15, 20])
    '7 rows (3, 7, 9, 11, 12, ...)'
    >>> describe_rows(["Choate"])
    "1 row ('Choate')"
    """
    labels = list(labels)
    shown = ", ".join(repr(label) for label in labels[:limit])
    more = ", ..." if len(labels) > limit else ""
    noun = "row" if len(labels) == 1 else "rows"
    return f"{len(labels)} {noun} ({shown}{more})"


def unknown_name(kind: str, name: str, valid: Sequence[str]) -> str:
    """Message for an unknown registry name: the closest match, then every valid name.

    Examples
    --------
    >>> unknown_name("prior", "halfcauhy", ["halfcauchy", "halfnormal"])
    "unknown prior 'halfcauhy'; did you mean 'halfcauchy'? Valid: 'halfcauchy', 'halfnormal'"
    >>> unknown_name("family", "zzz", ["gaussian"])
    "unknown family 'zzz'. Valid: 'gaussian'"
    """
    close = get_close_matches(name, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    listing = ", ".join(repr(v) for v in valid)
    return f"unknown {kind} {name!r}{hint} Valid: {listing}"


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""
