"""Imports point down: each package imports only packages of its own layer or below (function-local
imports included: hiding an upward import inside a function is still an upward import), and the core
imports neither Ray nor MLflow."""
import ast
from pathlib import Path

import autounfold

ROOT = Path(autounfold.__file__).parent

# low -> high; a module may import its own layer and the layers before it
LAYERS = [
    {"errors", "seeding", "plugins", "gpu", "schema", "net", "curves"},
    {"channels"},
    {"problems"},
    {"algorithms"},
    {"unfolding"},
    {"config"},
    {"build", "artifacts"},
    {"training"},
    {"evaluation", "monitoring", "deploy"},
    {"spaces"},
    {"search"},
    {"registry", "jobs"},
    {"ops"},
    {"cli", "__init__", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
# narrower than the layers: the registry talks to MLflow only (what to register is autounfold.ops)
ONLY = {"registry": {"registry", "errors", "spaces", "schema", "net"}}
CORE = {"channels", "problems", "algorithms", "unfolding", "training", "evaluation", "monitoring", "config", "build",
        "artifacts", "errors", "seeding", "plugins", "schema", "curves"}


def _unit(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def _imports(path: Path):
    """(line, top-level autounfold unit or external package) of every import in the module."""
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(ROOT).parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name.split(".")[0], a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, (node.module or "").split(".")[0], node.module
                continue
            base = list(pkg)[: len(pkg) - (node.level - 1)] if node.level > 1 else list(pkg)
            target = base + (node.module.split(".") if node.module else [])
            if target:
                yield node.lineno, "autounfold", "autounfold." + ".".join(target)
            else:                                   # "from . import x" at the package root
                for a in node.names:
                    yield node.lineno, "autounfold", f"autounfold.{a.name}"


def test_imports_point_down_and_the_core_is_free_of_ray_and_mlflow():
    upward, external = [], []
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        assert unit in RANK, f"{path}: package {unit!r} has no layer in this test; add it where it belongs"
        for line, top, full in _imports(path):
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if top in ("ray", "mlflow") and unit in CORE:
                external.append(f"{where} imports {full}")
            if top == "autounfold":
                parts = full.split(".")
                target = parts[1] if len(parts) > 1 else "__init__"
                if target in RANK and RANK[target] > RANK[unit]:
                    upward.append(f"{where}: {unit} imports {full}")
                elif unit in ONLY and target not in ONLY[unit]:
                    upward.append(f"{where}: {unit} may import only {sorted(ONLY[unit])}, not {full}")
    assert not upward, "imports that point up:\n" + "\n".join(upward)
    assert not external, "core modules importing Ray / MLflow:\n" + "\n".join(external)
