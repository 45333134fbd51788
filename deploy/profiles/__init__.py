"""Serving profiles: the one place vLLM serving arguments are written.

A profile is a ``vllm serve --config`` YAML file in ``deploy/profiles/`` whose keys are vLLM 0.21.0 flag
names without the leading dashes. Compose, the vLLM image and the Helm chart pass only a profile name
(plus explicit user overrides); the launcher resolves it. ``tests/contract`` parses every profile with
vLLM's own parser and fails when any other file carries a copy of a serving argument.

A feature (``deploy/profiles/features/NAME.yaml``: ``tools``, ``reasoning``, ``audio``) is an opt-in set of
flags in the same form, merged into whichever profile is chosen (:func:`apply_features`). Compose
(``GEMMA4_FEATURES=tools,reasoning``) and Helm (``serving.features``) pass feature names, never their flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import UsageError

PROFILES_DIR = Path(__file__).resolve().parent
FEATURES_DIR = PROFILES_DIR / "features"
# Where the launcher, compose and the Helm chart name the features to switch on (comma-separated).
FEATURES_ENV = "GEMMA4_FEATURES"
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


class ProfileError(UsageError, ValueError):
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
    return _load_flags(profile_path(name, directory), "a profile")


def _load_flags(path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping of vLLM flag names (no dashes, no underscores) -> values; :class:`ProfileError` otherwise."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ProfileError(f"{path}: {what} must be a non-empty YAML mapping of vLLM flag names")
    bad = [k for k in data if not isinstance(k, str) or k.startswith("-") or "_" in k]
    if bad:
        raise ProfileError(f"{path}: keys must be flag names like 'max-model-len', not {bad}")
    return data


def list_features(directory: Path = FEATURES_DIR) -> list[str]:
    """Names of the opt-in features in ``directory``, sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_feature(name: str, directory: Path = FEATURES_DIR) -> dict[str, Any]:
    """Load feature ``name`` as a mapping of vLLM flag name -> value; the error names the valid choices."""
    path = directory / f"{name}.yaml"
    if not path.is_file():
        choices = ", ".join(list_features(directory)) or "(none)"
        raise ProfileError(f"unknown feature {name!r}: choose from {choices} (files in {directory})")
    return _load_flags(path, "a feature")


def feature_summary(name: str, directory: Path = FEATURES_DIR) -> str:
    """The feature file's first comment line without its ``# Feature `name`:`` prefix."""
    first = (directory / f"{name}.yaml").read_text().splitlines()[0]
    return first.lstrip("# ").removeprefix(f"Feature `{name}`:").strip()


def parse_features(text: str | None, directory: Path = FEATURES_DIR) -> list[str]:
    """``"tools, reasoning"`` -> ``["tools", "reasoning"]``, in the order given, each once.

    Empty (or ``none``) means no feature. An unknown name raises :class:`ProfileError` naming the choices.
    """
    names: list[str] = []
    for raw in (text or "").replace(" ", ",").split(","):
        name = raw.strip().lower()
        if not name or name == "none" or name in names:
            continue
        load_feature(name, directory)  # raises with the choices for an unknown name
        names.append(name)
    return names


def apply_features(config: dict[str, Any], names: list[str], directory: Path = FEATURES_DIR) -> dict[str, Any]:
    """``config`` with each feature's flags merged in (a new mapping; ``config`` is not changed).

    Mapping values (``limit-mm-per-prompt``, ``structured-outputs-config``) merge key by key, so the audio
    feature raises the audio limit and leaves the profile's image and video limits alone. Two features that
    set one flag to different values are a :class:`ProfileError`.
    """
    merged = dict(config)
    owner: dict[str, str] = {}
    for name in names:
        for key, value in load_feature(name, directory).items():
            base = merged.get(key)
            if isinstance(value, dict):
                base_map = base if isinstance(base, dict) else (json.loads(base) if isinstance(base, str) else {})
                for sub, sub_value in value.items():
                    if owner.get(f"{key}.{sub}") and base_map.get(sub) != sub_value:
                        raise ProfileError(f"features {owner[f'{key}.{sub}']} and {name} both set {key}.{sub}")
                    owner[f"{key}.{sub}"] = name
                merged[key] = {**base_map, **value}
            else:
                if owner.get(key) and base != value:
                    raise ProfileError(f"features {owner[key]} and {name} both set {key}, to {base!r} and {value!r}")
                owner[key] = name
                merged[key] = value
    return merged


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
