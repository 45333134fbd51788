"""Every `vllm serve` argument list the project hands to vLLM, collected from the files that hold them.

Add a collector here when a new file starts passing arguments to vLLM (compose overrides, Helm
extraArgs, docs); test_vllm_args.py parses everything this module returns.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from deploy.profiles import PROFILES_DIR, list_profiles
from tests.contract.vllm_contract import ArgCase

# A fenced shell example in Markdown: `vllm serve ...` possibly continued with backslashes.
_SERVE_RE = re.compile(r"(?m)^\s*(?:\$\s*)?vllm serve\b((?:[^\n]*\\\n)*[^\n]*)")


def profile_cases() -> list[ArgCase]:
    """Each profile, exactly as the launcher hands it to vLLM (`--config FILE`)."""
    return [
        ArgCase(f"deploy/profiles/{name}.yaml", ("--config", str(PROFILES_DIR / f"{name}.yaml")))
        for name in list_profiles()
    ]


def markdown_cases(repo: Path) -> list[ArgCase]:
    """`vllm serve` command lines in the project's Markdown (README and docs)."""
    cases = []
    for md in sorted([*repo.glob("*.md"), *repo.glob("docs/**/*.md"), *repo.glob("helm/*/README.md")]):
        for match in _SERVE_RE.finditer(md.read_text()):
            argv = shlex.split(match.group(1).replace("\\\n", " "), comments=True)
            rel = md.relative_to(repo)
            line = md.read_text()[: match.start()].count("\n") + 1
            cases.append(ArgCase(f"{rel}:{line}", tuple(argv)))
    return cases


def all_cases(repo: Path) -> list[ArgCase]:
    """Everything the contract must accept."""
    return [*profile_cases(), *markdown_cases(repo)]
