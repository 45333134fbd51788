"""The smoke-suite image: docker/smoke/Dockerfile's structure, and its pinned dependency set really installs on
its own (no torch) and runs the suite. No image is built here (no Docker engine); the install is rehearsed in a
fresh virtual environment with the same pip command the Dockerfile runs."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.test_dockerfiles import OCI_LABELS, stages
from tests.fixtures.locks import read_lock

pytestmark = pytest.mark.contract

PYTHON_PIN = "python:3.11.13-slim-bookworm"


def pins(repo: Path) -> dict[str, str]:
    found = read_lock(repo / "requirements/smoke.txt").versions
    assert all(re.fullmatch(r"[a-z0-9_.-]+", k) and v for k, v in found.items()), found
    return found


def test_base_is_a_pinned_slim_python(repo: Path) -> None:
    global_args, [stage] = stages(repo / "docker/smoke/Dockerfile")
    assert global_args == ['PYTHON_BASE_DIGEST=""']
    assert stage.source == f"{PYTHON_PIN}${{PYTHON_BASE_DIGEST:+@${{PYTHON_BASE_DIGEST}}}}"
    labels = stage.pairs("LABEL")
    prefix = "org.opencontainers.image."
    assert {k.removeprefix(prefix) for k in labels if k.startswith(prefix)} >= OCI_LABELS
    assert labels[prefix + "base.name"] == f"docker.io/library/{PYTHON_PIN}"


def test_runs_the_suite_as_non_root_from_the_pinned_set(repo: Path) -> None:
    [stage] = stages(repo / "docker/smoke/Dockerfile")[1]
    assert json.loads(stage.values("ENTRYPOINT")[0]) == ["python", "-m", "smoke_tests"]
    [user] = stage.values("USER")
    assert user.split(":")[0] not in ("0", "root") and user.split(":")[0].isdigit()  # runAsNonRoot can verify it
    order = [i for i, _ in stage.instructions]
    assert order.index("USER") > max(i for i, name in enumerate(order) if name in ("RUN", "COPY"))
    assert stage.values("COPY") == [
        "requirements/smoke.txt /tmp/smoke-requirements.txt",
        "smoke_tests/ /opt/gemma4-serve/smoke_tests/",
        "deploy/__init__.py deploy/http_errors.py /opt/gemma4-serve/deploy/",
    ]
    apt, run = stage.values("RUN")
    # One Debian package besides the locked Python set: espeak-ng for the spoken audio check, pinned.
    assert "apt-get install -y --no-install-recommends espeak-ng=" in apt and "rm -rf /var/lib/apt/lists" in apt
    assert "--no-deps" in run and "-r /tmp/smoke-requirements.txt" in run and "&& pip check" in run
    assert stage.pairs("ENV")["PYTHONPATH"] == "/opt/gemma4-serve"


def test_pins_are_what_the_tests_ran_with_and_carry_no_torch(repo: Path) -> None:
    pinned = pins(repo)
    assert not {"torch", "transformers", "vllm", "numpy"} & {k.lower() for k in pinned}
    tested = {name: importlib.metadata.version(name) for name in pinned}
    assert pinned == tested, "requirements/smoke.txt drifted from the dev venv: run `make lock`, then `make tools`"


def test_the_suite_imports_only_its_pinned_libraries(repo: Path) -> None:
    # deploy.http_errors: the one module of deploy/ the image copies (tests/unit/test_layers.py keeps it httpx-only).
    allowed = {"httpx", "pytest", "rich", "PIL", "jsonschema", "smoke_tests", "deploy.http_errors"}
    for path in (repo / "smoke_tests").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in allowed or name in allowed, (
                    f"{path.name} imports {name}"
                )


@pytest.mark.slow
def test_the_pinned_set_installs_alone_and_runs_the_suite(repo: Path, tmp_path: Path) -> None:
    """The Dockerfile's RUN in a fresh venv: hashes checked, full closure (pip check), no torch, exit 3 if no server."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin/python")
    install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--require-hashes"]
    install.append("--only-binary=:all:")
    subprocess.run([*install, "-r", str(repo / "requirements/smoke.txt")], check=True, timeout=300)
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    # The image's layout and environment: the package alone under /opt-like PYTHONPATH, no bytecode written.
    shutil.copytree(repo / "smoke_tests", tmp_path / "opt/smoke_tests", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "opt/deploy").mkdir()
    for name in ("__init__.py", "http_errors.py"):  # the Dockerfile's second COPY: deploy/ otherwise stays out
        shutil.copy(repo / "deploy" / name, tmp_path / "opt/deploy" / name)
    env = {
        "PYTHONPATH": str(tmp_path / "opt"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(
        [python, "-c", "import torch"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert "No module named 'torch'" in proc.stderr
    proc = subprocess.run(
        [python, "-m", "smoke_tests", "--base-url", "http://127.0.0.1:9", "--wait", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "FAILED ready.server_ready: http://127.0.0.1:9 did not become ready" in proc.stdout
    # Nothing written at run time, so a read-only root file system (the Helm test pod) works.
    assert not list(tmp_path.glob(".pytest_cache")), "the suite must not write a cache into the working directory"
    assert not list((tmp_path / "opt").rglob("__pycache__")), "the suite must not write bytecode next to itself"


def test_build_context_keeps_what_the_image_copies(repo: Path) -> None:
    patterns = {
        line.strip() for line in (repo / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in ("", "#")
    }
    for needed in ("requirements", "requirements/smoke.txt", "smoke_tests", "deploy", "deploy/http_errors.py"):
        assert not patterns & {needed, needed + "/", "*", "requirements/*"}, needed
