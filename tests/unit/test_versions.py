"""The launcher's version guard: it prints the engine's versions and refuses transformers >= 5.10 beside vLLM 0.21."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.launcher.versions import Versions, problem, release, warning
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("vllm", "transformers", "refused"),
    [
        ("0.21.0", "5.9.0", False),
        ("0.21.0+cpu", "5.8.1", False),
        ("0.21.0", "5.10.0", True),
        ("0.21.0+cpu", "5.10.0.dev0", True),
        ("0.21.1", "5.23.0", True),
        ("0.22.0", "5.23.0", False),  # another vLLM: not known to break (the warning says it is unverified)
        (None, "5.23.0", False),  # no vLLM here (a dry run on a laptop): nothing to guard
        ("0.21.0", None, False),
    ],
)
def test_the_guard_refuses_only_vllm_0_21_with_transformers_5_10_or_later(vllm, transformers, refused) -> None:
    message = problem(Versions(vllm, "2.11.0", transformers))
    assert (message is not None) == refused
    if refused:
        assert f"transformers {transformers} is installed, but vLLM {vllm} cannot serve Gemma 4" in message
        assert "pip install 'transformers<5.10'" in message


def test_release_reads_local_and_dev_versions() -> None:
    assert release("0.21.0+cpu") == (0, 21, 0)
    assert release("5.10.0.dev0") == (5, 10, 0)
    assert release("2.11.0+cu129") == (2, 11, 0)
    assert release("unknown") == ()


def test_another_vllm_gets_a_warning_not_a_refusal() -> None:
    assert "not the 0.21 release" in (warning(Versions("0.22.0", None, None)) or "")
    assert warning(Versions("0.21.0+cpu", None, None)) is None


def _fake_distribution(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _launch(site: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "vllm").write_text(f"#!/bin/sh\ntouch {tmp_path / 'vllm-ran'}\n")
    (bin_dir / "vllm").chmod(0o755)
    env = {
        **os.environ,
        # The fake distributions come first on sys.path, so importlib.metadata finds them before the real ones.
        "PYTHONPATH": f"{site}{os.pathsep}{REPO}",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GEMMA4_PROFILE": "default",
        "GEMMA4_RESOLVED_DIR": str(tmp_path / "resolved"),
    }
    return subprocess.run(
        [sys.executable, "-m", "deploy", "launch", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_the_launcher_prints_the_versions_and_refuses_transformers_5_10(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "vllm", "0.21.0")
    _fake_distribution(site, "torch", "2.11.0")
    _fake_distribution(site, "transformers", "5.10.0")
    proc = _launch(site, tmp_path)
    assert proc.returncode == 2
    assert proc.stdout.startswith("launch: vLLM 0.21.0, torch 2.11.0, transformers 5.10.0\n")
    assert "error: transformers 5.10.0 is installed, but vLLM 0.21.0 cannot serve Gemma 4" in proc.stderr
    assert not (tmp_path / "vllm-ran").exists(), "vLLM was started anyway"
    assert not (tmp_path / "resolved").exists()


def test_the_launcher_goes_on_with_a_transformers_vllm_can_use(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "vllm", "0.21.0")
    _fake_distribution(site, "torch", "2.11.0")
    _fake_distribution(site, "transformers", "5.9.0")
    proc = _launch(site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("launch: vLLM 0.21.0, torch 2.11.0, transformers 5.9.0\n")
    assert (tmp_path / "vllm-ran").exists()
