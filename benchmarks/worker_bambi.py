"""One Bambi fit in a fresh process of the Bambi virtualenv: ``python worker_bambi.py SPEC.json``.

The counterpart of :mod:`worker_hierbayes`, with Bambi's defaults: ``Model.fit()`` with its
default inference method (``"pymc"``: PyMC's NUTS, ``init="auto"``, PyMC's
``target_accept``), its default non-centered group-level terms and predictor centring.
Only the priors are set, to the priors the hierbayes model resolves (``--bambi-priors
matched``, the default) so that both tools sample the same posterior. Needs neither
hierbayes nor anything beyond Bambi's own dependencies.
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

#: Bambi's posterior already omits its non-centered ``*_offset`` variables; nothing else is
#: left out of the headline min ESS.
EXCLUDE: tuple[str, ...] = ()


def make_prior(bmb: Any, spec: dict[str, Any]) -> Any:
    """``{"dist": "Normal", "args": {"mu": 0, "sigma": {...}}}`` -> ``bmb.Prior``, nested."""
    args = {
        key: make_prior(bmb, value) if isinstance(value, dict) else value
        for key, value in spec["args"].items()
    }
    return bmb.Prior(spec["dist"], **args)


def main(spec_path: str) -> None:
    """Fit the model the spec describes and write its record."""
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    times: dict[str, float] = {"interpreter": START}

    import _common
    import bambi as bmb
    import numpy as np  # noqa: F401  (formulas may call np.log)
    import pymc as pm

    times["import"] = time.time()
    data = _common.read_data(spec["data"], dtype=spec.get("dtype"))
    digest = _common.data_hash(data)
    data = data.rename(columns=spec.get("rename") or {})
    times["data"] = time.time()
    formula = bmb.Formula(spec["formula"], *spec.get("extra", ()))
    options: dict[str, Any] = {"family": spec.get("family", "gaussian")}
    if spec.get("link"):
        options["link"] = spec["link"]
    if spec.get("priors"):
        options["priors"] = {k: make_prior(bmb, v) for k, v in spec["priors"].items()}
    model = bmb.Model(formula, data, **options)
    times["model"] = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = model.fit(
            draws=spec["draws"],
            tune=spec["tune"],
            chains=spec["chains"],
            cores=spec["cores"],
            random_seed=spec["seed"],
            progressbar=False,
        )
    times["fit"] = _common.mark_fit_done(spec["marker"])
    rusage = _common.rusage_mb()

    summary = _common.summarize(idata, exclude=EXCLUDE)
    times["summary"] = time.time()
    record = {
        "tool": "bambi",
        "versions": _common.versions(
            ["bambi", "pymc", "pytensor", "arviz", "formulae", "numpy", "matplotlib"]
        ),
        "python": sys.version.split()[0],
        "model_repr": str(model),
        "parameterization_used": "non-centered" if model.noncentered else "centered",
        "sampler": "pymc (Bambi default)",
        "target_accept": inspect.signature(pm.step_methods.hmc.base_hmc.BaseHMC.__init__)
        .parameters["target_accept"]
        .default,
        "times": times,
        "rusage_mb_at_fit": rusage,
        "summary": summary,
        "warnings": sorted(
            {f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught}
        ),
        "n_obs": len(data),
        "data_hash": digest,
    }
    _common.write_json(spec["record"], record)


if __name__ == "__main__":
    main(sys.argv[1])
