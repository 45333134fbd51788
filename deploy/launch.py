"""``python -m deploy launch``: the vLLM image's entrypoint. GPU + profile -> resolved config -> ``vllm serve``.

1. Read the GPU (nvidia-smi): memory and compute capability.
2. Pick the profile: ``GEMMA4_PROFILE=auto`` takes the largest GPU class the card has room for (Ada/Hopper or
   Ampere variant by compute capability); a card smaller than every class gets a configuration planned for it,
   or a refusal that names the llama.cpp path. A named profile is honoured.
3. Adjust only what the GPU dictates: an fp8 KV cache on a GPU below compute capability 8.9 becomes ``auto``.
4. Check the plan: it must fit the card, and the memory free right now must cover the budget; otherwise stop
   and say exactly what to change.
5. Write the resolved config, print it as a command with the fit summary, and exec
   ``vllm serve --config <resolved.yaml> [GEMMA4_EXTRA_ARGS]``.

Before all that it prints the vLLM, torch and transformers versions and refuses a transformers that vLLM
0.21.0 cannot serve Gemma 4 with (:mod:`deploy.versions`).

Exit codes (when nothing is exec'd): 0 dry run, 1 will not fit, 2 bad input.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy import versions
from deploy.fit import (
    CUDA_CONTEXT_BYTES,
    FitError,
    GiB,
    MiB,
    Plan,
    fp8_kv_supported,
    plan,
    with_args,
)
from deploy.gpu import GPU, GPUClass, GPUError, class_for, detect, load_classes
from deploy.model import GemmaModel
from deploy.profiles import DEFAULT_REVISION, ProfileError, load_profile, to_argv
from deploy.recommend import LLAMA_CPP_HINT, recommend
from deploy.serve_args import from_mapping, overrides_from_argv

# vLLM 0.21.0's quantized kernels for this checkpoint need sm_80+ (bf16 activations); Turing has no bf16.
MIN_COMPUTE_CAPABILITY = (8, 0)


class LaunchError(RuntimeError):
    """The launcher stops: ``code`` 1 when it will not fit, 2 for bad input; the message says what to do."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Resolved:
    """The launcher's decision: which profile, the config vLLM gets, the extra args, and why."""

    profile: str
    config: dict[str, Any]
    extra_args: list[str]
    notes: list[str] = field(default_factory=list)
    plan: Plan | None = None


def _base_profile(gpu: GPU, classes: list[GPUClass], model: GemmaModel, notes: list[str]) -> tuple[str, dict]:
    """The profile ``auto`` picks for ``gpu`` (or a plan made for a card smaller than every class)."""
    ampere = not fp8_kv_supported(gpu.compute_capability)
    cls = class_for(gpu, classes)
    if cls is not None:
        name = cls.profile_name(ampere)
        notes.append(
            f"auto: {gpu.name} ({gpu.total_bytes / GiB:.2f} GiB, compute capability {gpu.cc}) -> {name} "
            f"(planned for {cls.memory_mib} MiB, {'bf16' if ampere else 'fp8'} KV cache)"
        )
        return name, load_profile(name)
    smallest = classes[0]
    try:
        rec = recommend(model, gpu.total_bytes, gpu.compute_capability, gpu_name=gpu.name)
    except FitError as exc:
        raise LaunchError(
            f"{gpu.name} has {gpu.total_bytes / GiB:.2f} GiB, less than the smallest profile's "
            f"{smallest.memory_mib} MiB, and no configuration fits: {exc}",
            code=1,
        ) from exc
    name = smallest.profile_name(ampere)
    config = {k: v for k, v in load_profile(name).items() if k not in rec.plan.args}
    config.update(rec.plan.args)
    for dropped in ("cpu-offload-gb", "enforce-eager", "limit-mm-per-prompt"):
        if dropped not in rec.plan.args:
            config.pop(dropped, None)
    notes.append(
        f"auto: {gpu.name} ({gpu.total_bytes / GiB:.2f} GiB) is smaller than every profile; planned for this card "
        f"from {name}: " + "; ".join(rec.concessions)
    )
    return f"{name} (planned for {gpu.total_bytes // MiB} MiB)", config


def _correct_kv_dtype(config: dict[str, Any], extra: list[str], gpu: GPU, notes: list[str]) -> None:
    if fp8_kv_supported(gpu.compute_capability):
        return
    override = overrides_from_argv(extra).get("kv-cache-dtype")
    if override and str(override).startswith("fp8"):
        raise LaunchError(
            f"GEMMA4_EXTRA_ARGS asks for --kv-cache-dtype {override}, but {gpu.name} (compute capability {gpu.cc}) "
            "cannot run an fp8 KV cache for Gemma 4 (needs 8.9+, vLLM issue 26431): remove it from "
            "GEMMA4_EXTRA_ARGS (the launcher uses auto, i.e. bf16)"
        )
    if str(config.get("kv-cache-dtype", "auto")).startswith("fp8"):
        config["kv-cache-dtype"] = "auto"
        notes.append(
            f"kv-cache-dtype fp8 -> auto: {gpu.name} has compute capability {gpu.cc}; fp8 KV for Gemma 4 needs "
            "8.9+ (Ada/Hopper). bf16 KV takes twice the memory per sequence; the fit check below accounts for it"
        )


def _check_fit(config: dict[str, Any], extra: list[str], gpu: GPU, model: GemmaModel) -> Plan:
    try:
        args = from_mapping({**config, **overrides_from_argv(extra)})
        result = plan(model, args, gpu.total_bytes, gpu_name=gpu.name)
    except (FitError, ValueError) as exc:
        raise LaunchError(f"cannot plan the resolved arguments: {exc}") from exc
    if not result.fits:
        try:
            rec = recommend(model, gpu.total_bytes, gpu.compute_capability, gpu_name=gpu.name)
            hint = "GEMMA4_PROFILE=auto, or these arguments: " + shlex.join(to_argv(rec.plan.args))
        except FitError as exc:
            hint = str(exc)
        raise LaunchError(f"this configuration does not fit {gpu.name}: {result.reason}. Use {hint}", code=1)
    if gpu.free_bytes < result.required_free_bytes:
        busy = (gpu.total_bytes - gpu.free_bytes) / GiB
        lower = math.floor((gpu.free_bytes - CUDA_CONTEXT_BYTES) / gpu.total_bytes * 100) / 100
        advice = (
            "free that memory (nvidia-smi lists the processes: a desktop session, another container), pick "
            "another GPU with GEMMA4_GPU, or"
        )
        fallback = (
            plan(model, with_args(args, gpu_memory_utilization=lower), gpu.total_bytes, gpu_name=gpu.name)
            if (lower > 0)
            else None
        )
        if fallback is not None and fallback.fits:
            advice += (
                f" accept a smaller KV cache ({fallback.max_sequences_at_max_model_len} full-length sequences) with "
                f"GEMMA4_EXTRA_ARGS='--gpu-memory-utilization {lower:.2f}'"
            )
        else:
            advice += " use a smaller configuration (python -m deploy fit --recommend)"
        raise LaunchError(
            f"{gpu.name} has {gpu.free_bytes / GiB:.2f} GiB free ({busy:.2f} GiB already in use), but vLLM needs "
            f"{result.required_free_bytes / GiB:.2f} GiB free at start (gpu-memory-utilization "
            f"{args.gpu_memory_utilization} x {gpu.total_bytes / GiB:.2f} GiB plus the CUDA context): {advice}",
            code=1,
        )
    return result


def resolve(
    environ: Mapping[str, str],
    gpu: GPU | None,
    classes: list[GPUClass] | None = None,
    model: GemmaModel | None = None,
) -> Resolved:
    """Decide the profile and the config for ``gpu`` (None: nvidia-smi unavailable) from the environment."""
    classes = classes or load_classes()
    model = model or GemmaModel.load()
    notes: list[str] = []
    try:
        extra = shlex.split(environ.get("GEMMA4_EXTRA_ARGS", ""))
    except ValueError as exc:
        raise LaunchError(f"GEMMA4_EXTRA_ARGS is not valid shell quoting: {exc}") from exc
    requested = environ.get("GEMMA4_PROFILE", "").strip() or "auto"
    if gpu is not None and gpu.compute_capability < MIN_COMPUTE_CAPABILITY:
        raise LaunchError(
            f"{gpu.name} has compute capability {gpu.cc}; vLLM serves this bf16/W8A16 checkpoint from 8.0 "
            f"(Ampere) on: {LLAMA_CPP_HINT}",
            code=1,
        )
    if requested == "auto":
        if gpu is None:
            raise LaunchError(
                "GEMMA4_PROFILE=auto needs to see the GPU, and nvidia-smi is not available: give the container a "
                "GPU (NVIDIA Container Toolkit), or name a profile (python -m deploy profiles lists them)"
            )
        profile, config = _base_profile(gpu, classes, model, notes)
    else:
        try:
            config = load_profile(requested)
        except ProfileError as exc:
            raise LaunchError(f"GEMMA4_PROFILE: {exc}") from exc
        profile = requested
        notes.append(f"profile {requested} (forced by GEMMA4_PROFILE)")
    config = dict(config)
    if environ.get("GEMMA4_MODEL"):
        config["model"] = environ["GEMMA4_MODEL"]
        notes.append(f"model {config['model']} (GEMMA4_MODEL); the fit check still assumes Gemma 4 E2B W8A16")
    config["revision"] = environ.get("GEMMA4_REVISION") or DEFAULT_REVISION
    result = None
    if gpu is None:
        notes.append("no GPU information (nvidia-smi unavailable): the fit and free-memory checks are skipped")
    else:
        _correct_kv_dtype(config, extra, gpu, notes)
        result = _check_fit(config, extra, gpu, model)
    return Resolved(profile, config, extra, notes, result)


def write_config(resolved: Resolved, directory: Path) -> Path:
    """Write the resolved config where vLLM reads it; the header says where it came from."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "resolved.yaml"
    header = [
        f"# Resolved by `python -m deploy launch` from profile {resolved.profile}.",
        *(f"# {note}" for note in resolved.notes),
    ]
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(resolved.config, sort_keys=False))
    return path


def fit_summary(result: Plan) -> str:
    """Two lines on what the plan expects of the GPU (modelled, not measured)."""
    offloaded = -result.weights_by_component.get("cpu_offload", 0)
    return (
        f"fit (modelled, not measured): weights {result.weights_bytes / GiB:.2f} GiB on the GPU"
        f"{f' (+{offloaded / GiB:.2f} GiB offloaded to CPU)' if offloaded else ''}, overheads "
        f"{sum(o.bytes for k, o in result.overheads.items() if k != 'cuda_context') / GiB:.2f} GiB, KV cache "
        f"{result.kv_cache_budget_bytes / GiB:.2f} GiB\n"
        f"     = {result.max_sequences_at_max_model_len} sequence(s) of {result.args['max-model-len']} tokens at "
        f"{result.kv_cache_bytes_per_sequence / MiB:.1f} MiB each; budget {result.requested_bytes / GiB:.2f} GiB of "
        f"{result.total_bytes / GiB:.2f} GiB"
    )


def command(config_path: Path, extra: list[str]) -> list[str]:
    """The command the launcher execs."""
    return ["vllm", "serve", "--config", str(config_path), *extra]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``launch`` subcommand."""
    p = subparsers.add_parser(
        "launch", help="pick the profile for this GPU and exec `vllm serve` (the image's entrypoint)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved command and stop")
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="where to write resolved.yaml (default: $GEMMA4_RESOLVED_DIR or a temporary directory)",
    )
    p.set_defaults(handler=run)


def pick_gpu(gpus: list[GPU], environ: Mapping[str, str]) -> GPU:
    """The GPU vLLM will use: the first visible one, or the index CUDA_VISIBLE_DEVICES names.

    nvidia-smi ignores CUDA_VISIBLE_DEVICES while CUDA honours it, so a host with several GPUs and
    ``CUDA_VISIBLE_DEVICES=1`` must be planned for GPU 1. (In compose and Kubernetes the container sees
    only its own GPU, which is then the first.)
    """
    visible = environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible.isdigit():
        for gpu in gpus:
            if gpu.index == int(visible):
                return gpu
    return gpus[0]


def run(args: argparse.Namespace) -> int:
    """Resolve, print, exec vLLM (or stop with a message and exit 1/2)."""
    if versions.announce():  # the engine's versions first; a transformers vLLM cannot run with stops here
        return 2
    gpu = None
    try:
        gpu = pick_gpu(detect(), os.environ)
    except GPUError as exc:
        if (os.environ.get("GEMMA4_PROFILE") or "auto") == "auto":
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"warning: {exc}", file=sys.stderr)
    try:
        resolved = resolve(os.environ, gpu)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    directory = args.config_dir or Path(
        os.environ.get("GEMMA4_RESOLVED_DIR") or Path(tempfile.gettempdir()) / "gemma4-serve"
    )
    path = write_config(resolved, directory)
    for note in resolved.notes:
        print(f"launch: {note}")
    if resolved.plan is not None:
        print(fit_summary(resolved.plan))
    print("resolved arguments: " + shlex.join(to_argv(resolved.config) + resolved.extra_args))
    cmd = command(path, resolved.extra_args)
    print("exec: " + shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    os.execvp(cmd[0], cmd)
    return 0  # not reached
