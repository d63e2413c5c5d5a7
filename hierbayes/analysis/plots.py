"""Plots of the reporting layer (matplotlib; each returns its Figure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hierbayes.core.ranks import ecdf_band, ecdf_difference, ecdf_pvalues
from hierbayes.errors import SpecError
from hierbayes.spec.columns import is_numeric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierbayes.spec.families import Family

__all__ = [
    "POOLING_ORDERS",
    "POOLING_VIEWS",
    "PPC_VIEWS",
    "plot_effects",
    "plot_pooling",
    "plot_ppc",
    "plot_sbc",
    "ppc_view",
]


#: How :func:`plot_pooling` orders the groups, top to bottom.
POOLING_ORDERS = ("size", "reliability", "table")
#: Its two views.
POOLING_VIEWS = ("arrows", "scatter")


def _ordered(rows: pd.DataFrame, order: str) -> pd.DataFrame:
    """Groups top to bottom: most rows first ("size"), most reliable first, or as given."""
    if order == "table":
        return rows
    key = "n" if order == "size" else "reliability"
    return rows.sort_values([key, "n"], ascending=False, kind="stable")


def _bulk(rows: pd.DataFrame) -> tuple[float, float]:
    """The axis range: the partial-pooling HDIs, complete pooling, and the no-pooling
    estimates inside Tukey's far-out fences (quartiles -+ 3 IQR); a little room either side."""
    no = rows["no_pooling"].to_numpy(dtype=float)
    no = no[np.isfinite(no)]
    values = [rows["hdi_lower"].min(), rows["hdi_upper"].max()]
    values += [rows["complete_pooling"].min(), rows["complete_pooling"].max()]
    if no.size:
        q1, q3 = np.quantile(no, [0.25, 0.75])
        inside = no[(no >= q1 - 3 * (q3 - q1)) & (no <= q3 + 3 * (q3 - q1))]
        values += [inside.min(), inside.max()]
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def plot_pooling(
    table: pd.DataFrame,
    hdi_prob: float = 0.94,
    *,
    order: str = "size",
    view: str = "arrows",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The shrinkage plot, one panel per (factor, term) of ``table``, a pooling report's table
    (:attr:`hierbayes.PoolingReport.table`), whose HDIs have probability ``hdi_prob``.

    ``view="arrows"``: for each group, an arrow from its no-pooling estimate to its
    partial-pooling posterior mean, the HDI around that mean, and the complete-pooling line;
    groups ordered by ``order`` (``"size"``: most rows on top; ``"reliability"``; ``"table"``).
    The axis keeps to the bulk: the HDIs, complete pooling and the no-pooling estimates
    inside Tukey's far-out fences (quartiles -+ 3 IQR); an estimate beyond is drawn at the
    edge as a triangle pointing out, labelled with its value (a two-pupil school's OLS slope
    need not squeeze the other 64 schools into a tenth of the width).

    ``view="scatter"``: partial against no pooling, one point per group sized by its rows,
    with the line y = x (no pooling) and the complete-pooling estimate (complete pooling):
    the points lie between them.

    Examples
    --------
    >>> from hierbayes.testing import example_report
    >>> report = example_report()
    >>> fig = plot_pooling(report.table, report.hdi_prob)
    >>> [ax.get_title() for ax in fig.axes]
    ['school: Intercept']
    """
    if order not in POOLING_ORDERS:
        raise SpecError(f"order must be one of {POOLING_ORDERS}, got {order!r}")
    if view not in POOLING_VIEWS:
        raise SpecError(f"view must be one of {POOLING_VIEWS}, got {view!r}")
    panels = list(table.groupby(["factor", "term"], sort=False))
    if view == "scatter":
        fig, axes = plt.subplots(1, len(panels), squeeze=False, constrained_layout=True,
                                 figsize=figsize or (4.5 * len(panels), 4.5))  # fmt: skip
        for ax, ((factor, term), rows) in zip(axes[0], panels, strict=True):
            _scatter_panel(ax, rows)
            ax.set_title(f"{factor}: {term}")
        axes[0][0].legend(loc="best", fontsize="small")
        return fig
    height = max(2.5, 0.35 * max(len(rows) for _, rows in panels) + 1.2)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=figsize or (5.5 * len(panels), height),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, ((factor, term), rows) in zip(axes[0], panels, strict=True):
        rows = _ordered(rows, order)
        pos = np.arange(len(rows))[::-1]
        lo, hi = _bulk(rows)
        no = rows["no_pooling"].to_numpy(dtype=float)
        shown = np.clip(no, lo, hi)
        partial = rows["partial_pooling"].to_numpy()
        ax.hlines(
            pos,
            rows["hdi_lower"],
            rows["hdi_upper"],
            color="C0",
            lw=1.5,
            alpha=0.6,
            label=f"{100 * hdi_prob:g}% HDI",
        )
        for y, a, b in zip(pos, shown, partial, strict=True):
            if np.isfinite(a):
                ax.annotate(
                    "",
                    xy=(b, y),
                    xytext=(a, y),
                    arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 1},
                )
        inside = (no >= lo) & (no <= hi)
        ax.plot(no[inside], pos[inside], "o", mfc="white", mec="C3", label="no pooling")
        for side, marker in ((no < lo, "<"), (no > hi, ">")):
            if side.any():
                ax.plot(shown[side], pos[side], marker, color="C3", ms=7)
            for y, value, x in zip(pos[side], no[side], shown[side], strict=True):
                ax.annotate(f"{value:.3g}", (x, y), xytext=(0, 6), textcoords="offset points",
                            ha="left" if marker == "<" else "right", fontsize="x-small",
                            color="C3")  # fmt: skip
        ax.plot(partial, pos, "o", color="C0", label="partial pooling (posterior mean)")
        if "empirical_bayes" in rows:
            ax.plot(rows["empirical_bayes"], pos, "x", color="C2", label="empirical Bayes (REML)")
        complete = rows["complete_pooling"].to_numpy()
        if np.ptp(complete) == 0:
            ax.axvline(complete[0], color="k", ls="--", lw=1, label="complete pooling")
        else:
            ax.plot(complete, pos, "|", color="k", ms=12, label="complete pooling")
        ax.set_xlim(lo, hi)
        ax.set_yticks(pos, [str(g) for g in rows["group"]])
        ax.set_title(f"{factor}: {term}")
        ax.set_xlabel(term)
    axes[0][0].legend(loc="best", fontsize="small")
    return fig


def _scatter_panel(ax: object, rows: pd.DataFrame) -> None:
    """Partial against no pooling, sized by n, with y = x and the complete-pooling line."""
    no = rows["no_pooling"].to_numpy(dtype=float)
    partial = rows["partial_pooling"].to_numpy(dtype=float)
    n = rows["n"].to_numpy(dtype=float)
    lo, hi = _bulk(rows)
    ax.scatter(np.clip(no, lo, hi), partial, s=15 + 60 * n / n.max(), color="C0", alpha=0.7,
               label="groups (area: rows)")  # fmt: skip
    ax.plot([lo, hi], [lo, hi], color="C3", ls="--", lw=1, label="no pooling (y = x)")
    complete = rows["complete_pooling"].to_numpy(dtype=float)
    if np.ptp(complete) == 0:
        ax.axhline(complete[0], color="k", ls=":", lw=1, label="complete pooling")
    ax.set(xlim=(lo, hi), xlabel="no pooling", ylabel="partial pooling")


def plot_sbc(
    ranks: pd.DataFrame,
    n_draws: int,
    *,
    params: Sequence[str] | None = None,
    prob: float = 0.95,
    ncols: int = 4,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """SBC ranks as ECDF differences with simultaneous bands (Säilynoja et al. 2022).

    One panel per parameter: the ECDF of the fractional ranks minus the uniform CDF, and the
    band that a calibrated model's curve leaves anywhere with probability at most
    ``1 - prob``. A curve above the band in the middle means ranks piled low (the posterior
    overestimates the parameter); an S shape, an overconfident posterior. The title gives
    the parameter's ECDF-test p-value. ``ranks`` has one column per parameter, one row per
    simulation, values in ``0..n_draws`` (:attr:`hierbayes.SBCResult.ranks`).

    Examples
    --------
    >>> from hierbayes.testing import example_result
    >>> result = example_result()
    >>> fig = plot_sbc(result.ranks, result.n_draws, params=["tau"])
    >>> fig.axes[0].get_title()
    'tau (p = 0.24)'
    """
    names = list(ranks.columns) if params is None else list(params)
    unknown = [p for p in names if p not in ranks.columns]
    if unknown or not names:
        raise SpecError(
            f"unknown SBC parameter(s) {unknown}; the result has: {list(ranks.columns)}"
        )
    values = ranks.to_numpy()
    z, d = ecdf_difference(values, n_draws)
    difference = pd.DataFrame(d, columns=ranks.columns)
    band = ecdf_band(len(ranks), n_draws, prob)
    p_values = pd.Series(ecdf_pvalues(values, n_draws), index=ranks.columns)
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=figsize or (3.2 * ncols, 2.6 * nrows),
        squeeze=False,
        sharex=True,
        sharey=True,
        constrained_layout=True,
    )
    # Steps from z = 0 to 1, where the ECDF difference is 0 by definition.
    x = np.concatenate([[0.0], z, [1.0]])
    lower = np.concatenate([[0.0], band.lower, [0.0]])
    upper = np.concatenate([[0.0], band.upper, [0.0]])
    for ax, name in zip(axes.flat, names, strict=False):
        ax.fill_between(
            x, lower, upper, step="post", color="0.85", label=f"{100 * prob:g}% simultaneous"
        )
        ax.step(x, np.concatenate([[0.0], difference[name], [0.0]]), where="post", color="C0")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_title(f"{name} (p = {p_values[name]:.2g})", fontsize="medium")
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fractional rank")
    for ax in axes[:, 0]:
        ax.set_ylabel("ECDF difference")
    axes[0][0].legend(loc="lower center", fontsize="small")
    fig.suptitle(f"SBC: {len(ranks)} simulations, ranks 0..{n_draws}", fontsize="medium")
    return fig


#: The posterior predictive check's view per kind of response (:func:`plot_ppc`).
PPC_VIEWS = ("density", "bars", "calibration")


def ppc_view(family: Family) -> str:
    """The view of :func:`plot_ppc` that suits ``family``'s response: a calibration plot for
    0/1, densities for a continuous response, bars for counts and ordinal levels.

    Examples
    --------
    >>> from hierbayes.spec import families
    >>> [ppc_view(families.get(f)) for f in ("bernoulli", "gamma", "poisson", "cumulative")]
    ['calibration', 'density', 'bars', 'bars']
    """
    if family.name == "bernoulli":
        return "calibration"
    return "density" if family.support in ("real", "positive", "unit") else "bars"


def plot_ppc(
    observed: np.ndarray,
    replicated: np.ndarray,
    view: str,
    *,
    response: str = "y",
    predicted: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    labels: Sequence | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """A posterior predictive check: the data against replicated data sets.

    ``replicated`` is (S, N), one replicated data set per row. ``view``:

    * ``"density"`` (continuous responses): the data's histogram as a density, over those of
      the replicated sets;
    * ``"bars"`` (counts, ordinal levels): the data's frequency of each value as bars, with
      the replicated sets' median frequency and 94% interval as points;
    * ``"calibration"`` (0/1 responses): rows binned by ``predicted`` (each row's posterior
      mean probability, (N,)), observed against predicted proportion per bin beside the
      diagonal; and the replicated sets' proportion of ones against the data's.

    With ``groups`` (each row's group, (N,)) and ``labels`` (the groups to show), one panel
    per group: its rows' data against their replicates (for 0/1 responses, the replicated
    proportion of ones against the group's).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_ppc(rng.normal(size=50), rng.normal(size=(20, 50)), "density")
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['y']
    """
    if view not in PPC_VIEWS:
        raise SpecError(f"view must be one of {PPC_VIEWS}, got {view!r}")
    y, reps = np.asarray(observed, dtype=float), np.asarray(replicated, dtype=float)
    if groups is not None:
        labels = list(labels if labels is not None else pd.unique(groups))
        columns = min(len(labels), 3)
        rows_ = -(-len(labels) // columns)
        fig, axes = plt.subplots(rows_, columns, squeeze=False, constrained_layout=True,
                                 figsize=figsize or (4.0 * columns, 3.2 * rows_))  # fmt: skip
        for ax, label in zip(axes.ravel(), labels, strict=False):
            rows = np.asarray(groups) == label
            if not rows.any():
                raise SpecError(f"no rows of group {label!r}")
            panel = "proportion" if view == "calibration" else view
            _ppc_panel(ax, y[rows], reps[:, rows], panel, response)
            ax.set_title(f"{label} ({rows.sum()} rows)")
        for ax in axes.ravel()[len(labels) :]:
            ax.set_visible(False)
        return fig
    if view == "calibration":
        if predicted is None:
            raise SpecError("the calibration view needs each row's predicted probability")
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=figsize or (9.0, 4.0))
        order = np.argsort(predicted)
        bins = np.array_split(order, min(10, len(y)))
        x = [float(np.mean(predicted[b])) for b in bins]
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        ax.plot(x, [float(np.mean(y[b])) for b in bins], "o-", color="C0", label="data")
        ax.set(xlabel=f"predicted P({response} = 1)", ylabel="observed proportion",
               title="calibration, rows in 10 bins")  # fmt: skip
        _ppc_panel(ax2, y, reps, "proportion", response)
        fig.tight_layout()
        return fig
    fig, ax = plt.subplots(figsize=figsize or (6.0, 4.0))
    _ppc_panel(ax, y, reps, view, response)
    ax.set_title("posterior predictive check")
    fig.tight_layout()
    return fig


def _ppc_panel(ax: object, y: np.ndarray, reps: np.ndarray, view: str, response: str) -> None:
    """One panel of :func:`plot_ppc`: density, bars, or the proportion of ones."""
    if view == "proportion":
        ax.hist(reps.mean(axis=1), bins=30, color="C1", alpha=0.6, label="replicated")
        ax.axvline(y.mean(), color="C0", lw=2, label="data")
        ax.set(xlabel=f"proportion of {response} = 1", title="replicated data sets")
        ax.legend(frameon=False)
        return
    if view == "density":
        bins = int(np.clip(2 * np.sqrt(len(y)), 5, 40))
        edges = np.histogram_bin_edges(np.concatenate([y, reps[:50].ravel()]), bins)
        for rep in reps[:50]:
            ax.stairs(np.histogram(rep, edges, density=True)[0], edges, color="C1", alpha=0.15)
        ax.stairs(np.histogram(y, edges, density=True)[0], edges, color="C0", lw=2, label="data")
        ax.set(ylabel="density")
    else:
        values = np.arange(int(np.floor(min(y.min(), np.quantile(reps, 0.005)))),
                           int(np.ceil(max(y.max(), np.quantile(reps, 0.995)))) + 1)  # fmt: skip
        counts = (reps[:, :, None] == values).mean(axis=1)  # (S, K) frequencies
        ax.bar(values, (y[:, None] == values).mean(axis=0), color="C0", alpha=0.5, label="data")
        low, mid, high = np.quantile(counts, [0.03, 0.5, 0.97], axis=0)
        ax.errorbar(values, mid, yerr=[mid - low, high - mid], fmt="o", color="C1", ms=3)
        ax.set(ylabel="frequency")
    label = "replicated (94% interval)" if view == "bars" else "replicated"
    ax.plot([], [], color="C1", label=label)
    ax.set(xlabel=response)
    ax.legend(frameon=False)


def plot_effects(
    table: pd.DataFrame,
    x: str,
    by: str | None = None,
    *,
    response: str = "y",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """A conditional-effects plot of ``table`` (:func:`hierbayes.analysis.effects.effects`):
    the expected response over ``x`` with its HDI band (and the predictive band when the
    table has one), one curve per value of ``by``; a categorical ``x`` as points with
    intervals.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"x": [0.0, 1.0], "mean": [1.0, 2.0],
    ...                       "hdi_lower": [0.5, 1.5], "hdi_upper": [1.5, 2.5]})
    >>> fig = plot_effects(table, "x")
    >>> fig.axes[0].lines[0].get_ydata().tolist()
    [1.0, 2.0]
    """
    fig, ax = plt.subplots(figsize=figsize or (6.0, 4.0))
    numeric = is_numeric(table[x])
    curves = [(None, table)] if by is None else list(table.groupby(by, sort=False))
    for k, (value, rows) in enumerate(curves):
        color = f"C{k % 10}"
        label = (
            None
            if by is None
            else f"{by} = {value:.3g}"
            if isinstance(value, float)
            else f"{by} = {value}"
        )
        if numeric:
            ax.plot(rows[x], rows["mean"], color=color, label=label)
            ax.fill_between(rows[x], rows["hdi_lower"], rows["hdi_upper"], color=color, alpha=0.25)
            if "predictive_lower" in rows:
                ax.fill_between(rows[x], rows["predictive_lower"], rows["predictive_upper"],
                                color=color, alpha=0.1)  # fmt: skip
        else:
            position = np.arange(len(rows)) + 0.15 * (k - (len(curves) - 1) / 2)
            error = [rows["mean"] - rows["hdi_lower"], rows["hdi_upper"] - rows["mean"]]
            ax.errorbar(position, rows["mean"], yerr=error, fmt="o", color=color, label=label)
            ax.set_xticks(np.arange(len(rows)), [str(v) for v in rows[x]])
    ax.set(xlabel=x, ylabel=f"expected {response}")
    if by is not None:
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig
