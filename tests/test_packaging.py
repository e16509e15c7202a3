"""pyproject.toml declares every third-party package pkpd imports, and the installed (tested) versions satisfy it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements(section: list[str]) -> dict[str, str]:
    out = {}
    for req in section:
        name, spec = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", req).groups()
        out[re.sub(r"[-_.]+", "-", name).lower()] = spec
    return out


def _imported_top_level_modules() -> set[str]:
    names = set()
    for path in (ROOT / "pkpd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"pkpd"}


def test_every_imported_package_is_a_declared_dependency():
    declared = _requirements(PYPROJECT["project"]["dependencies"])
    dists = metadata.packages_distributions()
    missing = {}
    for module in sorted(_imported_top_level_modules()):
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(module, [module])}
        if not names & set(declared):
            missing[module] = sorted(names)
    assert not missing, f"pkpd imports packages pyproject.toml does not declare: {missing}"


def test_installed_versions_satisfy_the_declared_bounds():
    """The lower bounds are the tested versions (pyproject's comment); what is installed must satisfy them."""
    from packaging.specifiers import SpecifierSet

    reqs = {**_requirements(PYPROJECT["project"]["dependencies"]),
            **_requirements(PYPROJECT["project"]["optional-dependencies"]["test"])}
    unbounded = sorted(name for name, spec in reqs.items() if ">=" not in spec)
    assert not unbounded, f"give these a tested lower bound: {unbounded}"
    wrong = {name: f"declared {spec!r}, installed {metadata.version(name)}" for name, spec in reqs.items()
             if metadata.version(name) not in SpecifierSet(spec.split(";")[0].strip())}
    assert not wrong, f"installed versions outside the declared bounds: {wrong}"
