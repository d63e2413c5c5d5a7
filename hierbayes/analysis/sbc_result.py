"""The result of a simulation-based calibration run: its ranks, their tests and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hierbayes.analysis.plots import plot_sbc
from hierbayes.core.ranks import Band, chi_square, ecdf_band, ecdf_difference, ecdf_pvalues
from hierbayes.errors import SpecError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SBCInterrupted", "SBCResult", "Uniformity"]


@dataclass(frozen=True)
class Uniformity:
    """Uniformity tests of an SBC run: per parameter, and one Bonferroni verdict.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per scalar parameter: ``ecdf_p`` (exact p-value of the simultaneous ECDF
        test), ``chi2``, ``chi2_p`` (Pearson's test in ``bins`` bins) and ``ecdf_p_adjusted``
        (Bonferroni, ``min(1, m * ecdf_p)``).
    p_value : float
        The combined verdict: ``min(1, m * min ecdf_p)`` over the m parameters.
    alpha : float
        Level of the verdict.
    passed : bool
        ``p_value >= alpha``: no evidence against uniform ranks.
    """

    table: pd.DataFrame
    p_value: float
    alpha: float
    n_simulations: int
    n_draws: int
    bins: int

    @property
    def passed(self) -> bool:
        return bool(self.p_value >= self.alpha)

    @property
    def worst(self) -> str:
        """The parameter with the smallest ECDF p-value."""
        return str(self.table["ecdf_p"].idxmin())

    def __repr__(self) -> str:
        verdict = "uniform" if self.passed else "NOT uniform"
        return (
            f"SBC uniformity ({self.n_simulations} simulations, ranks 0..{self.n_draws}): "
            f"{verdict} at alpha={self.alpha:g}; Bonferroni p = {self.p_value:.3g} over "
            f"{len(self.table)} parameters (worst: {self.worst}, "
            f"ECDF p = {self.table['ecdf_p'].min():.3g})"
        )


@dataclass(frozen=True, eq=False)
class SBCResult:
    """The ranks of an SBC run (see :func:`sbc`).

    Attributes
    ----------
    ranks : pandas.DataFrame
        One row per simulation (index ``simulation``), one column per scalar parameter
        (``Intercept``, ``sd_g[Intercept]``, ``sigma``, ``b_g[g01, Intercept]``, ...); values in
        ``0..n_draws``.
    n_draws : int
        L, the number of (thinned) posterior draws per simulation, and so the largest rank.
    truth : pandas.DataFrame
        The simulated true values, laid out like ``ranks``.
    diagnostics : pandas.DataFrame
        Per simulation: ``divergences``, ``min_ess_bulk`` (of the unthinned draws),
        ``seconds`` (wall time of the fit).
    settings : dict
        The arguments of the run (draws, tune, chains, thin, seed, models).
    n_requested : int
        Simulations asked for; more than ``len(ranks)`` only in the partial result of an
        interrupted run.
    """

    ranks: pd.DataFrame
    n_draws: int
    truth: pd.DataFrame
    diagnostics: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    n_requested: int = 0

    @property
    def n_simulations(self) -> int:
        return len(self.ranks)

    @property
    def complete(self) -> bool:
        return self.n_simulations >= self.n_requested

    @property
    def divergences(self) -> pd.Series:
        """Divergent transitions after tuning, per simulation."""
        return self.diagnostics["divergences"]

    def uniformity(
        self, alpha: float = 0.05, *, bins: int | None = None, n_points: int | None = None
    ) -> Uniformity:
        """Test every parameter's ranks for uniformity, with one Bonferroni verdict.

        Parameters
        ----------
        alpha : float
            Level of the combined verdict ``Uniformity.passed``.
        bins : int, optional
            Bins of the chi-square test (see :func:`chi_square`).
        n_points : int, optional
            ECDF evaluation points (see :func:`ecdf_thresholds`).

        Examples
        --------
        >>> from hierbayes.testing import example_result
        >>> u = example_result().uniformity()
        >>> u.passed, list(u.table.columns)
        (True, ['ecdf_p', 'ecdf_p_adjusted', 'chi2', 'chi2_p'])
        """
        if not 0 < alpha < 1:
            raise SpecError(f"alpha must be in (0, 1), got {alpha!r}")
        if self.n_simulations == 0:
            raise SpecError("no completed simulations to test")
        ranks = self.ranks.to_numpy()
        m = ranks.shape[1]
        p = ecdf_pvalues(ranks, self.n_draws, n_points)
        statistic, chi_p, used_bins = chi_square(ranks, self.n_draws, bins)
        table = pd.DataFrame(
            {
                "ecdf_p": p,
                "ecdf_p_adjusted": np.minimum(1.0, m * p),
                "chi2": statistic,
                "chi2_p": chi_p,
            },
            index=pd.Index(self.ranks.columns, name="parameter"),
        )
        return Uniformity(
            table=table,
            p_value=float(min(1.0, m * p.min())),
            alpha=float(alpha),
            n_simulations=self.n_simulations,
            n_draws=self.n_draws,
            bins=used_bins,
        )

    def ecdf_difference(self, n_points: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
        """Evaluation points and the ECDF difference of each parameter's ranks."""
        z, d = ecdf_difference(self.ranks.to_numpy(), self.n_draws, n_points)
        return z, pd.DataFrame(d, columns=self.ranks.columns)

    def ecdf_band(self, prob: float = 0.95, n_points: int | None = None) -> Band:
        """The simultaneous band of the ECDF difference for this run's N and L."""
        return ecdf_band(self.n_simulations, self.n_draws, prob, n_points)

    def plot(
        self,
        params: Sequence[str] | None = None,
        *,
        prob: float = 0.95,
        ncols: int = 4,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        """ECDF-difference plots with simultaneous bands, one panel per parameter.

        See :func:`hierbayes.analysis.plots.plot_sbc`.

        Examples
        --------
        >>> from hierbayes.testing import example_result
        >>> fig = example_result().plot(["mu", "tau"])
        >>> [ax.get_title().split(" ")[0] for ax in fig.axes]
        ['mu', 'tau']
        """
        return plot_sbc(
            self.ranks, self.n_draws, params=params, prob=prob, ncols=ncols, figsize=figsize
        )

    def __repr__(self) -> str:
        s = self.settings
        partial = "" if self.complete else f" (interrupted: {self.n_requested} requested)"
        div = int((self.divergences > 0).sum()) if len(self.diagnostics) else 0
        return (
            f"hierbayes.SBCResult: {self.n_simulations} simulations{partial}, "
            f"{self.ranks.shape[1]} parameters, ranks 0..{self.n_draws}"
            + (f" ({s['chains']} chain(s) x {s['draws']} draws, thin {s['thin']})" if s else "")
            + f"; {div} simulation(s) with divergences"
        )


class SBCInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`sbc`; ``.result`` holds the simulations that completed."""

    def __init__(self, result: SBCResult) -> None:
        super().__init__(
            f"SBC interrupted after {result.n_simulations} of {result.n_requested} "
            "simulations; the partial result is in the exception's .result"
        )
        self.result = result
