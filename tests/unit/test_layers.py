"""Imports flow one way: launcher -> planner -> checkpoint -> profiles, never back up.

Each deploy/ subpackage has one job (docs/architecture.md); a module may import from its own package and
from the layers below it, never from above. The smoke suite ships alone in its image, so it imports nothing
from deploy/. Read from the source with ast: no module is imported, so a cycle cannot hide behind a lazy
import inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Top to bottom. A package may import any package in a lower layer; within a layer only the pairs below.
LAYERS: list[tuple[str, ...]] = [
    ("deploy.__main__",),
    ("deploy.launcher", "deploy.bench", "deploy.quality", "deploy.engines"),
    ("deploy.planner",),
    ("deploy.checkpoint",),
    ("deploy.profiles",),
    ("deploy.errors", "deploy.http_errors", "deploy.prometheus_text"),
]
SIDEWAYS = {("deploy.quality", "deploy.bench")}  # quality reuses the bench client's HTTP plumbing


def package_of(module: str) -> str:
    """``deploy.planner.budget`` -> ``deploy.planner``; top-level modules stand for themselves."""
    for layer in LAYERS:
        for pkg in layer:
            if module == pkg or module.startswith(pkg + "."):
                return pkg
    raise AssertionError(f"{module} is in no layer of tests/unit/test_layers.py: add it where it belongs")


def layer_of(pkg: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if pkg in layer)


def imports(path: Path) -> list[tuple[str, int]]:
    """Absolute ``deploy``/``smoke_tests`` imports of a file, with line numbers (function-level ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return [(m, n) for m, n in found if m.split(".")[0] in ("deploy", "smoke_tests")]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


DEPLOY_FILES = sorted(set((REPO / "deploy").rglob("*.py")) - {REPO / "deploy/__init__.py"})


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_deploy_imports_flow_down(path: Path) -> None:
    source = package_of(module_name(path))
    for target, line in imports(path):
        assert not target.startswith("smoke_tests"), f"{path.name}:{line} imports {target}"
        if target == "deploy":
            continue
        dest = package_of(target)
        if dest == source:
            continue
        where = f"{path.relative_to(REPO)}:{line} imports {target}"
        if layer_of(dest) == layer_of(source):
            assert (source, dest) in SIDEWAYS, f"{where}: a sideways import between {source} and {dest}"
        else:
            assert layer_of(dest) > layer_of(source), f"{where}: {dest} sits above {source}"


# The one module of deploy/ the smoke image carries (docker/smoke/Dockerfile copies it beside smoke_tests/).
SMOKE_SHARED = "deploy.http_errors"


def test_the_smoke_suite_imports_nothing_from_deploy_but_the_http_error_wording() -> None:
    for path in sorted((REPO / "smoke_tests").rglob("*.py")):
        bad = [(m, n) for m, n in imports(path) if m.split(".")[0] == "deploy" and m != SMOKE_SHARED]
        assert not bad, f"{path.name}: {bad} (the smoke image ships only {SMOKE_SHARED} of deploy/)"


def test_the_shared_module_needs_only_httpx() -> None:
    """What the smoke image copies of deploy/ must import nothing the image lacks."""
    import sys

    for path in (REPO / "deploy/__init__.py", REPO / (SMOKE_SHARED.replace(".", "/") + ".py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in {*sys.stdlib_module_names, "httpx"}, f"{path.name} imports {name}"


def test_every_subpackage_is_placed() -> None:
    packages = {f"deploy.{p.name}" for p in (REPO / "deploy").iterdir() if (p / "__init__.py").exists()}
    placed = {pkg for layer in LAYERS for pkg in layer}
    assert packages <= placed, f"unplaced: {sorted(packages - placed)}"


def test_no_module_imports_itself_back() -> None:
    """No import cycle between modules, within a package too (launch -> gpu -> recommend -> fit -> recommend once)."""
    graph: dict[str, set[str]] = {}
    for path in DEPLOY_FILES:
        targets = {t for t, _ in imports(path) if t.startswith("deploy.")}
        graph[module_name(path)] = {t for t in targets if t != module_name(path)}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(module) :], module]))
        if module in done or module not in graph:
            return
        for target in sorted(graph[module]):
            visit(target, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
