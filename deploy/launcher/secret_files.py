"""Secrets handed over as files: ``NAME_FILE=/run/secrets/x`` becomes ``NAME`` in this process.

Compose and Kubernetes can mount a secret as a file without its value ever appearing in the rendered
configuration, ``docker inspect`` or a command line. vLLM and huggingface_hub read ``VLLM_API_KEY`` and
``HF_TOKEN`` from the environment only, so ``python -m deploy`` reads the files first; the launcher then
execs vLLM with that environment. A blank file means "not set" (anonymous download, no API key).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

from deploy.errors import UsageError

# The variables that may arrive as files. Nothing else is read this way.
SECRET_VARIABLES: tuple[str, ...] = ("HF_TOKEN", "VLLM_API_KEY")


class SecretFileError(UsageError, ValueError):
    """A ``*_FILE`` variable is unusable; the message names the variable and the fix."""


def load_secret_files(environ: MutableMapping[str, str], names: tuple[str, ...] = SECRET_VARIABLES) -> list[str]:
    """Set each ``NAME`` from the file named by ``NAME_FILE``; return the names that were set.

    Raises :class:`SecretFileError` when both ``NAME`` and ``NAME_FILE`` are set (which one was meant is
    unknowable) or when the file cannot be read. Values are never part of a message.
    """
    loaded = []
    for name in names:
        path = environ.get(f"{name}_FILE", "")
        if not path:
            continue
        if environ.get(name):
            raise SecretFileError(f"both {name} and {name}_FILE are set: keep one of them (prefer {name}_FILE)")
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretFileError(
                f"{name}_FILE={path}: cannot read it ({exc.strerror or exc}); "
                f"point {name}_FILE at a readable file holding the value, or unset it"
            ) from exc
        if value:
            environ[name] = value
            loaded.append(name)
    return loaded
