"""Chunks of NumPy work on a few threads.

NumPy releases the GIL in its array loops, so independent chunks of a large array computation
(draws of the group effects, rows of the log-likelihood) run in parallel on threads, with no
copies between processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["MAX_THREADS", "run_chunks"]

#: Threads at most: the machines this targets have two cores, and more threads add memory.
MAX_THREADS = 2


def run_chunks(fill: Callable[..., None], *arguments: Iterable[Any]) -> None:
    """Call ``fill(*args)`` for each tuple of ``arguments``, on up to :data:`MAX_THREADS`.

    ``fill`` writes its results into arrays of its own; an exception in any call is raised
    here once every call has finished.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.zeros(6)
    >>> def fill(start):
    ...     out[start:start + 2] = start
    >>> run_chunks(fill, range(0, 6, 2))
    >>> out.tolist()
    [0.0, 0.0, 2.0, 2.0, 4.0, 4.0]
    """
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, *arguments))
