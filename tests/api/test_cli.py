"""The command line, run in-process with small draws."""

import importlib
import inspect
import os
import re
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest

import hierbayes as hb
import hierbayes.api.cli
from hierbayes.api.cli import main
from hierbayes.backend import samplers
from hierbayes.backend.samplers import SAMPLERS
from hierbayes.spec.specfile import read_spec

from ..conftest import quiet_fit

#: What ``hierbayes fit`` writes for a model with grouping factors, sorted.
WRITTEN = ["pooling.csv", "pooling.png", "posterior.nc", "ppc.png", "summary.txt"]

SMALL = [
    "--draws",
    "500",
    "--tune",
    "500",
    "--chains",
    "4",
    "--cores",
    "2",
    "--seed",
    "1",
    "--no-progress",
]


def test_eight_schools_end_to_end(tmp_path, capsys, eight):
    out = tmp_path / "es"
    assert main(["eight-schools", "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "sd_school: HalfCauchy(beta=5)" in printed and "non-centered" in printed
    assert "verdict             ok" in printed and "shrinkage" in printed
    table = pd.read_csv(out / "pooling.csv")
    np.testing.assert_array_equal(table["no_pooling"], eight["y"])
    idata = az.from_netcdf(out / "posterior.nc")
    assert idata.posterior["b_school"].shape == (4, 500, 8, 1)
    assert "log_likelihood" in idata.groups()
    assert (out / "pooling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == WRITTEN


def test_eight_schools_options_reach_the_model(tmp_path, capsys):
    args = [
        "eight-schools",
        "--parameterization",
        "centered",
        "--hyperprior",
        "halft:3,5",
        "--out",
        str(tmp_path),
        "--draws",
        "100",
        "--tune",
        "100",
        "--chains",
        "2",
        "--seed",
        "3",
        "--no-progress",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)  # centered, 100 draws: expected
        status = main(args)
    printed = capsys.readouterr().out
    assert "sd_school: HalfStudentT(nu=3, sigma=5)" in printed
    assert "family gaussian, centered" in printed
    assert status == (0 if "verdict             ok" in printed else 1)


def test_bad_hyperprior_exits_2_naming_it(tmp_path, capsys):
    assert main(["eight-schools", "--hyperprior", "halfcauhy:5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "hierbayes: error: --hyperprior: unknown prior 'halfcauhy'; did you mean 'halfcauchy'?"
    )
    assert not any(tmp_path.iterdir())


def write_spec(tmp_path, extra=""):
    df = pd.DataFrame(
        {
            "y": [28.0, 8, -3, 7, -1, 1, 18, 12],
            "s": [15.0, 10, 16, 11, 9, 11, 10, 18],
            "g": list("ABCDEFGH"),
        }
    )
    df.to_csv(tmp_path / "d.csv", index=False)
    spec = tmp_path / "m.toml"
    spec.write_text(
        '[model]\nformula = "y ~ 1 + (1 | g)"\ndata = "d.csv"\nse = "s"\n'
        '[priors]\nsd = { dist = "halfnormal", sigma = 5 }\n'
        "[sampler]\ndraws = 500\ntune = 500\nchains = 4\ncores = 2\nrandom_seed = 5\n" + extra
    )
    return spec


def test_fit_from_spec_file(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert main(["fit", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "sd_g: HalfNormal(sigma=5)" in capsys.readouterr().out
    idata = az.from_netcdf(tmp_path / "out" / "posterior.nc")
    assert idata.posterior.sizes["draw"] == 500 and idata.attrs["random_seed"] == 5


def test_the_clis_posterior_loads_and_predicts(tmp_path, capsys):
    """One writer for fits: hb.load reads the CLI's posterior.nc, and predicts from it."""
    spec = write_spec(tmp_path)
    assert main(["fit", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    fit = hb.load(tmp_path / "out" / "posterior.nc")
    assert fit.model.spec.se == "s" and fit.idata.attrs["random_seed"] == 5
    new = pd.DataFrame({"g": ["A", "H"]}, index=[10, 11])
    post = fit.idata.posterior
    expected = post["Intercept"].values[..., None] + post["u_g"].sel(g=["A", "H"]).values[..., 0]
    np.testing.assert_allclose(fit.predict(new).values, expected, rtol=1e-12)
    table = pd.read_csv(tmp_path / "out" / "pooling.csv")
    np.testing.assert_allclose(table["partial_pooling"], fit.pooling().table["partial_pooling"])


@pytest.mark.parametrize(
    "extra, message",
    [
        ("seed = 3\n", r"\[sampler\]: unknown key 'seed'"),
        ("[extra]\nx = 1\n", "unknown key 'extra'"),
    ],
)
def test_spec_file_unknown_keys_are_errors(tmp_path, capsys, extra, message):
    spec = write_spec(tmp_path, extra)
    assert main(["fit", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_spec_file_missing_data_and_bad_toml(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nformula = "y ~ 1"\ndata = "nope.csv"\n')
    assert main(["fit", str(bad)]) == 2
    assert "[model] data: data file 'nope.csv' does not exist" in capsys.readouterr().err
    bad.write_text("[model\n")
    assert main(["fit", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_reference_specs_in_models_folder_read():
    from hierbayes.api.datasets import resource_path

    specs = sorted(resource_path("models").glob("*.toml"))
    assert specs, "models/ holds the reference specs"
    for path in specs:
        spec = read_spec(path)
        assert spec.data.is_file(), spec.data


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "hierbayes.api.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"hierbayes {hb.__version__}"


def test_fit_spec_without_group_terms_writes_the_posterior_only(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pd.DataFrame({"y": rng.normal(size=40), "x": rng.normal(size=40)}).to_csv(
        tmp_path / "d.csv", index=False
    )
    spec = tmp_path / "ols.toml"
    spec.write_text(
        '[model]\nformula = "y ~ x"\ndata = "d.csv"\n'
        "[sampler]\ndraws = 500\ntune = 500\nchains = 4\nrandom_seed = 1\n"
    )
    assert (
        main(["fit", str(spec), "--out", str(tmp_path / "out"), "--cores", "2", "--no-progress"])
        == 0
    )
    assert "Pooling" not in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "posterior.nc",
        "ppc.png",
        "summary.txt",
    ]


# --- options, progress, interrupts and bad values; no sampling unless said ---------------


class Stop(Exception):
    """Raised by a stand-in for Model.fit once it has recorded its arguments."""


@pytest.fixture
def recorded(monkeypatch):
    """Model.fit replaced: records the model's parameterization and design and fit's
    arguments."""
    calls = []

    def fit(self, **kwargs):
        calls.append(
            {"parameterization": self.spec.parameterization, "design": self.design, **kwargs}
        )
        raise Stop

    monkeypatch.setattr(hb.Model, "fit", fit)
    return calls


def command(name, tmp_path):
    if name == "eight-schools":
        return ["eight-schools", "--out", str(tmp_path / "out")]
    return ["fit", str(write_spec(tmp_path)), "--out", str(tmp_path / "out")]


@pytest.mark.parametrize("name", ["eight-schools", "fit"])
def test_sampler_and_parameterization_reach_model_and_fit(tmp_path, recorded, name):
    options = ["--sampler", "pymc", "--parameterization", "marginal", "--draws", "10"]
    with pytest.raises(Stop):
        main([*command(name, tmp_path), *options, "--seed", "3", "--no-progress"])
    (call,) = recorded
    assert call["parameterization"] == "marginal"
    assert call["sampler"] == "pymc"
    assert (call["draws"], call["random_seed"], call["progressbar"]) == (10, 3, False)
    assert not (tmp_path / "out").exists()


def test_defaults_the_default_sampler_the_specs_parameterization_and_a_terminal_progress_bar(
    tmp_path, recorded
):
    """Without options: the default sampler, the spec's parameterization (the model's default when
    the spec has none), and progressbar=None, which Model.fit turns on in a terminal."""
    with pytest.raises(Stop):
        main(command("eight-schools", tmp_path))
    with pytest.raises(Stop):
        main(command("fit", tmp_path))  # write_spec gives no parameterization
    eight, spec = recorded
    assert eight["sampler"] == spec["sampler"] == samplers.DEFAULT_SAMPLER == "nutpie"
    assert eight["progressbar"] is spec["progressbar"] is None
    assert eight["parameterization"] == "non-centered"  # models/eight_schools.toml
    default = inspect.signature(hb.Model).parameters["parameterization"].default
    assert spec["parameterization"] == default
    assert (spec["draws"], spec["chains"], spec["random_seed"]) == (500, 4, 5)  # [sampler]


def test_sampler_choices_are_the_three_samplers():
    """The choices the CLI offers are the samplers Model.fit knows; nutpie's is the default of
    both (and of the backend's sample)."""
    assert SAMPLERS == ("pymc", "nutpie", "numpyro")
    assert inspect.signature(hb.Model.fit).parameters["sampler"].default == "nutpie"
    assert inspect.signature(samplers.sample).parameters["sampler"].default == "nutpie"


@pytest.mark.parametrize(
    "option, value",
    [("--sampler", "stan"), ("--parameterization", "noncentred")],
)
def test_unknown_choices_exit_2(tmp_path, capsys, recorded, option, value):
    with pytest.raises(SystemExit) as info:
        main([*command("fit", tmp_path), option, value])
    assert info.value.code == 2
    assert f"argument {option}: invalid choice: '{value}'" in capsys.readouterr().err
    assert not recorded


@pytest.mark.parametrize(
    "options, message",
    [
        (["--draws", "-5"], "--draws: must be a whole number from 1 to 1,000,000, got -5"),
        (["--draws", "0"], "--draws: must be a whole number from 1 to 1,000,000, got 0"),
        (
            ["--tune", "10000000"],
            "--tune: must be a whole number from 1 to 1,000,000, got 10000000",
        ),
        (["--chains", "1000"], "--chains: must be a whole number from 1 to 64, got 1000"),
        (["--cores", "0"], "--cores: must be a whole number from 1 to 64, got 0"),
        (["--seed", "-1"], "--seed: must be a whole number from 0 to 4,294,967,295, got -1"),
    ],
)
def test_bad_sampler_options_exit_2_before_sampling(tmp_path, capsys, recorded, options, message):
    assert main([*command("fit", tmp_path), *options]) == 2
    assert capsys.readouterr().err == f"hierbayes: error: {message}\n"
    assert not recorded


def test_out_that_is_a_file_exits_2_before_sampling(tmp_path, capsys, recorded):
    (tmp_path / "taken").write_text("a file")
    args = ["fit", str(write_spec(tmp_path)), "--out", str(tmp_path / "taken" / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (
        f"hierbayes: error: --out {str(tmp_path / 'taken' / 'out')!r}: "
        f"{str(tmp_path / 'taken')!r} is a file, not a folder\n"
    )
    assert not recorded


def test_spec_sampler_table_is_checked(tmp_path, capsys, recorded):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("draws = 500", "draws = -500"))
    assert main(["fit", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"hierbayes: error: {spec} [sampler] draws: must be a whole number from 1 to "
        "1,000,000, got -500\n"
    )


def test_formula_error_prints_the_caret(tmp_path, capsys, recorded):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("y ~ 1 + (1 | g)", "y ~ 1 + (1 | g"))
    assert main(["fit", str(spec)]) == 2
    assert capsys.readouterr().err == (
        f"hierbayes: error: {spec} [model] formula: formula 'y ~ 1 + (1 | g' has a syntax "
        "error at position 14: unclosed '(' (opened at position 8)\n"
        "  y ~ 1 + (1 | g\n"
        "                ^\n"
    )


def test_missing_optional_sampler_exits_2(tmp_path, capsys, monkeypatch):
    def fit(self, **kwargs):
        raise hb.errors.MissingDependencyError('numpyro is not installed: pip install "x[y]"')

    monkeypatch.setattr(hb.Model, "fit", fit)
    assert main([*command("fit", tmp_path), "--sampler", "numpyro"]) == 2
    assert capsys.readouterr().err == (
        'hierbayes: error: numpyro is not installed: pip install "x[y]"\n'
    )


@pytest.mark.parametrize("name", ["eight-schools", "fit"])
def test_ctrl_c_while_sampling_exits_130_writing_nothing(tmp_path, capsys, monkeypatch, name):
    def fit(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hb.Model, "fit", fit)
    assert main(command(name, tmp_path)) == 130
    out = tmp_path / "out"
    assert capsys.readouterr().err == f"hierbayes: interrupted: nothing was written to {out}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [] if name == "eight-schools" else ["d.csv", "m.toml"]
    )


def test_ctrl_c_before_the_output_folder_is_known(tmp_path, capsys, monkeypatch):
    def read_spec(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(hierbayes.api.cli, "read_spec", read_spec)
    assert main(["fit", str(tmp_path / "m.toml")]) == 130
    assert capsys.readouterr().err == "hierbayes: interrupted: nothing was written\n"


@pytest.mark.parametrize("phase", ["tuning", "sampling"])
def test_ctrl_c_that_pymc_swallows_is_still_an_interrupt(tmp_path, capsys, monkeypatch, phase):
    """PyMC catches Ctrl-C while sampling and returns the draws so far (or fails during
    tuning); the command must not take them for a finished posterior. A real SIGINT is sent
    from PyMC's per-draw callback, as Ctrl-C would send it."""
    sample = pm.sample

    def interrupted_sample(*args, **kwargs):
        def callback(trace, draw):
            if draw.draw_idx == (20 if phase == "tuning" else 120):
                signal.raise_signal(signal.SIGINT)

        return sample(*args, **kwargs, callback=callback)

    monkeypatch.setattr(pm, "sample", interrupted_sample)
    args = [*command("fit", tmp_path), "--draws", "100", "--tune", "100", "--chains", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what a truncated run may warn is not under test
        status = main([*args, "--cores", "1", "--no-progress", "--sampler", "pymc"])
    assert status == 130
    err = capsys.readouterr().err
    assert err.endswith(f"hierbayes: interrupted: nothing was written to {tmp_path / 'out'}\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a numba compile in the CLI process (about 16 s on an empty cache)
def test_ctrl_c_that_nutpie_swallows_is_still_an_interrupt(tmp_path, capsys, monkeypatch):
    """nutpie catches Ctrl-C and returns the draws so far; a real
    SIGINT, sent 1 s into a run far longer than that, must still stop the command."""
    import nutpie

    sample = nutpie.sample

    def interrupted_sample(*args, **kwargs):
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        return sample(*args, **kwargs)

    monkeypatch.setattr(nutpie, "sample", interrupted_sample)
    args = [*command("fit", tmp_path), "--draws", "1000000", "--tune", "100", "--chains", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what a truncated run may warn is not under test
        status = main([*args, "--cores", "1", "--no-progress", "--sampler", "nutpie"])
    assert status == 130
    err = capsys.readouterr().err
    assert err.endswith(f"hierbayes: interrupted: nothing was written to {tmp_path / 'out'}\n")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def small_fit():
    """The model of write_spec, fitted briefly: a stand-in for what Model.fit returns."""
    df = pd.DataFrame(
        {
            "y": [28.0, 8, -3, 7, -1, 1, 18, 12],
            "s": [15.0, 10, 16, 11, 9, 11, 10, 18],
            "g": list("ABCDEFGH"),
        }
    )
    model = hb.Model(
        "y ~ 1 + (1 | g)",
        df,
        se="s",
        priors={"sd": hb.priors.HalfNormal(5)},
        parameterization="non-centered",
    )
    return quiet_fit(model, draws=100, tune=100, chains=2, cores=1, random_seed=1)


def fake_fit(monkeypatch, fit):
    monkeypatch.setattr(hb.Model, "fit", lambda self, **kwargs: fit)


def cut(path, **kwargs):
    """An inner writer cut short by Ctrl-C."""
    Path(path).write_bytes(b"half a fi")
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "writer", ["matplotlib.figure.Figure.savefig", "arviz.InferenceData.to_netcdf"]
)
def test_ctrl_c_while_writing_writes_nothing(tmp_path, capsys, monkeypatch, small_fit, writer):
    """Ctrl-C in the first or the last writer: no file is replaced, no temporary is left,
    and a folder the command made is removed again."""
    fake_fit(monkeypatch, small_fit)
    module, cls, method = writer.rsplit(".", 2)
    target = getattr(importlib.import_module(module), cls)
    monkeypatch.setattr(target, method, lambda self, path, **kw: cut(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)
        assert main(command("fit", tmp_path)) == 130
    out = tmp_path / "out"
    assert capsys.readouterr().err == f"hierbayes: interrupted: nothing was written to {out}\n"
    assert not out.exists()
    out.mkdir()
    (out / "pooling.csv").write_text("an earlier run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)
        assert main(command("fit", tmp_path)) == 130
    assert [p.name for p in out.iterdir()] == ["pooling.csv"]
    assert (out / "pooling.csv").read_text() == "an earlier run"


def test_ctrl_c_between_renames_names_the_complete_files(tmp_path, capsys, monkeypatch, small_fit):
    fake_fit(monkeypatch, small_fit)
    replace = os.replace

    def replace_then_interrupt(src, dst):
        replace(src, dst)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)
        assert main(command("fit", tmp_path)) == 130
    out = tmp_path / "out"
    assert capsys.readouterr().err == (
        f"hierbayes: interrupted: pooling.png in {out} is complete; nothing else was written\n"
    )
    assert [p.name for p in out.iterdir()] == ["pooling.png"]


def test_results_written_together(tmp_path, capsys, monkeypatch, small_fit):
    fake_fit(monkeypatch, small_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.SamplingWarning)
        status = main(command("fit", tmp_path))
    out = tmp_path / "out"
    assert status == (0 if small_fit.diagnostics.ok else 1)
    assert sorted(p.name for p in out.iterdir()) == WRITTEN
    names = ("pooling.png", "pooling.csv", "ppc.png", "summary.txt", "posterior.nc")
    written = ", ".join(str(out / n) for n in names)
    assert capsys.readouterr().out.endswith(f"\nwrote {written}\n")


GOOD = pd.DataFrame(
    {
        "y": [28.0, 8, -3, 7, -1, 1, 18, 12],
        "x": [0.5, 1.2, -0.3, 0.8, 2.0, -1.1, 0.1, 0.9],
        "s": [15.0, 10, 16, 11, 9, 11, 10, 18],
        "k": [1, 0, 3, 2, 5, 1, 0, 4],
        "n": [5, 5, 5, 5, 6, 6, 6, 6],
        "g": list("AABBCCDD"),
    }
)


@pytest.mark.parametrize(
    "edit, model, message",
    [
        (
            {},
            'formula = "y ~ x + (1 | gg)"',
            "column 'gg' is used by the model but is not in the data. Did you mean 'g'?",
        ),
        (
            {"x": [0.5, np.nan, -0.3, 0.8, 2.0, np.nan, 0.1, 0.9]},
            "",
            "column 'x' has missing "
            "values (NaN/None) in 2 rows (1, 5). hierbayes never drops rows silently",
        ),
        (
            {"y": [28.0, 8, -3, 7, -1, 1, 18, "inf"]},
            "",
            "column 'y' has infinite values in 1 row (7)",
        ),
        ({"y": list("abcdefgh")}, "", "response column 'y' has dtype"),
        (
            {"s": [15.0, 0, 16, 11, -9, 11, 10, 18]},
            'se = "s"',
            "standard-error column 's' has "
            "values <= 0 in 2 rows (1, 4): known standard errors must be positive",
        ),
        (
            {"x": [1.0] * 8},
            "",
            "population-level terms: predictor 'x' is constant (1 in every "
            "row), so its effect cannot be told from the intercept: remove it from the formula",
        ),
        (
            {},
            'formula = "y ~ x + w + (1 | g)"',
            "population-level terms: predictor 'w' is a "
            "linear combination of ['Intercept', 'x'] (perfectly collinear): remove one of them",
        ),
        (
            {},
            'formula = "k ~ x + (1 | g)"\nfamily = "bernoulli"',
            "response column 'k' has "
            "values that are not 0 or 1 in 4 rows (2, 3, 4, 7), as the bernoulli family needs",
        ),
        (
            {"k": [1, 0, -3, 2, 5, 1.5, 0, 4]},
            'formula = "k ~ x + (1 | g)"\nfamily = "poisson"',
            "response column 'k' has values that are not non-negative integer counts in 2 rows "
            "(2, 5)",
        ),
        (
            {"k": [1, 0, 3, 2, 9, 1, 0, 4]},
            'formula = "k ~ x + (1 | g)"\nfamily = "binomial"\ntrials = "n"',
            "response column 'k' exceeds its number of trials in 1 row (4): "
            "successes must lie in 0..trials",
        ),
        (
            {},
            '[priors]\nIntercpt = "normal:0,5"',
            "unknown prior key 'Intercpt'; did you mean 'Intercept'?",
        ),
    ],
)
def test_data_and_spec_problems_exit_2_naming_column_and_rows(
    tmp_path, capsys, recorded, edit, model, message
):
    """Each problem stops the command before sampling, with one message naming the column,
    the rows and the fix (the TOML spec path of the Model checks)."""
    data = GOOD.assign(w=2 * GOOD["x"] + 1, **edit)
    data.to_csv(tmp_path / "d.csv", index=False)
    lines = ["[model]", 'formula = "y ~ x + (1 | g)"', 'data = "d.csv"']
    if model.startswith("formula"):
        lines = lines[:1] + lines[2:]
    if model.startswith("[priors]"):
        lines.append(model)
    elif model:
        lines.insert(1, model)
    (tmp_path / "m.toml").write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.IdentifiabilityWarning)  # four groups
        status = main(["fit", str(tmp_path / "m.toml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("hierbayes: error: " + message), err
    assert not recorded and not (tmp_path / "out").exists()


def test_groups_with_one_observation_reach_the_sampler(tmp_path, recorded):
    GOOD.assign(g=list("ABCDEFGH")).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "m.toml").write_text(
        '[model]\nformula = "y ~ x + (1 | g)"\ndata = "d.csv"\nse = "s"\n'
    )
    with pytest.raises(Stop):
        main(["fit", str(tmp_path / "m.toml"), "--out", str(tmp_path / "out")])
    assert len(recorded) == 1


def test_out_of_range_prior_arguments_name_the_key(tmp_path, capsys, recorded):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("sigma = 5", "sigma = -5"))
    assert main(["fit", str(spec)]) == 2
    assert capsys.readouterr().err == (
        f"hierbayes: error: {spec} [priors] sd: HalfNormal: sigma must be a positive finite "
        "number, got -5\n"
    )
    assert main(["eight-schools", "--hyperprior", "halfcauchy:0"]) == 2
    assert capsys.readouterr().err == (
        "hierbayes: error: --hyperprior: HalfCauchy: beta must be a positive finite number, "
        "got 0.0\n"
    )


# --- a model from --formula and --data, without a spec file ----------------------------


def test_formula_and_data_fit_and_the_saved_spec_reruns_it(tmp_path, capsys, eight):
    data = tmp_path / "eight.csv"
    eight.to_csv(data, index=False)
    saved = tmp_path / "specs" / "eight.toml"
    first = ["fit", "--formula", "y ~ 1 + (1 | school)", "--data", str(data), "--se", "sigma"]
    assert main([*first, "--out", str(tmp_path / "a"), "--save-spec", str(saved), *SMALL]) == 0
    assert "Formula: y ~ 1 + (1 | school)" in (tmp_path / "a" / "summary.txt").read_text()
    spec = read_spec(saved)
    assert (spec.model.formula, spec.model.se, spec.data) == ("y ~ 1 + (1 | school)", "sigma", data)
    assert spec.sampler == {"draws": 500, "tune": 500, "chains": 4, "cores": 2, "random_seed": 1}
    assert main(["fit", str(saved), "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    a, b = (az.from_netcdf(tmp_path / d / "posterior.nc") for d in ("a", "b"))
    np.testing.assert_array_equal(a.posterior["sd_school"], b.posterior["sd_school"])


def test_parquet_data_reach_the_model(tmp_path, recorded, eight):
    data = tmp_path / "eight.parquet"
    eight.to_parquet(data)
    with pytest.raises(Stop):
        main(["fit", "--formula", "y ~ 1 + (1 | school)", "--data", str(data), "--se", "sigma"])
    assert len(recorded) == 1


def test_a_parquet_file_is_reduced_in_duckdb(tmp_path, capsys, factors_data):
    """A Parquet file reaches the model as a path: a Gaussian model's sums are computed in
    DuckDB, so no rows are replicated (no ppc.png, with a note) and the saved fit holds the
    sums; the posterior is the one hb.Model(path) gives for the same seed."""
    data = tmp_path / "classes.parquet"
    factors_data.to_parquet(data, index=False)
    formula, out = "y ~ x + w + (1 | b)", tmp_path / "out"
    args = ["fit", "--formula", formula, "--data", str(data), "--out", str(out)]
    settings = ["--draws", "200", "--tune", "200", "--chains", "2", "--seed", "3", "--no-progress"]
    with warnings.catch_warnings():  # 2 x 200 draws: the diagnostics are not under test
        warnings.simplefilter("ignore", hb.SamplingWarning)
        assert main([*args, *settings]) in (0, 1)
    assert (
        "note: no ppc.png: the model holds per-group sums of its 2,400 rows, not rows"
        in capsys.readouterr().out
    )
    assert sorted(p.name for p in out.iterdir()) == [n for n in WRITTEN if n != "ppc.png"]
    fit = hb.load(out / "posterior.nc")
    assert fit.model.design.sums is not None and fit.model.data is None
    same = quiet_fit(hb.Model(formula, data), draws=200, tune=200, random_seed=3)
    np.testing.assert_array_equal(fit.idata.posterior["sd_b"], same.idata.posterior["sd_b"])


def test_a_parquet_file_of_poisson_rows_is_summed_in_duckdb(tmp_path, recorded):
    """A Poisson model with an exposure reaches the model as cells summed in DuckDB."""
    rng = np.random.default_rng(5)
    t = rng.gamma(2.0, 1.0, 600)
    rows = pd.DataFrame({"c": rng.poisson(t), "t": t, "g": [f"g{i % 12:02d}" for i in range(600)]})
    rows.to_parquet(tmp_path / "visits.parquet", index=False)
    formula = "c ~ 1 + offset(log(t)) + (1 | g)"
    with pytest.raises(Stop):
        main(
            ["fit", "--formula", formula, "--data", str(tmp_path / "visits.parquet")]
            + ["--family", "poisson"]
        )
    (call,) = recorded
    design = call["design"]
    assert (design.n_obs, design.n_rows) == (12, 600)
    np.testing.assert_allclose(design.y, rows.groupby("g")["c"].sum(), rtol=0)
    np.testing.assert_allclose(np.exp(design.offset), rows.groupby("g")["t"].sum(), rtol=1e-12)


def test_a_damaged_parquet_file_exits_2_before_sampling(tmp_path, capsys, recorded):
    data = tmp_path / "bad.parquet"
    data.write_bytes(b"PAR1 not really parquet")
    assert main(["fit", "--formula", "y ~ x + (1 | g)", "--data", str(data)]) == 2
    assert "bad.parquet" in capsys.readouterr().err
    assert recorded == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formula", "y ~ 1"], "give a spec file (hierbayes fit models/eight_schools.toml) or"),
        (["SPEC", "--formula", "y ~ 1"], "give a spec file or --formula, not both"),
        (["--formula", "y ~ 1", "--data", "DATA", "--family", "gausian"], "unknown family"),
        (["--formula", "y ~ 1", "--data", "nope.csv"], "data file 'nope.csv' does not exist"),
        (["--formula", "y ~ 1", "--data", "nope.parquet"], "data file 'nope.parquet' does not"),
    ],
)
def test_formula_and_data_errors_exit_2_before_sampling(
    tmp_path, capsys, recorded, eight, args, message
):
    data = tmp_path / "eight.csv"
    eight.to_csv(data, index=False)
    args = [
        str(write_spec(tmp_path)) if a == "SPEC" else str(data) if a == "DATA" else a for a in args
    ]
    assert main(["fit", *args]) == 2
    assert message in capsys.readouterr().err
    assert recorded == []
