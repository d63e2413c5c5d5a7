"""Link PyTensor's C code to the OpenBLAS that SciPy's wheels ship.

pip-installed PyTensor finds no BLAS to link its C code to: ``blas__ldflags`` is empty, it
warns "PyTensor could not link to a BLAS installation", and its matrix products (``Dot22``,
``Gemm``, ``Gemv``) run as Python thunks calling NumPy inside the C virtual machine. SciPy's
Linux wheels carry an OpenBLAS (``scipy.libs/libscipy_openblas-*.so``, 32-bit integers: the
interface PyTensor's C code declares) whose symbols are prefixed (``scipy_dgemm_``). Linking
to it, with the eight routines PyTensor calls renamed by preprocessor flags::

    blas__ldflags = -L<scipy.libs> -lscipy_openblas-<hash> -Ddgemm_=scipy_dgemm_ ...

halves the time of a log density and gradient of the marginal models (whose graphs hold
about a dozen matrix products) and spares every process PyTensor's half-second search for a
BLAS (``benchmarks/README.md``, section BLAS). PyTensor adds ``-Wl,-rpath`` for the ``-L``
folder itself. NumPy's own OpenBLAS (``numpy.libs``) has 64-bit integers and cannot serve.

:func:`link_bundled_openblas` runs when :mod:`hierbayes.backend` is imported. It leaves a
``blas__ldflags`` the user has set (``PYTENSOR_FLAGS`` or ``.pytensorrc``; an empty value
keeps PyTensor unlinked) and one PyTensor has already read in this process.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytensor

__all__ = ["SYMBOLS", "find_openblas", "link_bundled_openblas", "linked_flags"]

#: The BLAS routines PyTensor's C code calls (``pytensor/tensor/blas*.py``).
SYMBOLS = ("sgemm_", "dgemm_", "sgemv_", "dgemv_", "sger_", "dger_", "sdot_", "ddot_")


def find_openblas() -> tuple[Path, str, str] | None:
    """(folder, ``-l`` name, symbol prefix) of an LP64 OpenBLAS shipped by a pip package.

    SciPy's wheels bundle one (``scipy.libs``); the ``scipy-openblas32`` package is the same
    library on its own. Either exports ``scipy_dgemm_``; None when neither is found (SciPy
    from conda or a system package, macOS, Windows).

    Examples
    --------
    >>> found = find_openblas()
    >>> found is None or found[2] == "scipy_"
    True
    """
    candidates: list[Path] = []
    try:
        import scipy_openblas32  # type: ignore[import-not-found]

        candidates.append(Path(scipy_openblas32.get_lib_dir()) / scipy_openblas32.get_library())
    except ImportError:
        pass
    import scipy

    libs = Path(scipy.__file__).resolve().parent.parent / "scipy.libs"
    candidates += sorted(libs.glob("libscipy_openblas*.so"))  # the symbols tell LP64 apart
    for path in candidates:
        path = path if path.suffix == ".so" else path.with_name(f"lib{path.name}.so")
        if not path.is_file() or "," in str(path) or " " in str(path):  # flags split there
            continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        if all(hasattr(lib, f"scipy_{s}") for s in SYMBOLS):
            return path.parent, path.stem.removeprefix("lib"), "scipy_"
    return None


def linked_flags(folder: Path, name: str, prefix: str) -> str:
    """``blas__ldflags`` linking to ``lib<name>.so`` in ``folder``, symbols renamed.

    Examples
    --------
    >>> linked_flags(Path("/opt/libs"), "openblas", "scipy_").split()[:3]
    ['-L/opt/libs', '-lopenblas', '-Dsgemm_=scipy_sgemm_']
    """
    renames = " ".join(f"-D{s}={prefix}{s}" for s in SYMBOLS)
    return f"-L{folder} -l{name} {renames}"


def link_bundled_openblas() -> str | None:
    """Set ``pytensor.config.blas__ldflags`` to SciPy's OpenBLAS unless it is already set.

    Returns the flags set, or None when it left the setting alone: the user set it, PyTensor
    has read it already, or no such library was found.

    Examples
    --------
    >>> import pytensor
    >>> link_bundled_openblas() is None  # hierbayes.backend did it on import
    True
    >>> flags = pytensor.config.blas__ldflags
    >>> flags == "" or "-Ddgemm_=scipy_dgemm_" in flags
    True
    """
    config = pytensor.config
    try:
        config.fetch_val_for_key("blas__ldflags")
        return None  # the user's own setting
    except KeyError:
        pass
    if hasattr(type(config).blas__ldflags, "val"):
        return None  # read (searched for) already in this process
    found = find_openblas()
    if found is None:
        return None
    flags = linked_flags(*found)
    config.blas__ldflags = flags
    return flags
