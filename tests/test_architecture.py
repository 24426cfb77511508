"""The host's structure: no import cycle between its modules, one list of public names,
a light `import maxrf_bench`, and the report's templates shipped with the package."""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import maxrf_bench as mb

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "toolkit"


def _module_of(path: Path) -> str:
    return "maxrf_bench" if path.name == "__init__.py" else f"maxrf_bench.{path.stem}"


def _import_graph() -> dict[str, set[str]]:
    """``module → host modules it imports``, from the source (parsed, not run).

    Counted: every ``import``/``from … import`` of a ``maxrf_bench`` module, relative or
    absolute, at module level *and* inside functions (lazy imports run too, later).  Not
    counted: imports under ``if TYPE_CHECKING:`` (never run).  ``from . import x`` counts
    as an import of ``maxrf_bench.x`` when ``x`` is a module, else of ``maxrf_bench``."""
    modules = {_module_of(p) for p in HOST.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(HOST.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.split(".")[0] == "maxrf_bench"}
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    base = f"maxrf_bench.{node.module}" if node.module else "maxrf_bench"
                elif node.level == 0 and (node.module or "").split(".")[0] == "maxrf_bench":
                    base = node.module
                else:
                    continue
                if base == "maxrf_bench":
                    edges |= {f"maxrf_bench.{a.name}" if f"maxrf_bench.{a.name}" in modules
                              else "maxrf_bench" for a in node.names}
                else:
                    edges.add(base)
        graph[_module_of(path)] = {e for e in edges if e in modules} - {_module_of(path)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_host_modules_import_no_cycle():
    graph = _import_graph()
    assert "maxrf_bench.runner" in graph and "maxrf_bench.rundir" in graph["maxrf_bench.runner"]
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    """The test above could not pass on a graph with a cycle (a lazy import counts)."""
    graph = _import_graph()
    graph["maxrf_bench.rundir"] = graph["maxrf_bench.rundir"] | {"maxrf_bench.runner"}
    assert any("maxrf_bench.rundir" in c and "maxrf_bench.runner" in c for c in _cycles(graph))


def test_every_public_name_is_importable_and_exported():
    names = {n for names in mb.PUBLIC.values() for n in names}
    assert set(mb.__all__) == names | {"__version__"}
    assert len(mb.__all__) == len(set(mb.__all__))
    for module, listed in mb.PUBLIC.items():
        mod = __import__(f"maxrf_bench.{module}", fromlist=["_"])
        for name in listed:
            assert getattr(mb, name) is getattr(mod, name), (module, name)
    assert {"torch_device", "torch_threads", "RunDir", "run_grid"} <= set(mb.__all__)
    # a submodule named like a public name would replace it once imported (mb.evaluate)
    assert not names & {p.stem for p in HOST.glob("*.py")}
    assert sorted(dir(mb)) == dir(mb) and names <= set(dir(mb))


def test_import_and_help_stay_light():
    code = ("import sys, maxrf_bench, maxrf_bench.cli; "
            "print(sorted(m for m in ('numpy', 'xarray', 'zarr', 'jinja2', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_templates_are_package_data():
    """Every template file is matched by the package-data globs of pyproject.toml, so a
    non-editable wheel ships it (``pip wheel .`` was checked to contain them)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = conf["tool"]["setuptools"]["package-data"]["maxrf_bench"]
    files = sorted((HOST / "templates").iterdir())
    assert files and "jinja2>=3.1" in conf["project"]["dependencies"]
    for f in files:
        assert any(f.relative_to(HOST).match(g) for g in globs), f
