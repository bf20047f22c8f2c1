"""The package map of docs/architecture.md, held: module-level imports form no cycle, the
engine, models and data layers do not import the schema, and MLflow stays in its two homes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bioclf", "analysis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """Modules imported at module level (not under ``if TYPE_CHECKING:``), as dotted names."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            if isinstance(sub, ast.Import):
                found |= {alias.name for alias in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                found.add(sub.module)
                found |= {f"{sub.module}.{alias.name}" for alias in sub.names}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in _runtime_imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_module_level_imports_have_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    monkeypatch.setattr(sys.modules[__name__], "_graph", lambda: graph)
    try:
        test_module_level_imports_have_no_cycle()
    except AssertionError:
        return
    raise AssertionError("a two-module cycle went unnoticed")


def test_engine_models_and_data_do_not_import_the_schema_or_mlflow():
    code = ("import sys, bioclf.engine.train, bioclf.engine.evaluate, bioclf.models.build, bioclf.data.loaders, "
            "bioclf.datacheck; print(sorted({m.split('.')[0] if m == 'mlflow' else m for m in sys.modules "
            "if m == 'mlflow' or m.startswith('bioclf.spec') or m.startswith('bioclf.runner')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_only_the_tracking_package_and_the_store_reader_import_mlflow():
    importers = sorted(name for pkg in PACKAGES for path in (ROOT / pkg).rglob("*.py")
                       for name in [_module_name(path)]
                       if any(m == "mlflow" or m.startswith("mlflow.") for m in _all_imports(path)))
    assert all(name.startswith("bioclf.tracking.") or name == "analysis.store" for name in importers), importers


def _all_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found
