"""Executable documentation: docstring examples, the README, and the packaging promises."""

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

import hierbayes as hb

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MODULES = sorted(m.name for m in pkgutil.walk_packages(hb.__path__, "hierbayes."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0
    plt.close("all")


def test_public_functions_have_examples():
    missing = []
    for name in (
        "hierbayes.spec.priors",
        "hierbayes.analysis.report",
        "hierbayes.core.pooling",
        "hierbayes.api.datasets",
    ):
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if (
                callable(obj)
                and not isinstance(obj, type)
                and "Examples" not in (obj.__doc__ or "")
            ):
                missing.append(f"{name}.{attr}")
    assert not missing


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has a python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # warnings are errors here too
    report = namespace["report"]
    assert report.table["complete_pooling"].round(2).eq(7.69).all()
    assert namespace["fit"].diagnostics.divergences == 0
    plt.close("all")


def test_readme_engine_example_runs():
    """The second python block: a DuckDB relation as the data, reduced to per-group sums in
    DuckDB by default, and read as rows on request."""
    block = re.findall(r"```python\n(.*?)```", README, flags=re.S)[1]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    exam, model, rows = namespace["exam"], namespace["model"], namespace["rows"]
    assert model.design.n_obs == (exam["sex"] == "F").sum() == 2436
    assert model.data is None and model.design.sums.n.sum() == 2436
    assert list(rows.data.columns) == ["normexam", "standLRT", "school"]


def quickstart_commands():
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_quickstart_has_two_commands_and_ci_runs_the_second():
    commands = quickstart_commands()
    assert len(commands) == 2
    assert "hierbayes eight-schools" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_version_lives_in_pyproject_only():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert hb.__version__ == meta["project"]["version"]
    hits = [
        p for p in (ROOT / "hierbayes").rglob("*.py") if meta["project"]["version"] in p.read_text()
    ]
    assert not hits


def test_wheel_carries_data_and_models_once(tmp_path):
    """data/ and models/ are mapped into the wheel, not copied into the package tree."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("hierbayes-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "hierbayes/data/eight_schools.csv",
        "hierbayes/data/exam.csv",
        "hierbayes/models/eight_schools.toml",
        "hierbayes/api/cli.py",
    ):
        assert required in names
    assert not (ROOT / "hierbayes" / "data").exists()
    assert not (ROOT / "hierbayes" / "models").exists()
