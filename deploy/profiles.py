"""Serving profiles: the one place vLLM serving arguments are written.

A profile is a ``vllm serve --config`` YAML file in ``deploy/profiles/`` whose keys are vLLM 0.21.0 flag
names without the leading dashes. Compose, the vLLM image and the Helm chart pass only a profile name
(plus explicit user overrides); the launcher resolves it. ``tests/contract`` parses every profile with
vLLM's own parser and fails when any other file carries a copy of a serving argument.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
MODEL_ID = "88plug/Gemma4-E2B-it-W8A16"
# The checkpoint revision `deploy fetch`, `deploy verify`, the launcher, compose, the images and the Helm chart
# use unless GEMMA4_REVISION (serving.revision) says otherwise; no other file spells a default. It is still
# the branch `main`: the Hub was not reachable where this bundle was written, so no commit could be read, and
# none is made up. `deploy fetch` prints the commit `main` resolves to; put that 40-hex commit here to pin the
# bytes (tests/unit/test_profiles.py then reports the pin as done).
DEFAULT_REVISION = "main"
SERVED_MODEL_NAME = "gemma-4-e2b-it"


def is_commit(revision: str) -> bool:
    """Whether ``revision`` is a full commit hash (40 hex digits), the only revision that cannot move."""
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


class ProfileError(ValueError):
    """A profile name or file is wrong; the message says which and what to do."""


def list_profiles(directory: Path = PROFILES_DIR) -> list[str]:
    """Names of the profiles in ``directory``, sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def profile_path(name: str, directory: Path = PROFILES_DIR) -> Path:
    """Path of profile ``name``; raises :class:`ProfileError` naming the valid choices."""
    path = directory / f"{name}.yaml"
    if not path.is_file():
        choices = ", ".join(list_profiles(directory)) or "(none)"
        raise ProfileError(f"unknown profile {name!r}: choose one of {choices} (files in {directory})")
    return path


def load_profile(name: str, directory: Path = PROFILES_DIR) -> dict[str, Any]:
    """Load profile ``name`` as a mapping of vLLM flag name -> value."""
    path = profile_path(name, directory)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ProfileError(f"{path}: a profile must be a non-empty YAML mapping of vLLM flag names")
    bad = [k for k in data if not isinstance(k, str) or k.startswith("-") or "_" in k]
    if bad:
        raise ProfileError(f"{path}: keys must be flag names like 'max-model-len', not {bad}")
    return data


def to_argv(config: dict[str, Any]) -> list[str]:
    """Flatten a profile into ``vllm serve`` arguments the way vLLM's ``--config`` loader does.

    Used to print the command a profile amounts to; the launcher itself hands vLLM the YAML file, so
    vLLM's own loader stays the authority (the contract test checks the two agree).
    """
    argv: list[str] = []
    for key, value in config.items():
        flag = f"--{key}"
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        elif isinstance(value, list):
            if value:
                argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv
