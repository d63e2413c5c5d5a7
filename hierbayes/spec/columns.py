"""What a data column holds, as the design's checks ask it."""

from __future__ import annotations

import pandas as pd

__all__ = ["is_numeric", "is_number_type"]


def is_numeric(values: pd.Series | pd.Index) -> bool:
    """Numbers: a numeric dtype that is not boolean (pandas counts booleans as numeric).

    Examples
    --------
    >>> [is_numeric(pd.Series(v)) for v in ([1.5, 2.0], [True, False], ["1", "2"])]
    [True, False, False]
    """
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def is_number_type(dtype: object) -> bool:
    """The same question of a column's type, as an engine's schema gives it: a narwhals
    dtype, or a pandas or NumPy one (a Dask frame's).

    Examples
    --------
    >>> import numpy as np
    >>> [is_number_type(np.dtype(t)) for t in ("float64", "int32", "bool", "object")]
    [True, True, False, False]
    """
    if hasattr(dtype, "is_numeric"):  # narwhals: Boolean is not numeric
        return bool(dtype.is_numeric())
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
