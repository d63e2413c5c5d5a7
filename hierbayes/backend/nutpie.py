"""A PyMC model compiled for nutpie, with its C-callable wrappers cached on disk.

nutpie samples a model through two C functions, the log density with its gradient and the
"expand" function that turns a point into the stored variables. ``nutpie.compile_pymc_model``
has PyTensor write both as numba functions (which PyTensor caches on disk) and then wraps each
in a numba ``cfunc`` that it compiles anew in every process: about 5 s for any model, even one
with a single parameter, as numba lowers its own helpers for the wrapper each time. Eight
schools or the Exam HLM sample in under a second, so that compilation was most of the fit.

:func:`compile_model` builds the same object with the same wrappers, written as source with a
key and compiled through PyTensor's numba cache: after the first process, a wrapper is loaded
from disk in a fraction of a second. The key is the PyTensor cache key of the function it
wraps, which covers the graph, its constants and its inputs' types, with the wrapper's own
source and the numba and nutpie versions. The sampler sees the same functions, so the draws
are bit-identical to those of ``nutpie.compile_pymc_model`` with the same seed (a test checks
this).

The data do not enter the key: :func:`lift_data` makes them shared variables first, and the
wrappers read their values from nutpie's user data at run time. So another data set of the
same shapes (a simulation-based calibration's, a simulation study's, the same model refitted
to new responses) reuses the compiled code: 1.1 to 1.5 s a fit of ``y ~ x + (1 | g)`` on 200
rows, against 9.6 to 10.7 s when each compiled anew. Where this route is not available (a
nutpie outside :data:`NUTPIE_SERIES`, whose wrappers may differ, or a PyTensor whose numba cache is
off) the model is compiled by ``nutpie.compile_pymc_model`` as it is: the same draws, only
slower to start.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.compile import SharedVariable
from pytensor.graph.traversal import graph_inputs
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.subtensor import (
    AdvancedIncSubtensor,
    AdvancedIncSubtensor1,
    AdvancedSubtensor,
    AdvancedSubtensor1,
)
from pytensor.tensor.variable import TensorConstant

from hierbayes.backend.initial import scaled_start

__all__ = ["NUTPIE_SERIES", "compile_model", "lift_data"]

#: The nutpie releases whose wrappers and C interface these copy; others compile as usual.
NUTPIE_SERIES = "0.16."

#: nutpie's logp wrapper (``nutpie.compile_pymc._make_c_logp_func``), as source.
LOGP_SOURCE = """
def hierbayes_nutpie_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
{unpack}
    try:
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_dim},))
        logp = carray(logp_, ())
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

#: nutpie's expand wrapper (``nutpie.compile_pymc._make_c_expand_func``), as source.
EXPAND_SOURCE = """
def hierbayes_nutpie_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
{unpack}
    try:
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_expanded},))
        (values,) = inner(x{args})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


def lift_data(model: pm.Model) -> pm.Model:
    """A copy of ``model`` with fixed dims, whose data enter as shared variables.

    The data are the tensor shared variables (among them the priors' locations and scales:
    :func:`hierbayes.backend.distributions.prior_rv`), every constant array of floats and
    every constant array of integers used only as an index or as observed values. Each
    becomes a shared variable named ``hierbayes_data_<i>`` with the value's static shape,
    so the compiled code keeps its shapes but no longer holds the values: another data set
    of the same shapes reuses it from PyTensor's numba cache instead of compiling anew
    (1.1 to 1.5 s against 9.6 to 10.7 s for ``y ~ x + (1 | g)``). Scalar constants stay:
    PyTensor folds them (a Student-t's log-gamma terms) and rewrites on them. The price is
    what PyTensor can no longer fold, expressions of the data alone and checks of the
    priors' scales: on the Exam HLM, 12.1 to 12.7 microseconds a gradient against 10.8.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from pytensor.graph.traversal import graph_inputs
    >>> with pm.Model() as m:
    ...     mu = pm.Normal("mu", 0.0, 2.5)
    ...     y = pm.Normal("y", mu, 1.0, observed=np.array([0.5, 1.5]))
    >>> sorted(v.name for v in graph_inputs([lift_data(m).logp()]) if v.name)
    ['hierbayes_data_0', 'mu']
    """
    from pymc.model.fgraph import fgraph_from_model, model_from_fgraph
    from pymc.model.transform.optimization import freeze_dims_and_data

    model = freeze_dims_and_data(model)
    fgraph, _ = fgraph_from_model(model)
    data = [
        v
        for v in graph_inputs(fgraph.outputs)
        if isinstance(v.type, pt.TensorType)
        and (
            isinstance(v, SharedVariable)
            or isinstance(v, TensorConstant)
            and _is_data(v.data, [node.op for node, _ in fgraph.clients[v]])
        )
    ]
    if not data:
        return model
    lifted = []
    for i, v in enumerate(data):
        value = np.array(v.get_value() if isinstance(v, SharedVariable) else v.data)
        lifted.append(pytensor.shared(value, name=f"hierbayes_data_{i}", shape=value.shape))
    fgraph.replace_all(list(zip(data, lifted, strict=True)), import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def _is_data(value: np.ndarray, clients: list[Any]) -> bool:
    """Whether a constant holds data (:func:`lift_data`), from its value and its users."""
    from pymc.model.fgraph import ModelObservedRV

    if value.dtype.kind == "f":
        return value.ndim > 0
    as_index = (ModelObservedRV, AdvancedSubtensor, AdvancedSubtensor1, AdvancedIncSubtensor,
                AdvancedIncSubtensor1, Elemwise)  # fmt: skip
    # a shape or a single column's index stays a constant, which rewrites can use
    return value.ndim > 0 and value.size > 1 and all(isinstance(op, as_index) for op in clients)


def _cfunc(source: str, name: str, inner: Any, signature: Any, nutpie_version: str) -> Any:
    """A C-callable wrapper of ``inner`` compiled from ``source``, cached on disk when
    PyTensor knows ``inner``'s cache key (else compiled, as nutpie would, but not cached)."""
    import numba
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    key = None
    if inner_key is not None:
        # the module name too: numba rebuilds the globals by importing it (see below)
        text = f"{__name__}|{source}|{inner_key}|{numba.__version__}|{nutpie_version}"
        key = "hierbayes_" + hashlib.sha256(text.encode()).hexdigest()
    function = compile_numba_function_src(
        source,
        name,
        # numba rebuilds a cached function's globals by importing the module named here
        global_env={
            "__name__": __name__,
            "inner": inner,
            "carray": numba.carray,
            "np": np,
            "address_as_void_pointer": address_as_void_pointer,
        },
        cache_key=key,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Cannot cache compiled function", category=numba.NumbaWarning
        )
        _ignore_performance_hints(numba)
        return numba.cfunc(signature, cache=key is not None)(function)


def _ignore_performance_hints(numba: ModuleType) -> None:
    """Silence numba's hints about PyTensor's generated code (e.g. "np.dot() is faster on
    contiguous arrays"), inside a ``warnings.catch_warnings()`` block: the user cannot act on
    them, and PyTensor's numba functions are what nutpie itself compiles."""
    warnings.filterwarnings("ignore", category=numba.NumbaPerformanceWarning)


def _unpack(shared: list[Any], order: list[Any]) -> dict[str, str]:
    """The source lines that read ``shared`` (a function's shared variables) from nutpie's
    user data, which holds the address of each of ``order``'s values, and the call's
    arguments. The shapes and dtypes are written in: the function is compiled for them."""
    # (outside the wrapper's try block: numba splits a try block at every call, and its
    # analysis of the blocks grows with their square)
    lines = [f"    data = carray(user_data_, ({len(order)},), np.intp)"]
    for k, var in enumerate(shared):
        value = var.get_value(borrow=True)
        lines.append(
            f"    d{k} = carray(address_as_void_pointer(data[{order.index(var)}]), "
            f"{tuple(value.shape)!r}, np.{value.dtype.name})"
        )
    args = "".join(f", d{k}" for k in range(len(shared)))
    return {"unpack": "\n".join(lines), "args": args}


def _wrappers(
    n_dim: int, n_expanded: int, logp_fn: Any, expand_fn: Any, nutpie_version: str
) -> tuple[Any, Any, np.ndarray, dict[str, np.ndarray]]:
    """The logp and expand wrappers nutpie calls, around PyTensor's numba functions, with
    the user data they read the shared values from (and those values, which it points to)."""
    import numba

    order = list(dict.fromkeys([*logp_fn.get_shared(), *expand_fn.get_shared()]))
    values = {
        v.name: np.array(v.get_value(), order="C", copy=True) for v in order
    }  # kept alive by the compiled model
    user_data = np.array([values[v.name].ctypes.data for v in order] or [0], dtype=np.intp)
    double = numba.types.CPointer(numba.types.double)
    u64, i64 = numba.types.uint64, numba.types.int64
    logp = _cfunc(
        LOGP_SOURCE.format(n_dim=n_dim, **_unpack(logp_fn.get_shared(), order)),
        "hierbayes_nutpie_logp",
        logp_fn.vm.jit_fn,
        i64(u64, double, double, double, numba.types.voidptr),
        nutpie_version,
    )
    expand = _cfunc(
        EXPAND_SOURCE.format(
            n_dim=n_dim, n_expanded=n_expanded, **_unpack(expand_fn.get_shared(), order)
        ),
        "hierbayes_nutpie_expand",
        expand_fn.vm.jit_fn,
        i64(u64, u64, double, double, numba.types.voidptr),
        nutpie_version,
    )
    return logp, expand, user_data, values


def compile_model(
    model: pm.Model, nutpie: ModuleType, jitter_scales: Mapping[str, float] | None = None
) -> Any:
    """Compile ``model`` for ``nutpie.sample`` with the numba backend (module docstring).

    Returns what ``nutpie.compile_pymc_model(model, backend="numba")`` returns, compiled by it
    when the cached route is not available. Each chain starts at the support point, jittered
    as :func:`hierbayes.backend.initial.scaled_start` does with ``jitter_scales`` (on the
    uncached route, the coefficients in ``jitter_scales`` start unjittered).

    Examples
    --------
    >>> import hierbayes as hb, nutpie  # doctest: +SKIP
    >>> df = hb.datasets.load("eight_schools")  # doctest: +SKIP
    >>> model = hb.Model("y ~ 1 + (1 | school)", df, se="sigma").build()  # doctest: +SKIP
    >>> compiled = compile_model(model, nutpie)  # doctest: +SKIP
    >>> nutpie.sample(compiled, seed=1, progress_bar=False)  # doctest: +SKIP
    """
    try:
        import numba  # noqa: F401  (the wrappers need it)
        from nutpie import compile_pymc as internals
        from pytensor.link.numba.cache import compile_numba_function_src  # noqa: F401

        parts = (
            internals._make_functions,
            internals._prepare_dims_and_coords,
            internals._wrap_with_lock,
            internals.CompiledPyMCModel,
            internals.address_as_void_pointer,
        )
    except (ImportError, AttributeError):
        return _compile_uncached(model, nutpie, jitter_scales)
    # (address_as_void_pointer is only looked for here: _cfunc's wrappers need it)
    make_functions, dims_and_coords, with_lock, compiled_model, _ = parts
    # the wrappers copy nutpie's C interface, which is nutpie's own to change
    same_interface = str(nutpie.__version__).startswith(NUTPIE_SERIES)
    if not same_interface or not pytensor.config.numba__cache:
        return _compile_uncached(model, nutpie, jitter_scales)

    # PyMC cannot turn a model with initial values into a graph (an ordinal model's cutpoints
    # start strictly increasing): take them off the model and give them to the start instead.
    # (The caller's model keeps its own: it is only lent to lift_data without them.)
    given = model.rvs_to_initial_values
    initvals = {rv.name: v for rv, v in given.items() if v is not None}
    model.rvs_to_initial_values = dict.fromkeys(given)
    try:
        lifted = lift_data(model)
    finally:
        model.rvs_to_initial_values = given
    # As nutpie.compile_pymc_model does by default: start at the support point, jittered
    # (large-scale predictors' coefficients less: hierbayes.backend.initial).
    initial_point = with_lock(
        scaled_start(
            lifted,
            jitter_scales or {},
            overrides=initvals,
            default_strategy="support_point",
            return_transformed=True,
        )
    )
    n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info = make_functions(
        lifted,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point,
    )
    logp, expand, user_data, shared_data = _wrappers(
        n_dim, n_expanded, logp_fn, expand_fn, nutpie.__version__
    )
    dims, coords = dims_and_coords(lifted, shape_info)
    return compiled_model(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp,
        compiled_expand_func=expand,
        initial_point_func=initial_point_fn,
        # user_data is hierbayes' own (the addresses of shared_data's values), which
        # nutpie only passes on; so CompiledPyMCModel.with_data does not apply
        shared_data=shared_data,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn,
        expand_func=expand_fn,
    )


def _compile_uncached(
    model: pm.Model, nutpie: ModuleType, jitter_scales: Mapping[str, float] | None
) -> Any:
    """nutpie's own compilation, with the coefficients in ``jitter_scales`` unjittered."""
    import numba

    jittered = {rv for rv in model.free_RVs if rv.name not in (jitter_scales or {})}
    with warnings.catch_warnings():
        _ignore_performance_hints(numba)
        return nutpie.compile_pymc_model(model, backend="numba", jitter_rvs=jittered)
