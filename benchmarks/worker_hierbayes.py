"""One hierbayes fit in a fresh process: ``python worker_hierbayes.py SPEC.json``.

Started by :mod:`run`, which times the process from its start to the moment this worker
marks the fit done (import, data, model, compilation and sampling, and whatever hierbayes'
own ``fit()`` does after sampling: its diagnostics, group effects of a marginal model, the
log-likelihood), and samples the memory of the process tree. The posterior summary that
follows is timed separately and is not part of the fit's wall time.
"""

from __future__ import annotations

import time

START = time.time()

import inspect  # noqa: E402  (after the clock starts: imports count)
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

#: Leave the non-centered standardised offsets out of the headline min ESS: Bambi drops its
#: own (``*_offset``) from its posterior, so neither tool is scored on them.
EXCLUDE = ("z_",)


def main(spec_path: str) -> None:
    """Fit the model the spec describes and write its record."""
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    times: dict[str, float] = {"interpreter": START}

    import _common

    import hierbayes as hb

    times["import"] = time.time()
    data = _common.read_data(spec["data"], dtype=spec.get("dtype"))
    times["data"] = time.time()
    options: dict[str, Any] = {"se": spec["se"], "priors": spec["priors"]}
    if spec.get("family", "gaussian") != "gaussian":
        options["family"] = spec["family"]
    if spec.get("trials"):
        options["trials"] = spec["trials"]
    if spec.get("parameterization"):
        options["parameterization"] = spec["parameterization"]
    model = hb.Model(spec["formula"], data, **options)
    times["model"] = time.time()
    fit_options: dict[str, Any] = {
        "draws": spec["draws"],
        "tune": spec["tune"],
        "chains": spec["chains"],
        "cores": spec["cores"],
        "random_seed": spec["seed"],
        "progressbar": False,
    }
    accepted = inspect.signature(model.fit).parameters
    for key in ("sampler", "log_likelihood"):
        if spec.get(key) is not None:
            if key not in accepted:
                raise SystemExit(f"this hierbayes' Model.fit takes no {key!r} argument")
            fit_options[key] = spec[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(**fit_options)
    times["fit"] = _common.mark_fit_done(spec["marker"])
    rusage = _common.rusage_mb()

    summary = _common.summarize(fit.idata, exclude=EXCLUDE)
    times["summary"] = time.time()
    own = fit.diagnostics
    record = {
        "tool": "hierbayes",
        "versions": _common.versions(
            ["hierbayes", "pymc", "pytensor", "arviz", "numpy", "nutpie", "numpyro"]
        ),
        "python": sys.version.split()[0],
        "model_repr": repr(model),
        "parameterization_used": fit.idata.attrs.get(
            "parameterization_used", fit.idata.attrs.get("parameterization", "")
        ),
        "sampler": fit.idata.attrs.get("sampler", "pymc"),
        "target_accept": fit.idata.attrs.get("target_accept"),
        "times": times,
        "rusage_mb_at_fit": rusage,
        "summary": summary,
        "own_diagnostics": {
            "divergences": own.divergences,
            "max_rhat": own.max_rhat,
            "min_ess_bulk": own.min_ess_bulk,
        },
        "warnings": sorted(
            {f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught}
        ),
        "n_obs": len(data),
        "data_hash": _common.data_hash(data),
    }
    _common.write_json(spec["record"], record)


if __name__ == "__main__":
    main(sys.argv[1])
