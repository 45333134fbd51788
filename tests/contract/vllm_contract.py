"""Client side of the vLLM argument contract: send argument lists to vllm_parse.py, get verdicts."""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).with_name("vllm_parse.py")
# Relative paths in examples (`--config deploy/profiles/x.yaml`) are relative to the repository root.
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ArgCase:
    """One `vllm serve` argument list and the file it came from."""

    source: str
    argv: tuple[str, ...]


def check(vllm_python: str, cases: list[ArgCase]) -> list[dict[str, Any]]:
    """Parse every case with vLLM 0.21.0's parser in one subprocess (building it takes seconds)."""
    payload = json.dumps([{"source": c.source, "argv": list(c.argv)} for c in cases])
    proc = subprocess.run(
        [vllm_python, str(HARNESS)],
        input=payload,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"vllm_parse.py failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


# Building vLLM's parser takes seconds; several test modules ask for its options, so ask once.
@functools.cache
def list_options(vllm_python: str) -> list[str]:
    """Every option string of vLLM 0.21.0's `vllm serve` parser (``--max-model-len``, ``-tp``, ...)."""
    proc = subprocess.run(
        [vllm_python, str(HARNESS), "--list-options"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"vllm_parse.py --list-options failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)
