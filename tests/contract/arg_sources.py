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
# An override example in .env.example, commented out or not: `# GEMMA4_EXTRA_ARGS=--max-num-seqs 16`.
_EXTRA_ARGS_RE = re.compile(r"(?m)^#?\s*GEMMA4_EXTRA_ARGS=(.*)$")


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


def env_example_cases(repo: Path) -> list[ArgCase]:
    """GEMMA4_EXTRA_ARGS examples in .env.example, appended to a profile as the launcher appends them."""
    path = repo / ".env.example"
    if not path.is_file():
        return []
    text = path.read_text()
    cases = []
    for match in _EXTRA_ARGS_RE.finditer(text):
        # The launcher shell-splits the variable's value; compose strips one level of outer quotes first.
        value = match.group(1).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        line = text[: match.start()].count("\n") + 1
        argv = ("--config", str(PROFILES_DIR / "default.yaml"), *shlex.split(value))
        cases.append(ArgCase(f".env.example:{line}", argv))
    return cases


def all_cases(repo: Path) -> list[ArgCase]:
    """Everything the contract must accept."""
    return [*profile_cases(), *markdown_cases(repo), *env_example_cases(repo)]
