"""What names a formula may call or read beyond the data's columns.

formulae evaluates a term such as ``log(x)`` or ``np.log(t)`` by looking the function up in
an environment (formulae's own transforms ``C``, ``I``, ``scale``, ``center``, ``bs``,
``poly``... come first). hierbayes gives it one of two:

* **the caller's**: a formula written in Python code resolves names where ``hb.Model`` was
  called, as formulae's ``env`` does, so the caller's own functions work; behind the caller's
  names stand NumPy's elementwise functions, so ``log(x)``, ``sqrt(x)`` and ``np.log(x)``
  work without an import.
* **the safe one**: a formula read from a file (a TOML spec, a saved fit) or typed on the
  command line is not the caller's code. Only NumPy's elementwise functions
  (:data:`SAFE_FUNCTIONS`, also as ``np.<name>`` and ``numpy.<name>``), the constants ``pi``
  and ``e``, and formulae's transforms are available, and every other name
  (``__import__``, ``open``, ``os``, ``np.load``) is refused by :func:`check_safe` before
  anything is evaluated, so such a file cannot run code.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from formulae.categorical import ENCODINGS
from formulae.environment import Environment
from formulae.transforms import TRANSFORMS

from hierbayes.errors import SpecError

__all__ = [
    "SAFE",
    "SAFE_FUNCTIONS",
    "Namespace",
    "caller",
    "check_safe",
    "not_row_by_row",
    "resolve",
]

#: NumPy's elementwise functions a formula may call by name (``log(x)``) or as ``np.log(x)``.
SAFE_FUNCTIONS: tuple[str, ...] = (
    "abs", "absolute", "sign", "sqrt", "cbrt", "square", "exp", "exp2", "expm1", "log",
    "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2",
    "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "floor", "ceil", "rint",
    "round", "trunc", "clip", "where", "maximum", "minimum", "fmax", "fmin", "power", "mod",
    "fmod", "hypot", "logaddexp", "deg2rad", "rad2deg", "isnan", "isfinite",
)  # fmt: skip

_FUNCTIONS = {name: getattr(np, name) for name in SAFE_FUNCTIONS}
_MODULE = types.SimpleNamespace(**_FUNCTIONS)

#: The safe namespace: NumPy's elementwise functions, ``np``/``numpy`` holding only those, pi, e.
SAFE: Mapping[str, Any] = types.MappingProxyType(
    {**_FUNCTIONS, "np": _MODULE, "numpy": _MODULE, "pi": np.pi, "e": np.e}
)

#: Names formulae itself provides (transforms and contrast encodings).
_FORMULAE_NAMES = frozenset(TRANSFORMS) | frozenset(ENCODINGS)


class Namespace:
    """The names a formula's terms may use, in lookup order, and whether they are the safe set.

    Examples
    --------
    >>> ns = resolve("safe")
    >>> ns.safe, ns.lookup("log") is np.log, ns.lookup("os")
    (True, True, None)
    """

    def __init__(self, namespaces: Iterable[Mapping[str, Any]], *, safe: bool) -> None:
        self.namespaces = tuple(namespaces)
        self.safe = safe

    def lookup(self, name: str) -> Any:
        """The value of ``name`` (a dotted name looks up attributes), or None."""
        head, *rest = name.split(".")
        for ns in self.namespaces:
            if head in ns:
                value = ns[head]
                for attr in rest:
                    value = getattr(value, attr, None)
                return value
        return None

    def environment(self) -> Environment:
        """The formulae environment (formulae puts its own transforms before it)."""
        return Environment(list(self.namespaces))


def caller(depth: int) -> Namespace:
    """The names of the frame ``depth`` calls above the caller, NumPy's functions behind them."""
    frame = inspect.currentframe()
    try:
        for _ in range(depth + 1):
            if frame.f_back is None:
                break
            frame = frame.f_back
        return Namespace([frame.f_locals, frame.f_globals, SAFE], safe=False)
    finally:
        del frame


def resolve(namespace: str | Mapping[str, Any] | Namespace | None, depth: int = 1) -> Namespace:
    """A :class:`Namespace` from ``hb.Model``'s ``namespace=`` argument.

    None: the caller's names (``depth`` frames up); ``"safe"``: :data:`SAFE` only, checked;
    a mapping: exactly those names, then NumPy's functions.
    """
    if isinstance(namespace, Namespace):
        return namespace
    if namespace is None:
        return caller(depth + 1)
    if isinstance(namespace, str):
        if namespace != "safe":
            raise SpecError(
                f"namespace must be None (the caller's names), 'safe' or a dict of names, "
                f"got {namespace!r}"
            )
        return Namespace([SAFE], safe=True)
    if isinstance(namespace, Mapping):
        return Namespace([dict(namespace), SAFE], safe=False)
    raise SpecError(
        f"namespace must be None, 'safe' or a dict of names, got {type(namespace).__name__}"
    )


def _allowed(name: str, *, call: bool) -> bool:
    if any(part.startswith("_") for part in name.split(".")):
        return False
    if call and name in _FORMULAE_NAMES:
        return True
    head, _, attr = name.partition(".")
    if head in ("np", "numpy"):
        return attr in _FUNCTIONS
    value = SAFE.get(name)
    return value is not None and callable(value) == call


def check_safe(text: str, names: Iterable[tuple[str, bool]], columns: Iterable[str]) -> None:
    """Refuse every called name outside the safe set, and every name with a leading "_".

    A plain name that is neither a column nor a safe constant is left to the missing-column
    check, which suggests the closest column.

    ``names`` are the formula's (name, is_called) pairs; ``text`` is quoted in the message.

    Examples
    --------
    >>> check_safe("y ~ log(x)", [("log", True), ("x", False)], ["y", "x"])
    >>> try:
    ...     check_safe("y ~ open(x)", [("open", True)], ["y", "x"])
    ... except SpecError as exc:
    ...     print(str(exc)[:60])
    formula 'y ~ open(x)' calls 'open', which a formula read fro
    """
    columns = set(columns)
    for name, call in names:
        if (not call and name in columns) or _allowed(name, call=call):
            continue
        if not call and not any(part.startswith("_") for part in name.split(".")):
            continue  # a plain name: a missing column, which check_present names
        what = "calls" if call else "reads"
        kind = "a function" if call else "a name"
        raise SpecError(
            f"formula {text!r} {what} {name!r}, which a formula read from a file or the "
            f"command line may not use: only data columns, NumPy's elementwise functions "
            f"(log, exp, sqrt, ... also as np.log), pi, e and formulae's transforms (C, I, "
            f"scale, center, bs, poly, ...) are allowed there. To use {kind} of your own, "
            "work in Python and pass it: hb.Model(formula, data) finds your names, and "
            "hb.load(path, namespace={...}) takes them"
        )


def _learns_state(name: str) -> bool:
    """A formulae transform that learns from all the rows (a class: scale, bs, poly...)."""
    return inspect.isclass(TRANSFORMS.get(name))


def not_row_by_row(names: Iterable[tuple[str, bool]], namespace: Namespace) -> str | None:
    """Why a formula's terms may not be computed row by row, or None when they are.

    A model fitted from the data's distinct rows (or their cells) evaluates its terms on
    those, not on the rows, so a term must give each row a value from that row alone.
    formulae's stateful transforms learn from all the rows they see (the mean and SD of
    ``scale(x)``, the knots of ``bs(x)``), and distinct rows would teach them other values;
    a method of a column (``x.mean()``) or a function of the caller's may do the same. NumPy's
    ufuncs, ``C``, ``I`` and formulae's other transforms are row by row.

    Examples
    --------
    >>> ns = resolve("safe")
    >>> not_row_by_row([("log", True), ("x", False), ("C", True)], ns) is None
    True
    >>> not_row_by_row([("scale", True), ("x", False)], ns)
    'scale(...) learns from all the rows it sees (its state: a mean, an SD, knots)'
    """
    for name, call in names:
        if not call:
            continue
        if name in _FORMULAE_NAMES:
            if _learns_state(name):
                return (
                    f"{name}(...) learns from all the rows it sees (its state: a mean, an SD, "
                    "knots)"
                )
            continue
        value = namespace.lookup(name)
        if isinstance(value, np.ufunc) or any(value is f for f in _FUNCTIONS.values()):
            continue
        return (
            f"{name}(...) is not one of NumPy's elementwise functions, so it may compute a row's "
            "value from other rows"
        )
    return None
