"""Checkpoint weights by component, read from safetensors headers: a local snapshot or the Hub's metadata API.

Only headers are read (8 bytes of length, then JSON), never the tensors, so this is fast on a 7.8 GiB snapshot
and needs no download: huggingface_hub's ``get_safetensors_metadata`` fetches the same headers with HTTP range
requests.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import DeployError

# safetensors caps the header at 100 MB; anything bigger is not a safetensors file.
MAX_HEADER_BYTES = 100_000_000
# Tensor names of a compressed-tensors quantized Linear.
QUANTIZED_SUFFIXES = (".weight_packed", ".weight_scale", ".weight_shape", ".weight_zero_point", ".weight_g_idx")


class CheckpointError(DeployError, ValueError):
    """A snapshot or file is missing, truncated or not safetensors; the message says which file."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's dtype, shape and byte size, from a header."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def read_header(path: Path) -> tuple[dict[str, TensorInfo], int]:
    """Tensors of one safetensors file and the byte count the file must have to be complete."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise CheckpointError(f"{path}: shorter than a safetensors header (truncated download?)")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: header length {length} is not plausible: not a safetensors file")
            header = f.read(length)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if len(header) != length:
        raise CheckpointError(f"{path}: header cut short (truncated download?)")
    try:
        data = json.loads(header)
    except ValueError as exc:
        raise CheckpointError(f"{path}: header is not JSON: not a safetensors file or corrupted") from exc
    tensors, end = {}, 0
    for name, info in data.items():
        if name == "__metadata__":
            continue
        start, stop = info["data_offsets"]
        tensors[name] = TensorInfo(info["dtype"], tuple(info["shape"]), stop - start)
        end = max(end, stop)
    return tensors, 8 + length + end


def snapshot_files(snapshot: Path) -> list[Path]:
    """The safetensors files a snapshot must have: those its index names, or every ``*.safetensors`` in it."""
    snapshot = Path(snapshot)
    index = snapshot / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [snapshot / name for name in sorted(set(weight_map.values()))]
    files = sorted(snapshot.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{snapshot}: no *.safetensors file and no model.safetensors.index.json")
    return files


def snapshot_tensors(snapshot: Path) -> dict[str, TensorInfo]:
    """Every tensor in a local snapshot, from the headers of its files."""
    tensors: dict[str, TensorInfo] = {}
    for path in snapshot_files(snapshot):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (the index names it): fetch the snapshot again")
        tensors.update(read_header(path)[0])
    return tensors


def hub_tensors(repo_id: str, revision: str | None = None) -> dict[str, TensorInfo]:
    """Every tensor of a Hub repository, from the headers huggingface_hub reads with range requests."""
    from huggingface_hub import get_safetensors_metadata

    meta = get_safetensors_metadata(repo_id, revision=revision)
    tensors = {}
    for file_meta in meta.files_metadata.values():
        for name, info in file_meta.tensors.items():
            start, stop = info.data_offsets
            tensors[name] = TensorInfo(info.dtype, tuple(info.shape), stop - start)
    return tensors


def component_of(name: str) -> str:
    """The planner component a tensor belongs to (see deploy.planner.model)."""
    if "vision_tower" in name or "embed_vision" in name:
        return "vision_tower"
    if "audio_tower" in name or "embed_audio" in name:
        return "audio_tower"
    if "embed_tokens_per_layer" in name:
        return "per_layer_embeddings"
    if "embed_tokens" in name or name.startswith("lm_head"):
        return "embed_tokens"
    if ".layers." in name and "language_model" in name:
        if name.endswith(QUANTIZED_SUFFIXES) or ("norm" not in name and "layer_scalar" not in name):
            return "decoder_linears"
        return "decoder_other"
    return "text_other"


def weights_by_component(tensors: dict[str, TensorInfo]) -> dict[str, int]:
    """Bytes per component."""
    out: dict[str, int] = {}
    for name, info in tensors.items():
        comp = component_of(name)
        out[comp] = out.get(comp, 0) + info.nbytes
    return out


def is_quantized_module(module: str, tensors: dict[str, TensorInfo]) -> bool:
    """Whether ``module`` (a name prefix) is stored compressed (it has a ``weight_packed`` tensor)."""
    return f"{module}.weight_packed" in tensors
