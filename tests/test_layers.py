"""The layers contract (tools/check_layers.py): on the package, and on planted violations."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools" / "check_layers.py")
check_layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_layers)


def test_the_package_keeps_its_layers():
    assert check_layers.check(ROOT / "hierbayes") == []


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "hierbayes"
    for layer in ("", *check_layers.LAYERS[1:]):
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_an_upward_import_inside_a_function_is_refused(tmp_path):
    root = plant(
        tmp_path,
        {
            "spec/design.py": "def f():\n    from hierbayes.api.model import Model\n",
            "api/model.py": "from hierbayes.spec.design import f\n",
        },
    )
    problems = check_layers.check(root)
    assert len(problems) == 2, problems
    assert problems[0].startswith("hierbayes/spec/design.py:2: hierbayes.spec.design (spec)")
    assert "imports hierbayes.api.model (api), a higher layer" in problems[0]
    assert problems[1].startswith("import cycle")


def test_a_cycle_within_a_layer_and_pymc_in_the_spec_are_refused(tmp_path):
    root = plant(
        tmp_path,
        {
            "backend/a.py": "from hierbayes.backend import b\n",
            "backend/b.py": "import hierbayes.backend.a\n",
            "spec/priors.py": "import pymc as pm\n",
            "core/maths.py": "import numpy as np\nimport pandas as pd\n",
        },
    )
    problems = check_layers.check(root)
    assert "hierbayes/core/maths.py:2: hierbayes.core.maths (core) imports pandas" in problems
    assert "hierbayes/spec/priors.py:1: hierbayes.spec.priors (spec) imports pymc" in problems
    assert "import cycle among: hierbayes.backend.a, hierbayes.backend.b" in problems
