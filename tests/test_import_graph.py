"""matnet's imports flow one way: errors/validation/backend -> functional/activations/losses -> layers
-> task (inputs, targets, outputs) -> model (the engine) -> training -> io/checkpoint/explain ->
tabular/answers -> sklearn/cli/serve. The graph is built from the source, lazy imports included."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import matnet

ROOT = Path(matnet.__file__).resolve().parent


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


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """The module without its ``if TYPE_CHECKING:`` blocks, whose imports never run (they only
    name types for the checker)."""

    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST | None:
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                return None
            return self.generic_visit(node)

    return Strip().visit(tree)


def graph(module_level_only: bool) -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        tree = _without_type_checking(ast.parse(path.read_text()))
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


def test_no_import_cycle_lazy_imports_included():
    """Imports inside functions count too: Sequential.fit reaches the training loop through the
    hook matnet.training installs (matnet.model.install_trainer), never by importing it."""
    assert cycles(graph(module_level_only=False)) == []


FRONT_ENDS = ("matnet.sklearn", "matnet.cli", "matnet.serve")


def _front_end(module: str) -> str | None:
    return next((f for f in FRONT_ENDS if module == f or module.startswith(f + ".")), None)


def test_no_front_end_imports_another():
    """The CLI, the estimators and the service adapt arguments and print; what they share lives
    below them (matnet.task, matnet.tabular, matnet.answers). The CLI may start the service."""
    edges = graph(module_level_only=False)
    crossings = sorted(
        (importer, imported)
        for importer, targets in edges.items()
        for imported in targets
        if _front_end(importer)
        and _front_end(imported)
        and _front_end(importer) != _front_end(imported)
        and (_front_end(importer), _front_end(imported)) != ("matnet.cli", "matnet.serve")
    )
    assert crossings == []


def test_the_engine_does_not_know_its_front_ends_or_the_task_above_it():
    edges = graph(module_level_only=False)
    below_model = {"matnet.model", "matnet.task", "matnet.plan", "matnet.flat", "matnet.summary"}
    for module in below_model:
        assert not any(
            t.startswith(("matnet.training", "matnet.tabular", "matnet.io", "matnet.cli"))
            for t in edges[module]
        ), (module, edges[module])


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


def test_no_function_is_over_100_lines():
    """A function reads in one sitting; the command line's argparse tables are the exception."""
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 100 and not (
                    name == "matnet.cli.parser" and node.name.startswith("_add_")
                ):
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_the_engine_fits_on_400_lines():
    """Sequential is the article's engine: layers, flat vectors, forward and backward, the plan."""
    assert len((ROOT / "model.py").read_text().splitlines()) <= 400
