"""hierbayes links PyTensor's C code to SciPy's OpenBLAS on import, unless told otherwise."""

import ast
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from hierbayes.backend.blas import find_openblas, link_bundled_openblas, linked_flags

FOUND = find_openblas()
needs_openblas = pytest.mark.skipif(
    FOUND is None, reason="no SciPy OpenBLAS with scipy_-prefixed symbols on this platform"
)


def blas_ldflags_in_a_new_process(pytensor_flags: str | None) -> str:
    """``pytensor.config.blas__ldflags`` after ``import hierbayes`` in a fresh Python."""
    env = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
    if pytensor_flags is not None:
        env["PYTENSOR_FLAGS"] = pytensor_flags
    code = "import hierbayes, pytensor; print(repr(pytensor.config.blas__ldflags))"
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


@needs_openblas
def test_importing_hierbayes_links_scipys_openblas():
    assert pytensor.config.blas__ldflags == linked_flags(*FOUND)
    assert link_bundled_openblas() is None  # once only: PyTensor has the value now


@needs_openblas
def test_matrix_products_run_in_blas_and_equal_numpys():
    A, B, x = pt.matrix("A"), pt.matrix("B"), pt.vector("x")
    f = pytensor.function([A, B, x], [A @ x, A @ B, pt.dot(x, x)], mode="FAST_RUN")
    ops = {type(node.op).__name__ for node in f.maker.fgraph.toposort()}
    assert {"CGemv", "Dot22"} <= ops, ops  # CGemv has C code only with a BLAS to call
    rng = np.random.default_rng(0)
    a, b, v = rng.normal(size=(50, 40)), rng.normal(size=(40, 30)), rng.normal(size=40)
    gemv, gemm, dot = f(a, b, v)
    np.testing.assert_allclose(gemv, a @ v, rtol=1e-12)
    np.testing.assert_allclose(gemm, a @ b, rtol=1e-12)
    np.testing.assert_allclose(dot, v @ v, rtol=1e-12)


@needs_openblas
def test_a_new_process_links_unless_the_user_set_the_flags():
    assert blas_ldflags_in_a_new_process(None) == linked_flags(*FOUND)
    assert blas_ldflags_in_a_new_process("blas__ldflags=") == ""  # PyTensor's unlinked state
    assert blas_ldflags_in_a_new_process("blas__ldflags=-lblas") == "-lblas"
