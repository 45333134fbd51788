"""One source of truth: serving arguments are written in deploy/profiles and nowhere else.

Compose, the Dockerfiles, the Helm chart, the Makefile and .env.example pass a profile name and
explicit user overrides only. This test fails when any of them spells a vLLM serving argument itself,
so a copy that could drift from the profile cannot land.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.contract.vllm_contract import list_options

pytestmark = pytest.mark.contract

# Files that deploy the model and so must not carry serving arguments of their own.
SURFACES = ("compose.yaml", ".env.example", "Makefile", "docker/**/*", "helm/**/*")

# vLLM option names that other tools in those files use for their own purposes (the smoke suite's
# --model, Prometheus' --config.file, ports and hosts of other services). They carry no serving choice.
GENERIC = {
    "--model",
    "--port",
    "--host",
    "--config",
    "--seed",
    "--help",
    "--version",
    "--revision",
    "--api-key",
}

# Files allowed to hold overrides, each with the reason. Their contents are parsed by the contract
# test (arg_sources.py), so they cannot drift into invalid arguments either.
OVERRIDE_FILES: dict[str, str] = {
    ".env.example": "documents GEMMA4_EXTRA_ARGS override examples (collected by arg_sources.extra_args_cases)",
    "helm/gemma4-serve/ci/extra-args-values.yaml": "the chart's serving.extraArgs example (arg_sources.helm_cases)",
}


def serving_flags(options: list[str]) -> set[str]:
    """Long vLLM options that choose something about serving."""
    return {o for o in options if o.startswith("--") and o not in GENERIC}


def find_copies(path: Path, flags: set[str]) -> list[str]:
    """`file:line: flag` for each serving argument spelled in ``path`` (as `--flag` or a YAML key)."""
    names = "|".join(sorted((re.escape(f[2:]) for f in flags), key=len, reverse=True))
    pattern = re.compile(rf"(?:(?<![\w-])--({names})(?![\w-]))|(?:^\s*-?\s*({names}):)", re.MULTILINE)
    hits = []
    text = path.read_text(errors="replace")
    for m in pattern.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        hits.append(f"{path}:{line}: --{m.group(1) or m.group(2)}")
    return hits


@pytest.fixture(scope="module")
def flags(vllm_python: str) -> set[str]:
    found = serving_flags(list_options(vllm_python))
    assert "--kv-cache-dtype" in found and "--gpu-memory-utilization" in found
    return found


def surface_files(repo: Path) -> list[Path]:
    files = {p for pattern in SURFACES for p in repo.glob(pattern) if p.is_file()}
    return sorted(p for p in files if str(p.relative_to(repo)) not in OVERRIDE_FILES)


def test_no_serving_argument_outside_the_profiles(repo: Path, flags: set[str]) -> None:
    copies = [hit for path in surface_files(repo) for hit in find_copies(path, flags)]
    assert not copies, (
        "serving arguments written outside deploy/profiles (pass a profile name or a documented override):\n"
        + "\n".join(copies)
    )


def test_drift_check_catches_a_copy(tmp_path: Path, flags: set[str]) -> None:
    """The check above can fail: a compose file that hard-codes the KV dtype is caught, both spellings."""
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  vllm:\n    command: [--kv-cache-dtype, fp8]\n")
    values = tmp_path / "values.yaml"
    values.write_text("vllm:\n  max-model-len: 32768\n")
    assert find_copies(compose, flags) == [f"{compose}:3: --kv-cache-dtype"]
    assert find_copies(values, flags) == [f"{values}:2: --max-model-len"]
