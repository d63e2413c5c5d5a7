"""The command line, run in-process with small draws."""

import re
import subprocess
import sys
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.cli import main

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
    assert sorted(p.name for p in out.iterdir()) == ["pooling.csv", "pooling.png", "posterior.nc"]


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
    assert "hierbayes: error: unknown prior 'halfcauhy'; did you mean 'halfcauchy'?" in err
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
    assert "data file" in capsys.readouterr().err
    bad.write_text("[model\n")
    assert main(["fit", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_reference_specs_in_models_folder_read():
    from hierbayes.datasets import resource_path
    from hierbayes.specfile import read_spec

    specs = sorted(resource_path("models").glob("*.toml"))
    assert specs, "models/ holds the reference specs"
    for path in specs:
        spec = read_spec(path)
        assert spec.data.is_file(), spec.data


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "hierbayes.cli", "--version"],
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
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["posterior.nc"]
