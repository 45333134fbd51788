"""The engine's versions, printed by the launcher at start, and the combination it refuses.

vLLM 0.21.0 profiles Gemma 4's vision tower by calling the Hugging Face processor with text only. From
transformers 5.10 on, that processor refuses text that holds image tokens without images ("Found 1 <|image|>
tokens in the text but no images were passed"), so vLLM 0.21.0 cannot start Gemma 4 with images on it. vLLM
0.21.0 itself only asks for ``transformers>=4.56.0`` (minus 5.0-5.5.0), so nothing stops an image or a venv
from carrying 5.10 or later: this check does. Versions are read from package metadata, so nothing heavy is
imported. docs/real-engine.md says what the pinned GPU image ships and how that was determined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

# The first transformers release with which vLLM 0.21.x cannot serve Gemma 4 images.
TRANSFORMERS_BREAKS_AT = (5, 10)
# The vLLM release the bundle serves with (deploy/profiles, docker/vllm/Dockerfile).
VLLM_SERIES = (0, 21)


@dataclass(frozen=True)
class Versions:
    """Installed versions of the engine's packages (None: not installed in this interpreter)."""

    vllm: str | None
    torch: str | None
    transformers: str | None

    def line(self) -> str:
        """``vLLM 0.21.0, torch 2.11.0, transformers 5.9.0`` (or ``not installed``)."""
        return ", ".join(
            f"{label} {value or 'not installed'}"
            for label, value in (("vLLM", self.vllm), ("torch", self.torch), ("transformers", self.transformers))
        )


def installed() -> Versions:
    """The versions this interpreter would run vLLM with."""
    return Versions(*(_version(name) for name in ("vllm", "torch", "transformers")))


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def release(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version string: ``5.10.0.dev0`` -> (5, 10, 0), ``0.21.0+cpu`` -> (0, 21, 0)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def problem(versions: Versions) -> str | None:
    """Why vLLM cannot serve Gemma 4 with these versions, with the fix; None when nothing is known to be wrong."""
    if versions.vllm is None or versions.transformers is None:
        return None
    if release(versions.vllm)[:2] != VLLM_SERIES or release(versions.transformers)[:2] < TRANSFORMERS_BREAKS_AT:
        return None
    limit = ".".join(map(str, TRANSFORMERS_BREAKS_AT))
    return (
        f"transformers {versions.transformers} is installed, but vLLM {versions.vllm} cannot serve Gemma 4 with "
        f"transformers {limit} or later: its multimodal profiling fails at start ('Found 1 <|image|> tokens in the "
        f"text but no images were passed'). Install an older one beside vLLM (pip install 'transformers<{limit}'; "
        "the bundle tests with 5.9.0), or use the bundle's image, which adds nothing to vLLM's own"
    )


def warning(versions: Versions) -> str | None:
    """A note when vLLM is not the release the bundle was verified with (the launcher goes on)."""
    if versions.vllm is None or release(versions.vllm)[:2] == VLLM_SERIES:
        return None
    series = ".".join(map(str, VLLM_SERIES))
    return f"vLLM {versions.vllm} is not the {series} release the profiles were checked against; they may not parse"


def announce() -> int:
    """Print the versions (stdout) and any warning or refusal (stderr); return 2 to refuse, else 0."""
    import sys

    versions = installed()
    print(f"launch: {versions.line()}", flush=True)
    note = warning(versions)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    refused = problem(versions)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    return 0
