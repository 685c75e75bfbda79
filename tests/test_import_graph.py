"""matnet's imports flow one way: errors/validation/backend -> functional/activations/losses -> layers
-> model -> training -> io/checkpoint/explain -> sklearn/cli. The graph is built from the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import matnet

ROOT = Path(matnet.__file__).resolve().parent

# Convenience methods that hand over to a higher module, imported inside the method so that the
# lower module never imports the higher one at import time: (importer, imported).
LAZY_DELEGATIONS = {
    ("matnet.model", "matnet.training"),  # Sequential.fit -> matnet.fit
    ("matnet.model", "matnet.training.loop"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def targets(node: ast.AST, importer: str) -> set[str]:
    """The matnet modules an import statement loads."""
    found = set()
    if isinstance(node, ast.Import):
        found = {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
        base = node.module
        if node.level:  # relative: resolve against the importer's package
            package = importer.rsplit(".", node.level)[0]
            base = f"{package}.{node.module}"
        found = {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES and name != importer}


def graph(module_level_only: bool) -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if module_level_only else list(ast.walk(tree))
        if module_level_only:  # imports inside top-level if/try blocks run at import time too
            nodes = [n for top in tree.body for n in ast.walk(top) if not _in_function(top, n)]
        edges[name] = set().union(*(targets(n, name) for n in nodes)) if nodes else set()
    return edges


def _in_function(top: ast.AST, node: ast.AST) -> bool:
    if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    return False


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's entry point found by depth-first search (enough to report one)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "active"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == "matnet" or node == "matnet":
                continue  # the package's __init__ re-exports everything; it is the top
            if state.get(nxt) == "active":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_module_level_imports_have_no_cycle():
    assert cycles(graph(module_level_only=True)) == []


def test_every_import_cycle_is_a_documented_lazy_delegation():
    edges = graph(module_level_only=False)
    for pair in LAZY_DELEGATIONS:
        edges.get(pair[0], set()).discard(pair[1])
    assert cycles(edges) == []


def test_the_low_modules_import_nothing_above_them():
    edges = graph(module_level_only=False)
    assert edges["matnet.errors"] == set()
    assert edges["matnet.equations"] == set()
    assert edges["matnet.validation"] <= {"matnet.backend", "matnet.errors"}
    assert edges["matnet.backend"] <= {"matnet.errors"}


def test_import_matnet_needs_numpy_alone():
    """Every optional library is imported inside the function that needs it."""
    blocked = [
        "sklearn",
        "scipy",
        "matplotlib",
        "tqdm",
        "cupy",
        "mpi4py",
        "pandas",
        "torch",
        "onnx",
        "onnxruntime",
        "starlette",
        "uvicorn",
    ]
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "import importlib, pkgutil, matnet\n"
        "for info in pkgutil.walk_packages(matnet.__path__, 'matnet.'):\n"
        "    if info.name != 'matnet.__main__' and not info.name.startswith('matnet.sklearn'):\n"
        "        importlib.import_module(info.name)\n"
        "try:\n"
        "    import matnet.sklearn\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # The scikit-learn front end is the one module that needs its library; it says which extra.
    assert "pip install 'matnet[sklearn]'" in result.stdout
