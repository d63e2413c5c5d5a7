"""Plots of the reporting layer (matplotlib; each returns its Figure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierbayes.report import PoolingReport

__all__ = ["plot_pooling"]


def plot_pooling(report: PoolingReport, *, figsize: tuple[float, float] | None = None) -> Figure:
    """The shrinkage plot: for each group, an arrow from its no-pooling estimate to its
    partial-pooling posterior mean, the HDI around that mean, and the complete-pooling line.

    One panel per (factor, term).

    Examples
    --------
    >>> import hierbayes as hb
    >>> fig = hb.report.example_report().plot()
    >>> [ax.get_title() for ax in fig.axes]
    ['school: Intercept']
    """
    panels = list(report.table.groupby(["factor", "term"], sort=False))
    height = max(2.5, 0.35 * max(len(rows) for _, rows in panels) + 1.2)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=figsize or (5.5 * len(panels), height),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, ((factor, term), rows) in zip(axes[0], panels, strict=True):
        pos = np.arange(len(rows))[::-1]
        no = rows["no_pooling"].to_numpy()
        partial = rows["partial_pooling"].to_numpy()
        ax.hlines(
            pos,
            rows["hdi_lower"],
            rows["hdi_upper"],
            color="C0",
            lw=1.5,
            alpha=0.6,
            label=f"{100 * report.hdi_prob:g}% HDI",
        )
        for y, a, b in zip(pos, no, partial, strict=True):
            if np.isfinite(a):
                ax.annotate(
                    "",
                    xy=(b, y),
                    xytext=(a, y),
                    arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 1},
                )
        ax.plot(no, pos, "o", mfc="white", mec="C3", label="no pooling")
        ax.plot(partial, pos, "o", color="C0", label="partial pooling (posterior mean)")
        if "empirical_bayes" in rows:
            ax.plot(rows["empirical_bayes"], pos, "x", color="C2", label="empirical Bayes (REML)")
        complete = rows["complete_pooling"].to_numpy()
        if np.ptp(complete) == 0:
            ax.axvline(complete[0], color="k", ls="--", lw=1, label="complete pooling")
        else:
            ax.plot(complete, pos, "|", color="k", ms=12, label="complete pooling")
        ax.set_yticks(pos, [str(g) for g in rows["group"]])
        ax.set_title(f"{factor}: {term}")
        ax.set_xlabel(term)
    axes[0][0].legend(loc="best", fontsize="small")
    return fig
