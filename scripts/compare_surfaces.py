"""Compare this checkout's user-facing surfaces with another git ref: proof that a restructuring is a move.

    python3 scripts/compare_surfaces.py [REF]      REF defaults to main; exit 1 on any difference

What must be the same, byte for byte, between REF and the working tree:

- ``python -m deploy --help`` and the ``--help`` of every subcommand and sub-subcommand (walked from the
  parsers themselves, so a subcommand added or lost shows up as a difference);
- ``python -m smoke_tests --help``;
- every profile under deploy/profiles (features included), except the header: the leading block of ``#``
  comment lines, which names the modules that generate and guard it;
- every engine YAML under deploy/engines, as YAML (its comments point to documents that moved).

It also prints ``pytest --collect-only`` counts for both, and fails when the working tree collects fewer.
REF is exported with ``git archive`` into a temporary folder; nothing in the checkout is touched. Run it
with the dev venv's python (``scripts/bootstrap.sh env`` prints DEV_BIN).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Prints every parser's help, one "=== PROG" block each, walking subparsers depth first.
HELP_WALKER = r"""
import argparse
from deploy.__main__ import build_parser

def walk(parser):
    print("=== " + parser.prog)
    print(parser.format_help())
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in sorted(action.choices.items()):
                walk(sub)

walk(build_parser())
"""


def run(tree: Path, *args: str) -> str:
    """Run the dev python in ``tree`` with that tree first on the import path; stdout and stderr, joined."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return f"{out.stdout}{out.stderr}[exit {out.returncode}]\n"


def body(path: Path) -> bytes:
    """A YAML file without its leading block of comment lines."""
    lines = path.read_bytes().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if not line.startswith(b"#")), len(lines))
    return b"".join(lines[start:])


def same_yaml(name: str, before: Path, after: Path) -> bool:
    """Profiles: byte-identical below the header. Engine files: the same YAML document."""
    if name.startswith("deploy/engines/"):
        return yaml.safe_load(before.read_text()) == yaml.safe_load(after.read_text())
    return body(before) == body(after)


def yaml_files(tree: Path) -> dict[str, Path]:
    """deploy/profiles/**.yaml and deploy/engines/*.yaml of a tree, by path relative to the tree."""
    found = [*(tree / "deploy" / "profiles").rglob("*.yaml"), *(tree / "deploy" / "engines").glob("*.yaml")]
    return {str(p.relative_to(tree)): p for p in found}


def collected(tree: Path) -> int:
    """How many tests ``pytest --collect-only`` finds in a tree."""
    out = run(tree, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    # "1119 tests collected in 9s", or "1119/1122 tests collected (3 deselected) in 9s": the selected count.
    found = re.search(r"^(\d+)(?:/\d+)? tests? collected", out, re.MULTILINE)
    if not found:
        raise SystemExit(f"pytest --collect-only in {tree} printed no count:\n{out[-2000:]}")
    return int(found.group(1))


def compare(ref: str, old: Path) -> list[str]:
    """Every difference between the exported ``ref`` in ``old`` and the working tree, as one line each."""
    problems = []
    surfaces = {
        "python -m deploy (every --help)": ("-c", HELP_WALKER),
        "python -m deploy --help": ("-m", "deploy", "--help"),
        "python -m smoke_tests --help": ("-m", "smoke_tests", "--help"),
    }
    for name, args in surfaces.items():
        before, after = run(old, *args), run(REPO, *args)
        print(f"{name}: {len(after.splitlines())} lines, {'same' if before == after else 'DIFFERENT'}")
        if before != after:
            problems.append(f"{name} differs from {ref}")
    old_yaml, new_yaml = yaml_files(old), yaml_files(REPO)
    if old_yaml.keys() != new_yaml.keys():
        problems.append(
            f"YAML files differ: only in {ref} {sorted(old_yaml.keys() - new_yaml.keys())}, "
            f"only here {sorted(new_yaml.keys() - old_yaml.keys())}"
        )
    same = [k for k in sorted(old_yaml.keys() & new_yaml.keys()) if same_yaml(k, old_yaml[k], new_yaml[k])]
    problems += [f"{k}: differs below its header" for k in sorted(old_yaml.keys() & new_yaml.keys()) if k not in same]
    print(f"profiles and engine YAML: {len(same)} of {len(new_yaml)} the same (profiles below their header)")
    before, after = collected(old), collected(REPO)
    print(f"pytest --collect-only: {ref} {before}, this tree {after}")
    if after < before:
        problems.append(f"fewer tests collected than {ref}: {after} < {before}")
    return problems


def main(argv: list[str]) -> int:
    """Export the ref, compare, print a verdict; 0 when every surface is the same."""
    ref = argv[0] if argv else "main"
    with tempfile.TemporaryDirectory(prefix="surfaces-") as tmp:
        archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        problems = compare(ref, Path(tmp))
    for problem in problems:
        print(f"DIFFERENT: {problem}", file=sys.stderr)
    print("same surfaces" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
