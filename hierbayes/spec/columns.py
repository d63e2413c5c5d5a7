"""What a data column holds, as the design's checks ask it."""

from __future__ import annotations

import pandas as pd

__all__ = ["is_numeric"]


def is_numeric(values: pd.Series | pd.Index) -> bool:
    """Numbers: a numeric dtype that is not boolean (pandas counts booleans as numeric).

    Examples
    --------
    >>> [is_numeric(pd.Series(v)) for v in ([1.5, 2.0], [True, False], ["1", "2"])]
    [True, False, False]
    """
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
