"""A Gaussian model's data as per-group (or per-cell) sums, in place of its rows.

For ``y = X beta + Z u_j + e`` with one grouping factor, every quantity the marginal
likelihood, the exact group-effect draws, the no-pooling and complete-pooling fits and REML
need is a function of each group's cross-products of the columns ``A = [1, x_1, ..., y]``:

    G_j = A_j' A_j      (k x k for each group j; G_j[0, 0] = n_j)

(:mod:`hierbayes.spec.reduce` computes them inside the engine that holds the rows). Their
sum over the groups gives the data's means and SDs, which the default priors use. With
several grouping factors the rows of ``gram`` are cells, each distinct combination of the
groups, and :meth:`GroupSums.by_factor` adds up the cells of each group of one factor.

Examples
--------
>>> import numpy as np
>>> A = np.array([[1, 0.5, 1.0], [1, 1.5, 2.0], [1, 2.0, 4.0]])  # 1, x, y
>>> gram = np.stack([A[:2].T @ A[:2], A[2:].T @ A[2:]])            # groups {0, 1} and {2}
>>> s = GroupSums(("1", "x", "y"), gram, gram[:, 1:, 0], gram[:, 1:, 0], (0, 1), ((0, 1),), 2)
>>> s.n.tolist(), s.n_obs, round(s.mean(2), 4), round(s.sd(1), 4)
([2.0, 1.0], 3, 2.3333, 0.7638)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GroupSums"]


@dataclass(frozen=True, eq=False)
class GroupSums:
    """Per-group cross-products of a model's columns (module docstring).

    Attributes
    ----------
    names : tuple of str
        The columns of ``A``: ``"1"`` (all ones) first, then the data columns, the response
        last.
    gram : ndarray, shape (J, k, k)
        ``A_j' A_j`` for each group, in the order of the factor's levels.
    minimum, maximum : ndarray, shape (J, k - 1)
        Each group's smallest and largest value of the columns after ``"1"``: a column with
        both equal in every group is constant within the groups (a group-level predictor).
    x_cols : tuple of int
        The population-level columns (``X``) as indices into ``names``.
    z_cols : tuple of tuple of int
        Each grouping factor's varying columns (``Z``) as indices into ``names``.
    y_col : int
        The response's index in ``names``.
    table : pandas.DataFrame, optional
        The sums as the engine gave them, one row per group (what a saved fit stores).
    cells : ndarray of int, shape (J, F), optional
        With F > 1 grouping factors, the rows of ``gram`` are cells (one per distinct
        combination of the grouping columns, at most N of them), and ``cells[c, i]`` is the
        group of factor i that cell c lies in; :meth:`by_factor` sums the cells of each
        group. None: one factor, whose groups are the rows of ``gram``.
    """

    names: tuple[str, ...]
    gram: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    x_cols: tuple[int, ...]
    z_cols: tuple[tuple[int, ...], ...]
    y_col: int
    table: Any = None
    cells: np.ndarray | None = None

    @property
    def n(self) -> np.ndarray:
        """Rows per group, (J,)."""
        return self.gram[:, 0, 0]

    @property
    def n_obs(self) -> int:
        return int(round(float(self.n.sum())))

    @property
    def total(self) -> np.ndarray:
        """``A'A`` over all rows, (k, k)."""
        return self.gram.sum(axis=0)

    def mean(self, c: int) -> float:
        """Mean of column ``c`` over the rows."""
        return float(self.total[0, c] / self.n_obs)

    def sd(self, c: int) -> float:
        """Standard deviation (ddof 1) of column ``c``, from its sum and sum of squares."""
        total, n = self.total, self.n_obs
        if n < 2:
            return 0.0
        var = (total[c, c] - total[0, c] ** 2 / n) / (n - 1)
        return float(np.sqrt(max(var, 0.0)))

    def rms(self, c: int) -> float:
        """Root mean square of column ``c``."""
        return float(np.sqrt(self.total[c, c] / self.n_obs))

    def block(self, rows: tuple[int, ...], cols: tuple[int, ...]) -> np.ndarray:
        """The per-group block ``G_j[rows, cols]``, (J, len(rows), len(cols))."""
        return self.gram[:, list(rows)][:, :, list(cols)]

    def by_factor(self, i: int, n_groups: int) -> GroupSums:
        """The sums of factor ``i``'s ``n_groups`` groups (its cells added up), as the sums
        of a one-factor model with that factor's varying columns.

        Examples
        --------
        >>> A = np.array([[1, 0.5, 1.0], [1, 1.5, 2.0], [1, 2.0, 4.0]])  # 1, x, y
        >>> gram = np.stack([np.outer(a, a) for a in A])                # a cell a row
        >>> cells = np.array([[0, 0], [0, 1], [1, 1]])                  # factors f and h
        >>> s = GroupSums(("1", "x", "y"), gram, A[:, 1:], A[:, 1:], (0, 1), ((0,), (0,)), 2,
        ...               cells=cells)
        >>> s.by_factor(1, 2).n.tolist(), s.by_factor(1, 2).maximum[:, 1].tolist()
        ([1.0, 2.0], [1.0, 4.0])
        """
        if self.cells is None:
            return self
        codes = self.cells[:, i]
        k = self.gram.shape[1]
        flat = self.gram.reshape(len(codes), k * k)
        gram = np.stack(
            [np.bincount(codes, flat[:, e], minlength=n_groups) for e in range(k * k)], axis=1
        ).reshape(n_groups, k, k)
        low = np.full((n_groups, k - 1), np.inf)
        high = np.full((n_groups, k - 1), -np.inf)
        np.minimum.at(low, codes, self.minimum)
        np.maximum.at(high, codes, self.maximum)
        z = (self.z_cols[i],)
        return GroupSums(self.names, gram, low, high, self.x_cols, z, self.y_col)
