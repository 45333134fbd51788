"""Alternative engines (SGLang, llama.cpp): the one place their serving arguments are read from.

Each engine is described by ``deploy/engines/<name>.yaml``, the counterpart of ``deploy/profiles/`` for
vLLM: the images per device, the pinned checkpoint (repository, revision, files), the quantization
variants and the server flags. This module loads that file, downloads and verifies the pinned files into
the Hugging Face cache, and renders the server's argv with the files' local paths filled in. Compose and
Helm pass only an engine name, a variant and explicit user overrides; tests/contract checks the flags
with each engine's own argument parser (SGLang) or argument list (llama.cpp).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import UsageError
from deploy.profiles import to_argv

ENGINES_DIR = Path(__file__).resolve().parent
# Placeholders a flag value may hold; each becomes a local path once the checkpoint is in the cache.
CHECKPOINT_PLACEHOLDER = "{checkpoint}"


class EngineError(UsageError, ValueError):
    """An engine name, variant, device or file is wrong or missing; the message says which and the fix."""


@dataclass(frozen=True)
class FileSpec:
    """One pinned file of a checkpoint and what a correct copy looks like."""

    role: str
    name: str
    size: int | None = None
    sha256: str | None = None
    # For GGUF files: the `general.architecture` the header must carry (gemma4, clip for the projector).
    architecture: str | None = None


@dataclass(frozen=True)
class Engine:
    """An engine description as loaded from its YAML file."""

    name: str
    path: Path
    data: dict[str, Any]

    @property
    def devices(self) -> list[str]:
        """The devices this engine has an image for (gpu, cpu)."""
        return list(self.data["devices"])

    @property
    def variants(self) -> list[str]:
        """Names of the checkpoint variants (quantizations); the first is the default."""
        return list(self.data.get("variants") or {"default": {}})

    @property
    def repo(self) -> str:
        """Hugging Face repository of the checkpoint."""
        return self.data["checkpoint"]["repo"]

    @property
    def revision(self) -> str:
        """The pinned revision (a commit hash) of that repository."""
        return str(self.data["checkpoint"]["revision"])

    def image(self, device: str) -> str:
        """The pinned server image for ``device``."""
        return self.device(device)["image"]

    def device(self, device: str) -> dict[str, Any]:
        """The device section; raises :class:`EngineError` naming the valid devices."""
        devices = self.data["devices"]
        if device not in devices:
            raise EngineError(f"{self.name} has no device {device!r}: choose one of {', '.join(devices)}")
        return devices[device]

    def variant(self, name: str | None) -> str:
        """``name`` checked against the variants, or the default variant when ``name`` is empty."""
        if not name:
            return self.variants[0]
        if name not in self.variants:
            raise EngineError(f"{self.name} has no variant {name!r}: choose one of {', '.join(self.variants)}")
        return name

    def files(self, variant: str | None = None) -> list[FileSpec]:
        """The pinned single files of ``variant`` (the checkpoint's shared files plus the variant's own)."""
        chosen = self.variant(variant)
        merged = {
            **(self.data["checkpoint"].get("files") or {}),
            **((self.data.get("variants") or {}).get(chosen, {}) or {}).get("files", {}),
        }
        return [FileSpec(role=role, **spec) for role, spec in merged.items()]

    @property
    def snapshot(self) -> dict[str, Any] | None:
        """Whole-repository download settings (allow patterns, expected model_type), if the engine uses them."""
        return self.data["checkpoint"].get("snapshot")

    def args(self, device: str = "gpu") -> dict[str, Any]:
        """Server flags for ``device``: the common ones, then the device's overrides (a null removes a flag)."""
        merged = {**self.data["args"], **(self.device(device).get("args") or {})}
        return {k: v for k, v in merged.items() if v is not None}


def list_engines(directory: Path = ENGINES_DIR) -> list[str]:
    """Names of the engines described in ``directory``, sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_engine(name: str, directory: Path = ENGINES_DIR) -> Engine:
    """Load and check ``<directory>/<name>.yaml``; raises :class:`EngineError` on anything malformed."""
    path = directory / f"{name}.yaml"
    if not path.is_file():
        choices = ", ".join(list_engines(directory)) or "(none)"
        raise EngineError(f"unknown engine {name!r}: choose one of {choices} (files in {directory})")
    data = yaml.safe_load(path.read_text())
    missing = [k for k in ("engine", "release", "command", "devices", "checkpoint", "args") if k not in (data or {})]
    if missing:
        raise EngineError(f"{path}: missing keys {missing}")
    if data["engine"] != name:
        raise EngineError(f"{path}: `engine: {data['engine']}` must match the file name {name!r}")
    revision = str(data["checkpoint"].get("revision", ""))
    if len(revision) != 40 or any(c not in "0123456789abcdef" for c in revision):
        raise EngineError(f"{path}: checkpoint.revision must be a 40-character commit hash, not {revision!r}")
    bad = [k for k in data["args"] if k.startswith("-") or "_" in k]
    if bad:
        raise EngineError(f"{path}: args keys must be flag names like 'ctx-size', not {bad}")
    for device, section in data["devices"].items():
        image = section.get("image", "")
        if ":" not in image or image.endswith(":latest"):
            raise EngineError(f"{path}: devices.{device}.image must be pinned to a release tag, not {image!r}")
    return Engine(name=name, path=path, data=data)


def render_argv(
    engine: Engine,
    paths: dict[str, str],
    device: str = "gpu",
    extra_args: str = "",
) -> list[str]:
    """The server command: the engine's launcher, its flags with ``{placeholders}`` resolved, then ``extra_args``.

    ``paths`` maps a placeholder name (a file role such as ``model``, or ``checkpoint``) to a local path.
    ``extra_args`` is one shell-quoted string of user overrides appended verbatim (the server rejects
    what it does not know, with its own message).
    """
    resolved: dict[str, Any] = {}
    for key, value in engine.args(device).items():
        if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
            role = value[1:-1]
            if role not in paths:
                raise EngineError(f"{engine.path}: flag {key} needs {value}, which no downloaded file provides")
            value = paths[role]
        resolved[key] = value
    try:
        extra = shlex.split(extra_args)
    except ValueError as exc:
        raise EngineError(f"extra arguments {extra_args!r} are not valid shell words: {exc}") from exc
    return [*engine.data["command"], *to_argv(resolved), *extra]


def placeholder_paths(engine: Engine, variant: str | None = None, root: str = "/models") -> dict[str, str]:
    """Stand-in paths for every placeholder: what argument checks and documentation render with."""
    paths = {spec.role: f"{root}/{spec.name}" for spec in engine.files(variant)}
    paths["checkpoint"] = f"{root}/{engine.repo}"
    return paths


def args_script(argv: list[str]) -> str:
    """A POSIX shell fragment that sets ``"$@"`` to ``argv``; the server container sources it and execs."""
    return "# Written by `python -m deploy engine fetch`; do not edit.\nset -- " + shlex.join(argv) + "\n"


# ---- verification -----------------------------------------------------------------------------------


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (GGUF files are gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` from a GGUF header; raises :class:`EngineError` if the file is not GGUF."""
    from gguf import GGUFReader  # the fetch image and the dev venv have it; listing engines does not need it

    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise EngineError(f"{path}: not a GGUF file (no GGUF magic); delete it and fetch again")
    try:
        reader = GGUFReader(path)
        field = reader.get_field("general.architecture")
    except Exception as exc:  # gguf raises plain ValueError/IndexError/struct errors on a corrupt file
        raise EngineError(f"{path}: the GGUF header cannot be read ({exc}); delete it and fetch again") from exc
    if field is None:
        raise EngineError(f"{path}: the GGUF header has no general.architecture; is this a llama.cpp model file?")
    return field.contents()


def verify_file(spec: FileSpec, path: Path) -> None:
    """Check one downloaded file against its pin: size, SHA-256 and GGUF architecture where given."""
    if not path.is_file():
        raise EngineError(f"{spec.role} file {spec.name} is missing at {path}: run the fetch without HF_HUB_OFFLINE=1")
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise EngineError(
            f"{path}: {size} bytes, but {spec.name} at the pinned revision has {spec.size}; "
            "a partial or different file: delete it and fetch again"
        )
    if spec.sha256 is not None and sha256_of(path) != spec.sha256:
        raise EngineError(f"{path}: SHA-256 differs from the pinned {spec.sha256}; delete it and fetch again")
    if spec.architecture is not None:
        found = gguf_architecture(path)
        if found != spec.architecture:
            raise EngineError(
                f"{path}: GGUF architecture is {found!r}, expected {spec.architecture!r} for the {spec.role} file"
            )


def verify_snapshot(snapshot: dict[str, Any], directory: Path) -> None:
    """Check a downloaded repository snapshot: config model_type and every safetensors shard present."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise EngineError(f"{directory}: no config.json; the snapshot is incomplete: fetch again")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type != snapshot["model_type"]:
        raise EngineError(f"{config_path}: model_type is {model_type!r}, expected {snapshot['model_type']!r}")
    index = directory / "model.safetensors.index.json"
    # One file, or shards named by the index.
    shards = set(json.loads(index.read_text())["weight_map"].values()) if index.is_file() else {"model.safetensors"}
    missing = sorted(s for s in shards if not (directory / s).is_file())
    if missing:
        raise EngineError(f"{directory}: weight shards missing: {', '.join(missing)}; fetch again")


# ---- download ---------------------------------------------------------------------------------------


def fetch(
    engine: Engine, variant: str | None = None, cache_dir: Path | None = None, local_files_only: bool = False
) -> dict[str, str]:
    """Download the pinned files of ``variant`` into the Hugging Face cache, verify them, return their paths.

    With ``HF_HUB_OFFLINE=1`` (or ``local_files_only``) huggingface_hub only looks in the cache, so this
    becomes a check that fails clearly when something is missing. ``cache_dir`` defaults to the Hub cache
    of ``HF_HOME``. The returned mapping feeds :func:`render_argv`.
    """
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    paths: dict[str, str] = {}
    try:
        if engine.snapshot is not None:
            directory = snapshot_download(
                engine.repo,
                revision=engine.revision,
                allow_patterns=engine.snapshot["allow_patterns"],
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
            verify_snapshot(engine.snapshot, Path(directory))
            paths["checkpoint"] = directory
        for spec in engine.files(variant):
            local = hf_hub_download(
                engine.repo, spec.name, revision=engine.revision, cache_dir=cache_dir, local_files_only=local_files_only
            )
            verify_file(spec, Path(local))
            paths[spec.role] = local
    except LocalEntryNotFoundError as exc:
        raise EngineError(
            f"{engine.repo}@{engine.revision[:12]} is not in the cache and downloads are off (HF_HUB_OFFLINE=1): "
            f"unset HF_HUB_OFFLINE to download it ({exc})"
        ) from exc
    except HfHubHTTPError as exc:
        raise EngineError(
            f"cannot download {engine.repo}@{engine.revision[:12]}: {exc}. For a gated repository set "
            "HF_TOKEN_FILE to a file holding your token"
        ) from exc
    return paths
