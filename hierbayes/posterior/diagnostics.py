"""Sampler diagnostics: compute them, judge them, and say what to do when they fail.

Thresholds follow Vehtari et al. (2021, "Rank-normalization, folding, and localization")
and Betancourt (2016): R-hat <= 1.01, bulk and tail ESS >= 100 per chain, E-BFMI >= 0.3,
and no divergent transitions after tuning.

A chain is *stuck* when it adapted a step size below :data:`STUCK_STEP_RATIO` of the other
chains' median, or when one of its parameters barely moves (within-chain SD below
:data:`FROZEN_SD_RATIO` of the other chains' median). Such a chain has not explored the
posterior, and running longer does not help: the message names the chain and the
parameterisation to switch to.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import arviz as az
import numpy as np

from hierbayes.core.convergence import bfmi as convergence_bfmi
from hierbayes.core.convergence import convergence
from hierbayes.errors import SamplingWarning

__all__ = [
    "DRAWN_EXACTLY",
    "Diagnostics",
    "diagnose",
    "RHAT_MAX",
    "ESS_PER_CHAIN",
    "BFMI_MIN",
    "STUCK_STEP_RATIO",
    "FROZEN_SD_RATIO",
]

#: The posterior attribute naming, space-separated, the variables drawn exactly after
#: sampling (:func:`hierbayes.posterior.complete.add_group_effects`), which
#: :func:`diagnose` leaves out.
DRAWN_EXACTLY = "drawn_exactly"
RHAT_MAX = 1.01
ESS_PER_CHAIN = 100
BFMI_MIN = 0.3
#: A chain's step size below this share of the other chains' median: stuck.
STUCK_STEP_RATIO = 0.01
#: A parameter's within-chain SD below this share of the other chains' median: frozen.
FROZEN_SD_RATIO = 0.001


def _worst(
    per_variable: Mapping[str, np.ndarray], reduce: Callable, pick: Callable
) -> tuple[float, str]:
    """The worst value over every variable of one diagnostic, and the variable's name."""
    finite = {}
    for name, values in per_variable.items():
        values = np.asarray(values, dtype=float).ravel()
        values = values[np.isfinite(values)]  # a constant quantity has no R-hat
        if values.size:
            finite[name] = float(reduce(values))
    if not finite:
        return float("nan"), ""
    name = pick(finite, key=finite.get)
    return float(finite[name]), name


def _samples_centered(parameterization: str) -> bool:
    """Whether a plan (``"centered"``, ``"auto: g mixed (...)"``) samples a group centered."""
    return "centered" in parameterization.replace("non-centered", "")


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of one fit.

    ``worst_rhat_var`` and ``worst_ess_var`` name the variables behind ``max_rhat`` and
    ``min_ess_bulk``. ``treedepth_saturation`` is the fraction of draws that hit the
    maximum tree depth.
    """

    chains: int
    draws: int
    divergences_per_chain: tuple[int, ...]
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    bfmi: tuple[float, ...]
    treedepth_saturation: float
    worst_rhat_var: str = ""
    worst_ess_var: str = ""
    #: chain -> what shows it stuck (its step size, a frozen parameter, its tree depth)
    stuck: Mapping[int, str] = field(default_factory=dict)

    @property
    def divergences(self) -> int:
        return int(sum(self.divergences_per_chain))

    @property
    def ess_threshold(self) -> int:
        return ESS_PER_CHAIN * self.chains

    def problems(
        self, *, parameterization: str = "", target_accept: float | None = None
    ) -> list[str]:
        """One message per failed check, each saying what to try, most effective first."""
        ta = f" (now {target_accept:g})" if target_accept is not None else ""
        out = []
        if self.stuck:
            out.append(_stuck_message(self.stuck, parameterization))
        if self.divergences:
            head = (
                f"{self.divergences} divergent transitions after tuning "
                f"(per chain: {list(self.divergences_per_chain)}): the posterior is biased where "
                "the sampler could not follow it."
            )
            can_raise = target_accept is None or target_accept < 0.99
            raise_ta = f"raise target_accept{ta} towards 0.99" if can_raise else ""
            if _samples_centered(parameterization):
                fix = (
                    " The centered graph has a funnel between a group SD and its group effects: "
                    "use parameterization='non-centered' (or 'marginal' for a Gaussian model)"
                    + (f", or {raise_ta}." if can_raise else ".")
                )
            else:
                first = (
                    f" {raise_ta[0].upper()}{raise_ta[1:]}; if they persist, use"
                    if can_raise
                    else " Use"
                )
                fix = (
                    f"{first} a more informative prior on the group SD (prior key 'sd'), above "
                    "all with few groups."
                )
            out.append(head + fix)
        if np.isfinite(self.max_rhat) and self.max_rhat > RHAT_MAX:
            graph = (
                "; with few or noisy groups try parameterization='non-centered'"
                if _samples_centered(parameterization)
                else ""
            )
            advice = (
                f"the stuck chain(s) {sorted(self.stuck)} (see above) are the cause, and "
                "running longer will not help"
                if self.stuck
                else f"Run longer (more tune and draws) and check for divergences{graph}"
            )
            out.append(
                f"max R-hat is {self.max_rhat:.3f} (> {RHAT_MAX}) for {self.worst_rhat_var!r}: "
                f"the chains disagree. {advice}."
            )
        low = min(self.min_ess_bulk, self.min_ess_tail)
        if np.isfinite(low) and low < self.ess_threshold:
            out.append(
                f"min bulk ESS {self.min_ess_bulk:.0f} and tail ESS {self.min_ess_tail:.0f} "
                f"(for {self.worst_ess_var!r}) are below {self.ess_threshold} "
                f"({ESS_PER_CHAIN} per chain): estimates are noisy. Run more draws."
            )
        weak = [c for c, b in enumerate(self.bfmi) if b < BFMI_MIN]
        if weak:
            out.append(
                f"E-BFMI below {BFMI_MIN} in chain(s) {weak} "
                f"({[round(self.bfmi[c], 2) for c in weak]}): "
                "the sampler moves poorly through the energy levels. Use the non-centered graph "
                "or a more informative prior on the group SD."
            )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def failed_checks(self) -> list[str]:
        """The names of the failed checks, in a few words each (for tables).

        Examples
        --------
        >>> d = Diagnostics(4, 100, (0, 2, 0, 0), 1.2, 500.0, 500.0, (1.0,) * 4, 0.0)
        >>> d.failed_checks()
        ['2 divergences', 'R-hat 1.200']
        """
        out = [f"stuck chain(s) {sorted(self.stuck)}"] if self.stuck else []
        if self.divergences:
            out.append(f"{self.divergences} divergences")
        if np.isfinite(self.max_rhat) and self.max_rhat > RHAT_MAX:
            out.append(f"R-hat {self.max_rhat:.3f}")
        low = min(self.min_ess_bulk, self.min_ess_tail)
        if np.isfinite(low) and low < self.ess_threshold:
            out.append(f"ESS {low:.0f}")
        if any(b < BFMI_MIN for b in self.bfmi):
            out.append(f"E-BFMI {min(self.bfmi):.2f}")
        return out

    def __str__(self) -> str:
        lines = [
            f"chains x draws      {self.chains} x {self.draws}",
            f"divergences         {self.divergences}"
            f" (per chain {list(self.divergences_per_chain)})",
            f"max R-hat           {self.max_rhat:.4f}  [{self.worst_rhat_var}]",
            f"min ESS bulk/tail   {self.min_ess_bulk:.0f} / {self.min_ess_tail:.0f}"
            f"  [{self.worst_ess_var}]",
            f"E-BFMI per chain    {[round(b, 2) for b in self.bfmi]}",
            f"max tree depth hit  {100 * self.treedepth_saturation:.1f}% of draws",
            *([f"stuck chains        {sorted(self.stuck)}"] if self.stuck else []),
            "verdict             " + ("ok" if self.ok else "PROBLEMS: see warnings"),
        ]
        return "\n".join(lines)


def _stuck_message(stuck: Mapping[int, str], parameterization: str) -> str:
    chains = sorted(stuck)
    evidence = "; ".join(f"chain {c}: {stuck[c]}" for c in chains)
    if "non-centered" in parameterization or "mixed" in parameterization:
        fix = (
            "parameterization='centered' (groups with many observations each), or "
            "'marginal' for a Gaussian model"
        )
    else:
        fix = "parameterization='non-centered' (few or noisy groups)"
    return (
        f"chain(s) {chains} are stuck ({evidence}): they never explored the posterior, and "
        f"their draws are not from it. Running longer will not help: use {fix}, or fit "
        "again with another random_seed (sampler='nutpie' adapts differently)."
    )


def _stuck_chains(post, stats) -> dict[int, str]:
    """Chains whose step size or one of whose parameters is far below the other chains'."""
    n_chains = post.sizes["chain"]
    if n_chains < 2:
        return {}
    stuck: dict[int, list[str]] = {}
    if "step_size" in stats:
        step = stats["step_size"].transpose("chain", "draw").values[:, -1]
        for c in range(n_chains):
            others = float(np.median(np.delete(step, c)))
            if others > 0 and step[c] < STUCK_STEP_RATIO * others:
                stuck.setdefault(c, []).append(
                    f"step size {step[c]:.2g} against {others:.2g} in the others"
                )
    for name, var in post.data_vars.items():
        sd = var.transpose("chain", "draw", ...).values.reshape(n_chains, post.sizes["draw"], -1)
        sd = sd.std(axis=1)  # (chains, elements)
        for c in range(n_chains):
            others = np.median(np.delete(sd, c, axis=0), axis=0)
            frozen = (others > 0) & (sd[c] < FROZEN_SD_RATIO * others)
            if frozen.any() and not any("frozen" in e for e in stuck.get(c, [])):
                stuck.setdefault(c, []).append(f"{name!r} frozen")
    if stuck and "reached_max_treedepth" in stats:
        depth = stats["reached_max_treedepth"].transpose("chain", "draw").values.mean(axis=1)
        for c in stuck:
            if depth[c] > 0.5:
                stuck[c].append(f"maximum tree depth on {100 * depth[c]:.0f}% of draws")
    return {c: ", ".join(reasons) for c, reasons in sorted(stuck.items())}


def diagnose(idata: az.InferenceData) -> Diagnostics:
    """Compute the diagnostics of a sampled posterior.

    Every posterior variable counts, except those named in the posterior's attribute
    :data:`DRAWN_EXACTLY`: a marginal model's group effects, drawn exactly from their
    conditional posterior given each draw after sampling, whose mixing is that of the
    sampled parameters they are drawn from.

    R-hat and the bulk and tail ESS are those of ``arviz.rhat`` and ``arviz.ess``, computed by
    :mod:`hierbayes.core.convergence` for all elements of a variable at once; so is E-BFMI, as
    ``arviz.bfmi`` computes it.

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(
    ...     posterior={"mu": rng.normal(size=(4, 500))},
    ...     sample_stats={"diverging": np.zeros((4, 500), bool),
    ...                   "energy": rng.normal(size=(4, 500))})
    >>> d = diagnose(idata)
    >>> d.divergences, d.max_rhat < 1.01
    (0, True)
    """
    post = idata.posterior
    exact = set(str(post.attrs.get(DRAWN_EXACTLY, "")).split())
    post = post.drop_vars([name for name in exact if name in post.data_vars])
    stats = idata.sample_stats
    # the rank-normalised split R-hat and bulk and tail ESS of arviz.rhat and arviz.ess,
    # vectorised over each variable's elements (hierbayes.core.convergence); a constant quantity
    # (the unit diagonal of a correlation matrix) has a NaN R-hat, which _worst skips
    rhat, ess_bulk, ess_tail = {}, {}, {}
    for name, var in post.data_vars.items():
        draws = var.transpose("chain", "draw", ...).values
        rhat[name], ess_bulk[name], ess_tail[name] = convergence(draws)
    max_rhat, rhat_var = _worst(rhat, np.max, max)
    min_bulk, ess_var = _worst(ess_bulk, np.min, min)
    min_tail, _ = _worst(ess_tail, np.min, min)
    shape = (post.sizes["chain"], post.sizes["draw"])
    diverging = stats["diverging"].values if "diverging" in stats else np.zeros(shape, bool)
    saturation = 0.0
    if "reached_max_treedepth" in stats:
        saturation = float(np.mean(stats["reached_max_treedepth"].values))
    energy = stats["energy"].transpose("chain", "draw").values if "energy" in stats else None
    bfmi = () if energy is None else tuple(float(b) for b in convergence_bfmi(energy))
    return Diagnostics(
        chains=post.sizes["chain"],
        draws=post.sizes["draw"],
        divergences_per_chain=tuple(int(d) for d in diverging.sum(axis=1)),
        max_rhat=max_rhat,
        min_ess_bulk=min_bulk,
        min_ess_tail=min_tail,
        bfmi=bfmi,
        treedepth_saturation=saturation,
        worst_rhat_var=rhat_var,
        worst_ess_var=ess_var,
        stuck=_stuck_chains(post, stats),
    )


def warn_problems(
    diagnostics: Diagnostics, *, parameterization: str, target_accept: float, stacklevel: int = 3
) -> None:
    """Issue one :class:`~hierbayes.errors.SamplingWarning` per failed check."""
    for message in diagnostics.problems(
        parameterization=parameterization, target_accept=target_accept
    ):
        warnings.warn(message, SamplingWarning, stacklevel=stacklevel)
