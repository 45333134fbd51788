"""``python -m deploy verify``: check a checkpoint snapshot before vLLM spends minutes loading it.

Checks, each failing with the file or module it concerns:

1. the files vLLM reads are present (config, tokenizer, processor, every shard the index names);
2. every safetensors header parses and each file is as long as its header says (a cut-short download fails);
3. in a Hugging Face cache, each shard's sha256 equals the blob name, which is the Hub's LFS sha256;
4. ``quantization_config`` parses with compressed-tensors and is W8A16 as the bundle expects (int8 weights,
   symmetric, channel or group strategy, no activation quantization, ``pack-quantized``). A checkpoint you
   choose yourself (``GEMMA4_MODEL`` other than the bundle's) may also be W4A16: vLLM serves both with the
   same weight-only scheme (``CompressedTensorsWNA16``), and the summary says which one it is;
5. the right modules are quantized: every decoder-layer Linear is, and nothing in the vision or audio tower,
   the embeddings or ``lm_head`` is;
6. in a Hugging Face cache, the snapshot is the revision asked for: a commit names the snapshot folder, and a
   branch or tag's ``refs/<name>`` file points at it (a moving revision is reported, with the commit to pin).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from deploy.checkpoint.fetch import (
    FetchError,
    add_checkpoint_arguments,
    cached_snapshot,
    model_and_revision,
    snapshot_commit,
    unpinned_note,
)
from deploy.checkpoint.weights import QUANTIZED_SUFFIXES, CheckpointError, TensorInfo, read_header, snapshot_files
from deploy.errors import DeployError
from deploy.profiles import MODEL_ID, is_commit

REQUIRED_FILES: tuple[tuple[str, ...], ...] = (
    ("config.json",),
    ("tokenizer_config.json",),
    ("tokenizer.json", "tokenizer.model"),
    ("processor_config.json", "preprocessor_config.json"),
)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# The bundle's checkpoint is W8A16; another one (GEMMA4_MODEL) may be any weight-only int scheme vLLM's WNA16 runs.
EXPECTED_BITS: tuple[int, ...] = (8,)
OTHER_MODEL_BITS: tuple[int, ...] = (4, 8)
EXPECTED_STRATEGIES = ("channel", "group")
# Modules that must stay unquantized: both towers, their projections, the embeddings and the LM head.
MUST_STAY_UNQUANTIZED = re.compile(r"(vision_tower|audio_tower|embed_vision|embed_audio|embed_tokens|lm_head)")
DECODER_LINEAR = re.compile(r"language_model\.layers\.\d+\..*(_proj|_gate)$")


class VerifyError(DeployError, ValueError):
    """The snapshot is not what the bundle serves; the message names the file or module and the fix."""


def check_files(snapshot: Path) -> list[str]:
    """Required non-weight files; returns what was found."""
    found = []
    for alternatives in REQUIRED_FILES:
        present = [name for name in alternatives if (snapshot / name).is_file()]
        if not present:
            raise VerifyError(f"{snapshot}: missing {' or '.join(alternatives)}: fetch the snapshot again")
        found.append(present[0])
    return found


def check_shards(snapshot: Path, hash_files: bool = True) -> dict[str, TensorInfo]:
    """Headers parse, sizes match, sha256 matches the cache's blob name; returns every tensor."""
    tensors: dict[str, TensorInfo] = {}
    try:
        files = snapshot_files(snapshot)
    except CheckpointError as exc:
        raise VerifyError(str(exc)) from exc
    for path in files:
        if not path.is_file():
            raise VerifyError(f"{path.name}: missing shard (model.safetensors.index.json names it): fetch again")
        try:
            shard, expected_size = read_header(path)
        except CheckpointError as exc:
            raise VerifyError(str(exc)) from exc
        size = path.stat().st_size
        if size != expected_size:
            raise VerifyError(
                f"{path.name}: {size} bytes, but its header describes {expected_size}: incomplete or corrupted "
                "download; delete it and fetch again"
            )
        blob = path.resolve().name
        if hash_files and path.is_symlink() and SHA256_RE.match(blob):
            digest = _sha256(path)
            if digest != blob:
                raise VerifyError(
                    f"{path.name}: sha256 {digest} differs from the Hub's LFS hash {blob}: corrupted; delete "
                    f"{path.resolve()} and fetch again"
                )
        tensors.update(shard)
    index = snapshot / "model.safetensors.index.json"
    if index.is_file():
        missing = sorted(set(json.loads(index.read_text()).get("weight_map", {})) - set(tensors))
        if missing:
            raise VerifyError(f"{len(missing)} tensor(s) the index names are in no shard, e.g. {missing[0]}")
    return tensors


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_quantization(config: dict[str, Any], bits: tuple[int, ...] = EXPECTED_BITS) -> dict[str, Any]:
    """Parse ``quantization_config`` with compressed-tensors; return its scheme; raise unless W{bits}A16."""
    qc = config.get("quantization_config")
    if not qc:
        raise VerifyError("config.json has no quantization_config: this is not the W8A16 checkpoint")
    from compressed_tensors.quantization import QuantizationConfig

    try:
        parsed = QuantizationConfig.model_validate(qc)
    except Exception as exc:  # pydantic's ValidationError and friends: the message is the finding
        raise VerifyError(f"quantization_config does not parse with compressed-tensors: {exc}") from exc
    if parsed.quant_method != "compressed-tensors":
        raise VerifyError(f"quant_method is {parsed.quant_method!r}, expected 'compressed-tensors'")
    schemes = []
    for name, group in parsed.config_groups.items():
        w = group.weights
        fmt = getattr(group, "format", None) or parsed.format
        problems = []
        if w is None:
            problems.append("no weight quantization")
        else:
            if w.num_bits not in bits or str(getattr(w.type, "value", w.type)) != "int":
                expected = " or ".join(f"{b}-bit" for b in bits)
                problems.append(f"weights are {w.type} {w.num_bits}-bit, expected int {expected}")
            if not w.symmetric:
                problems.append("weights are asymmetric, expected symmetric")
            strategy = str(getattr(w.strategy, "value", w.strategy))
            if strategy not in EXPECTED_STRATEGIES:
                problems.append(f"strategy {strategy!r}, expected channel or group")
        if group.input_activations is not None:
            problems.append("activations are quantized (that is W8A8, not W8A16)")
        if fmt != "pack-quantized":
            problems.append(f"format {fmt!r}, expected 'pack-quantized'")
        if problems:
            raise VerifyError(f"quantization group {name!r} is not W8A16: " + "; ".join(problems))
        schemes.append(
            {
                "group": name,
                "targets": list(group.targets),
                "bits": w.num_bits,
                "type": str(getattr(w.type, "value", w.type)),
                "strategy": str(getattr(w.strategy, "value", w.strategy)),
                "group_size": w.group_size,
                "format": fmt,
            }
        )
    return {"schemes": schemes, "ignore": list(parsed.ignore or [])}


def check_modules(tensors: dict[str, TensorInfo]) -> dict[str, list[str]]:
    """Which modules are quantized; raise when a tower/embedding is, or a decoder Linear is not."""
    quantized = sorted({n.rsplit(".", 1)[0] for n in tensors if n.endswith(".weight_packed")})
    wrong = [m for m in quantized if MUST_STAY_UNQUANTIZED.search(m)]
    if wrong:
        raise VerifyError(
            f"{len(wrong)} module(s) that vLLM loads unquantized are quantized, e.g. {wrong[0]}: vLLM's Gemma 4 "
            "towers and embeddings expect bf16; use the 88plug W8A16 checkpoint or re-quantize with them ignored"
        )
    dense_linears = sorted(
        n[: -len(".weight")]
        for n in tensors
        if n.endswith(".weight") and DECODER_LINEAR.search(n[: -len(".weight")]) and not n.endswith(QUANTIZED_SUFFIXES)
    )
    if dense_linears:
        raise VerifyError(
            f"{len(dense_linears)} decoder Linear layer(s) are not quantized, e.g. {dense_linears[0]}: not W8A16"
        )
    if not quantized:
        raise VerifyError("no quantized module in the weights (no *.weight_packed tensor): not W8A16")
    unquantized = sorted({n.rsplit(".", 1)[0] for n in tensors if n.endswith(".weight")})
    return {"quantized": quantized, "unquantized": unquantized}


def check_revision(snapshot: Path, revision: str) -> str | None:
    """The commit of ``snapshot`` after checking it is ``revision``; None for a folder outside the HF cache.

    A commit must be the snapshot's folder name; a branch or tag must have ``refs/<revision>`` in the cache
    pointing at that folder (what huggingface_hub and vLLM resolve it to offline).
    """
    commit = snapshot_commit(snapshot)
    if commit is None:
        return None
    if is_commit(revision):
        if commit != revision:
            raise VerifyError(f"{snapshot}: holds commit {commit}, but the pinned revision is {revision}")
        return commit
    ref = snapshot.parent.parent / "refs" / revision
    try:
        target = ref.read_text().strip()
    except OSError as exc:
        raise VerifyError(
            f"{ref}: missing ({exc.strerror or exc}), so {revision!r} does not resolve to a snapshot offline: "
            "fetch again, or pin GEMMA4_REVISION to a commit"
        ) from exc
    if target != commit:
        raise VerifyError(
            f"{ref} points at {target}, but the snapshot verified is {commit}: the cache is inconsistent; fetch again"
        )
    return commit


def verify(snapshot: Path, hash_files: bool = True, bits: tuple[int, ...] = EXPECTED_BITS) -> dict[str, Any]:
    """Run every check (weights of ``bits`` bits); return a summary; raise :class:`VerifyError` on the first failure."""
    check_files(snapshot)
    try:
        config = json.loads((snapshot / "config.json").read_text())
    except ValueError as exc:
        raise VerifyError(f"{snapshot / 'config.json'}: not valid JSON ({exc})") from exc
    quant = check_quantization(config, bits)
    tensors = check_shards(snapshot, hash_files)
    modules = check_modules(tensors)
    return {"snapshot": str(snapshot), "tensors": len(tensors), **quant, **modules}


def _summarise(modules: list[str]) -> list[str]:
    """Group module names by what they belong to (``...layers.N...`` collapsed) for a short report."""
    groups: dict[str, int] = {}
    for m in modules:
        key = re.sub(r"\.layers\.\d+\.", ".layers.*.", m)
        key = key.split(".layers.*.")[0] + ".layers.*" if ".layers.*." in key else key
        groups[key] = groups.get(key, 0) + 1
    return [f"{k} ({n})" for k, n in sorted(groups.items())]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    p = subparsers.add_parser("verify", help="check a checkpoint snapshot: files, headers, hashes, W8A16 scheme")
    add_checkpoint_arguments(p)
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 check (fast; sizes are still checked)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the snapshot is good, 1 when it is missing or wrong."""
    model, revision = model_and_revision(args.model, args.revision)
    try:
        snapshot = cached_snapshot(model, revision, args.cache_dir)
        commit = check_revision(snapshot, revision)
        summary = verify(
            snapshot, hash_files=not args.no_hash, bits=EXPECTED_BITS if model == MODEL_ID else OTHER_MODEL_BITS
        )
    except (FetchError, VerifyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary |= {"revision": revision, "commit": commit, "pinned": is_commit(revision)}
    if note := unpinned_note(model, revision, commit):
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    scheme = summary["schemes"][0]
    print(f"verified {model}@{revision}{f' = commit {commit}' if commit else ''} ({snapshot})")
    print(
        f"  scheme: W{scheme['bits']}A16 {scheme['type']} {scheme['strategy']}"
        f"{'' if scheme['group_size'] is None else ' group ' + str(scheme['group_size'])}, {scheme['format']}"
    )
    print(f"  {summary['tensors']} tensors; {len(summary['quantized'])} quantized Linear modules")
    print("  left unquantized: " + ", ".join(_summarise(summary["unquantized"])))
    return 0
