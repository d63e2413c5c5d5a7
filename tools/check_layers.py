"""Check hierbayes' layers: imports only point down, and no module cycle.

Every import counts, wherever it stands: at module level, inside a function, or under
``TYPE_CHECKING``. The layers, lowest first:

0. ``errors`` and ``version``: the exceptions and their message helpers, the version;
1. ``core``: NumPy/SciPy numerics (grouped WLS/IRLS, pooling maths, convergence, SBC ranks);
2. ``spec``: formula, families, priors, design, model spec, TOML specs;
3. ``backend``: the PyMC graph, the marginal likelihood, the plan, the samplers;
4. ``posterior``: draw helpers, completion of the posterior, diagnostics, netCDF storage;
5. ``analysis``: reports, empirical Bayes, predict, compare, plots;
6. ``api``: ``Model``, ``Fit``, ``load``, ``sbc``, the CLI, data sets, test helpers;
7. the package's ``__init__``.

A module may import its own layer and those below. Some layers also keep third-party
packages out: ``core`` uses only the standard library, NumPy and SciPy, and ``spec`` does
not import PyMC, PyTensor or ArviZ (building distributions is the backend's work).

Run ``python tools/check_layers.py``: it prints each violation and exits 1 if there is one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "hierbayes"
LAYERS = ("errors", "core", "spec", "backend", "posterior", "analysis", "api")
TOP = {"version": "errors", "testing": "api"}  # modules beside the layers, and their layer
THIRD_PARTY_ALLOWED = {"core": {"numpy", "scipy"}}
THIRD_PARTY_REFUSED = {"spec": {"pymc", "pytensor", "arviz"}}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return len(LAYERS)  # the package's __init__ sits on top
    head = TOP.get(parts[1], parts[1])
    if head not in LAYERS:
        raise SystemExit(f"{module}: not in a layer; add it to tools/check_layers.py")
    return LAYERS.index(head)


def imports(path: Path, module: str, modules: set[str]) -> list[tuple[int, str]]:
    """(line, imported name) for every import in the file; hierbayes names as modules."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join(here + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                found.append((node.lineno, full if full in modules else base))
    return found


def check(root: Path) -> list[str]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    problems, graph = [], {}
    for module, path in files.items():
        graph[module] = set()
        own = layer(module)
        head = LAYERS[own] if own < len(LAYERS) else None
        for line, name in imports(path, module, modules):
            top = name.split(".")[0]
            where = f"{path.relative_to(root.parent)}:{line}"
            if top == PACKAGE:
                target = name
                while target not in modules:  # "hierbayes.spec.priors.Normal" -> the module
                    target = target.rsplit(".", 1)[0]
                if target == module or (module.startswith(target + ".") and target.count(".") == 1):
                    continue  # the module's own subpackage (its __init__)
                graph[module].add(target)
                if layer(target) > own:
                    problems.append(
                        f"{where}: {module} ({head}) imports {target} "
                        f"({LAYERS[layer(target)] if layer(target) < len(LAYERS) else 'top'}), "
                        "a higher layer: move the shared code down, or pass in what it needs"
                    )
            elif head in THIRD_PARTY_ALLOWED and top not in sys.stdlib_module_names:
                if top not in THIRD_PARTY_ALLOWED[head] | {"__future__"}:
                    problems.append(f"{where}: {module} ({head}) imports {top}")
            elif top in THIRD_PARTY_REFUSED.get(head, ()):
                problems.append(f"{where}: {module} ({head}) imports {top}")
    problems = list(dict.fromkeys(problems))  # one line per import, however many names
    problems += [f"import cycle among: {', '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules of each strongly connected component (a cycle) of more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent / PACKAGE
    found = check(root)
    print("\n".join(found) or f"{PACKAGE}: layers hold, no import cycle")
    sys.exit(1 if found else 0)
