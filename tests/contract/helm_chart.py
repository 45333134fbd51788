"""Render helm/gemma4-serve with the real `helm` binaries and read the result as Python objects.

Helm 4 comes from the dev venv (`helm`), Helm 3 from the chart tools venv (`helm3`, scripts/bootstrap.sh helm).
Every test that looks at the chart goes through :func:`template`, so what is asserted is what Helm renders.

The chart is checked over a matrix of :func:`cases`: each `ci/<feature>-values.yaml`, and each profile of
deploy/profiles forced by name (`serving.profile: NAME`), read from the profile list so that a new profile is
rendered, linted, validated, scanned and parsed by vLLM without a file of its own.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.profiles import list_profiles

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


@dataclass(frozen=True)
class Case:
    """One set of values the chart is checked with: a `ci/` values file, or a profile forced by name."""

    name: str  # `ingress` for ci/ingress-values.yaml, `profile-gpu-8gb` for serving.profile=gpu-8gb
    path: Path | None = None
    profile: str | None = None

    @property
    def source(self) -> str:
        """Where the values come from, relative to the repository (what the vLLM contract reports)."""
        if self.path is not None:
            return str(self.path.relative_to(CHART.parents[1]))
        return f"{CHART.relative_to(CHART.parents[1])} --set serving.profile={self.profile}"

    @property
    def args(self) -> list[str]:
        """The values as `helm` arguments."""
        if self.path is not None:
            return ["-f", str(self.path)]
        return ["--set-string", f"serving.profile={self.profile}"]

    def values(self) -> dict[str, Any]:
        """The values as a values file would hold them (empty when the file sets nothing)."""
        if self.path is not None:
            return yaml.safe_load(self.path.read_text()) or {}
        return {"serving": {"profile": self.profile}}


def profile_case(profile: str) -> Case:
    """The case that forces ``profile`` by name."""
    return Case(f"profile-{profile}", profile=profile)


def cases() -> list[Case]:
    """Every `ci/*-values.yaml`, then every profile of deploy/profiles forced by name."""
    files = [Case(path.name.removesuffix("-values.yaml"), path=path) for path in ci_values()]
    return files + [profile_case(name) for name in list_profiles()]


def template(
    *values: Path | Case,
    set_values: dict[str, str] | None = None,
    helm: str = "helm",
    kube_version: str = KUBE_VERSIONS[-1],
    extra: tuple[str, ...] = (),
) -> Rendered:
    """`helm template` of the chart (hooks such as the test pod included) with the given values files or cases."""
    argv = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version, *extra]
    for source in values:
        argv += source.args if isinstance(source, Case) else ["-f", str(source)]
    for key, value in (set_values or {}).items():
        argv += ["--set-string" if isinstance(value, str) else "--set", f"{key}={value}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return Rendered(False, [], proc.stderr)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return Rendered(True, docs, proc.stderr)


@functools.cache
def render(case: Case, helm: str = "helm", kube_version: str = KUBE_VERSIONS[-1]) -> Rendered:
    """`helm template` of one case, rendered once per test session (many tests read the same)."""
    return template(case, helm=helm, kube_version=kube_version)


def render_cases() -> dict[Case, Rendered]:
    """Every case, rendered (in parallel: each is a helm process) and cached; fails on any error."""
    from concurrent.futures import ThreadPoolExecutor

    every = cases()
    with ThreadPoolExecutor(max_workers=4) as pool:
        rendered = dict(zip(every, pool.map(render, every), strict=True))
    for case, result in rendered.items():
        assert result.ok, f"{case.name}: {result.stderr}"
    return rendered


def rendered_text(*values: Path | Case, helm: str = "helm") -> str:
    """The raw `helm template` output, for searches that must see every byte (secrets)."""
    argv = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for source in values:
        argv += source.args if isinstance(source, Case) else ["-f", str(source)]
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
