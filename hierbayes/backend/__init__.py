"""From a spec to draws: the PyMC graph, the marginal likelihood, the plan, samplers.

Importing the backend links PyTensor's C code to SciPy's OpenBLAS where the user has not set
``blas__ldflags`` (:mod:`hierbayes.backend.blas`).
"""

from hierbayes.backend.blas import link_bundled_openblas

link_bundled_openblas()
