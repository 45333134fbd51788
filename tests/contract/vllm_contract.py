"""Client side of the vLLM argument contract: send argument lists to vllm_parse.py, get verdicts."""

from __future__ import annotations

import atexit
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


class _Parser:
    """vllm_parse.py --serve, started once per test session: building vLLM's parser imports for many seconds."""

    def __init__(self, vllm_python: str) -> None:
        self.proc = subprocess.Popen(
            [vllm_python, str(HARNESS), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        atexit.register(self.close)

    def ask(self, request: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"vllm_parse.py --serve exited ({self.proc.poll()}): run `{HARNESS.name}` by hand with the "
                "vLLM interpreter to see why"
            )
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@functools.cache
def _parser(vllm_python: str) -> _Parser:
    return _Parser(vllm_python)


def check(vllm_python: str, cases: list[ArgCase]) -> list[dict[str, Any]]:
    """Every case's verdict from vLLM 0.21.0's parser (one long-lived subprocess for the whole session)."""
    return _parser(vllm_python).ask({"cases": [{"source": c.source, "argv": list(c.argv)} for c in cases]})


def list_options(vllm_python: str) -> list[str]:
    """Every option string of vLLM 0.21.0's `vllm serve` parser (``--max-model-len``, ``-tp``, ...)."""
    return _parser(vllm_python).ask({"options": True})
