"""The package's structure: no import cycles, imports at module level, ``import pkpd`` without PyMC.

Imports are read from the source with :mod:`ast` (not by importing), so a
cycle is found even where Python happens to tolerate it.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pkpd"
MODULES = {
    ".".join(("pkpd", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__"): p
    for p in sorted(ROOT.rglob("*.py"))
}
#: Imports allowed inside functions: the deliberately lazy PyMC stack (pkpd.popfit
#: is imported on first use, so that ``import pkpd`` never loads PyMC).
LAZY_ALLOWED = {("pkpd", "importlib")}


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """Fully qualified pkpd modules named by one import statement."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("pkpd")]
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1])
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if not base.startswith("pkpd"):
        return []
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def _imports():
    """(edges {module: set of pkpd modules it imports anywhere}, function-level
    imports [(module, target, line)])."""
    edges, inner = {}, []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        edges[module] = set()
        for node in tree.body:
            nodes = [node]
            if isinstance(node, ast.If):  # if TYPE_CHECKING: ... is not a runtime import
                continue
            if isinstance(node, ast.Try):
                nodes = node.body + [n for h in node.handlers for n in h.body]
            for n in nodes:
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    edges[module].update(t for t in _resolve(module, n) if t != module)
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(fn):
                    if isinstance(n, (ast.Import, ast.ImportFrom)):
                        target = n.names[0].name if isinstance(n, ast.Import) else (n.module or ".")
                        inner.append((module, target, n.lineno))
                        # a cycle hidden behind an import inside a function is still a cycle
                        edges[module].update(t for t in _resolve(module, n) if t != module)
    return edges, inner


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def _without_package_inits(edges):
    """Edges minus those into package __init__ modules from their own members:
    ``pkpd/__init__.py`` re-exports its modules, and a module importing a
    sibling through ``from . import x`` resolves to the sibling, not to the
    package."""
    return {m: {t for t in ts if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))}
            for m, ts in edges.items()}


def test_no_import_cycles():
    edges, _ = _imports()
    assert _cycles(_without_package_inits(edges)) == []


def test_the_cycle_finder_finds_a_cycle():
    """The checker can fail: a two-module cycle and a three-module one are found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def test_imports_are_at_module_level():
    _, inner = _imports()
    in_popfit = [(m, t, line) for m, t, line in inner if m.startswith("pkpd.popfit")]
    elsewhere = [(m, t, line) for m, t, line in inner if not m.startswith("pkpd.popfit")
                 and (m, t) not in LAZY_ALLOWED]
    assert elsewhere == []
    # popfit may import the PyMC stack lazily, nothing else
    heavy = ("pymc", "pytensor", "nutpie", "arviz")
    assert [x for x in in_popfit if not x[1].startswith(heavy)] == []


@pytest.mark.parametrize("code", ["import pkpd", "import pkpd.scenario, pkpd.trial, pkpd.simulate, pkpd.drugs"])
def test_import_pkpd_does_not_import_pymc(code):
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import sys; print(sorted(m for m in ('pymc', 'pytensor', 'arviz', 'nutpie') "
                               "if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "[]"
