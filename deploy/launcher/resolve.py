"""What `python -m deploy launch` (:mod:`deploy.launcher.cli`) does: GPU + profile -> resolved config -> ``vllm serve``.

1. Read the GPU (nvidia-smi): memory, compute capability, PCIe link; a MIG slice's own memory (not the parent's);
   whether this is WSL2 (no pinned memory, so no CPU offload).
2. Pick the profile: ``GEMMA4_PROFILE=auto`` takes the largest GPU class the card has room for (Ada/Hopper or
   Ampere variant by compute capability); a card smaller than every class gets a configuration planned for it,
   or a refusal that names the llama.cpp path. A named profile is honoured. The opt-in features named in
   ``GEMMA4_FEATURES`` (``deploy/profiles/features``) are merged into it.
3. Adjust only what the GPU dictates: an fp8 KV cache on a GPU below compute capability 8.9 becomes ``auto``;
   under WSL2 a plan that offloads to the CPU is re-planned without offload (``auto``) or refused (a named
   profile); and what the orchestrator dictates: ``GEMMA4_LISTEN_PORT`` (the pod's port) replaces the
   profile's ``port``.
4. Check the plan: it must fit the card, and the memory free right now must cover the budget; otherwise stop
   and say exactly what to change (a feature that does not fit is named, with the setting that drops it).
5. Write the resolved config, print it as a command with the fit summary, and exec
   ``vllm serve --config <resolved.yaml> [GEMMA4_EXTRA_ARGS]``.

Before all that it prints the vLLM, torch and transformers versions and refuses a transformers that vLLM
0.21.0 cannot serve Gemma 4 with (:mod:`deploy.launcher.versions`).

Exit codes (when nothing is exec'd): 0 dry run, 1 will not fit, 2 bad input.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import UsageError
from deploy.launcher.gpu import GPU, class_for, in_wsl
from deploy.planner.args import from_mapping, overrides_from_argv
from deploy.planner.budget import (
    CUDA_CONTEXT_BYTES,
    FitError,
    GiB,
    MiB,
    Plan,
    decode_note,
    fp8_kv_supported,
    plan,
    with_args,
)
from deploy.planner.gpu_classes import GPUClass, load_classes
from deploy.planner.model import GemmaModel
from deploy.planner.recommend import LLAMA_CPP_HINT, MAX_OFFLOAD_SECONDS_PER_STEP, recommend
from deploy.profiles import (
    DEFAULT_REVISION,
    FEATURES_ENV,
    ProfileError,
    apply_features,
    feature_summary,
    load_profile,
    parse_features,
    to_argv,
)

# vLLM 0.21.0's quantized kernels for this checkpoint need sm_80+ (bf16 activations); Turing has no bf16.
MIN_COMPUTE_CAPABILITY = (8, 0)


class LaunchError(UsageError, RuntimeError):
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
    features: list[str] = field(default_factory=list)


WSL_NO_OFFLOAD = (
    "WSL2 has no pinned host memory for CUDA, so vLLM turns pinning off (vllm/platforms/interface.py) and with it "
    "the UVA path --cpu-offload-gb relies on"
)


def _planned_for_card(
    gpu: GPU, name: str, model: GemmaModel, *, allow_offload: bool, why: str
) -> tuple[str, dict[str, Any], list[str]]:
    """A configuration planned for this very card (``deploy fit --recommend``), starting from profile ``name``."""
    try:
        rec = recommend(
            model,
            gpu.total_bytes,
            gpu.compute_capability,
            gpu_name=gpu.name,
            pcie=gpu.link,
            allow_offload=allow_offload,
        )
    except FitError as exc:
        raise LaunchError(f"{why}, and no configuration fits: {exc}", code=1) from exc
    config = {k: v for k, v in load_profile(name).items() if k not in rec.plan.args}
    config.update(rec.plan.args)
    for dropped in ("cpu-offload-gb", "enforce-eager", "limit-mm-per-prompt", "language-model-only"):
        if dropped not in rec.plan.args:
            config.pop(dropped, None)
    return f"{name} (planned for {gpu.total_bytes // MiB} MiB)", config, list(rec.concessions)


def _base_profile(
    gpu: GPU, classes: list[GPUClass], model: GemmaModel, notes: list[str], wsl: bool = False
) -> tuple[str, dict]:
    """The profile ``auto`` picks for ``gpu`` (or a plan made for a card smaller than every class)."""
    ampere = not fp8_kv_supported(gpu.compute_capability)
    cls = class_for(gpu, classes)
    if gpu.mig_profile:
        notes.append(
            f"MIG slice {gpu.mig_profile}: planning for the slice's {gpu.total_bytes / GiB:.2f} GiB (nvidia-smi's "
            "memory.total shows the parent GPU)"
        )
    if cls is not None and wsl and load_profile(cls.profile_name(ampere)).get("cpu-offload-gb"):
        profile, config, given_up = _planned_for_card(
            gpu,
            cls.profile_name(ampere),
            model,
            allow_offload=False,
            why=f"{gpu.name} under WSL2: {cls.profile_name(ampere)} offloads to the CPU, which WSL2 cannot do "
            f"({WSL_NO_OFFLOAD}; a native Linux host can)",
        )
        notes.append(
            f"auto: {gpu.name} under WSL2: {cls.profile_name(ampere)} offloads to the CPU, which WSL2 cannot do "
            f"({WSL_NO_OFFLOAD}); planned without offload for this card: " + "; ".join(given_up)
        )
        return profile, config
    if cls is not None:
        name = cls.profile_name(ampere)
        notes.append(
            f"auto: {gpu.name} ({gpu.total_bytes / GiB:.2f} GiB, compute capability {gpu.cc}) -> {name} "
            f"(planned for {cls.memory_mib} MiB, {'bf16' if ampere else 'fp8'} KV cache)"
        )
        return name, load_profile(name)
    profile, config, given_up = _planned_for_card(
        gpu,
        classes[0].profile_name(ampere),
        model,
        allow_offload=not wsl,
        why=f"{gpu.name} has {gpu.total_bytes / GiB:.2f} GiB, less than the smallest profile's "
        f"{classes[0].memory_mib} MiB" + (" (under WSL2, without CPU offload)" if wsl else ""),
    )
    notes.append(
        f"auto: {gpu.name} ({gpu.total_bytes / GiB:.2f} GiB) is smaller than every profile; planned for this card "
        f"from {profile.split()[0]}: " + "; ".join(given_up)
    )
    return profile, config


def _refuse_offload_under_wsl(config: dict[str, Any], extra: list[str], profile: str) -> None:
    """A named profile or GEMMA4_EXTRA_ARGS asking for CPU offload under WSL2 is refused (exit 1)."""
    override = overrides_from_argv(extra).get("cpu-offload-gb")
    if override is not None and float(override) > 0:
        raise LaunchError(
            f"GEMMA4_EXTRA_ARGS asks for --cpu-offload-gb {override}, but {WSL_NO_OFFLOAD}: remove it, "
            "or run on a native Linux host",
            code=1,
        )
    if override is None and float(config.get("cpu-offload-gb") or 0) > 0:
        raise LaunchError(
            f"profile {profile} offloads {config['cpu-offload-gb']} GiB to the CPU, but {WSL_NO_OFFLOAD}: "
            "use GEMMA4_PROFILE=auto (it plans this card without offload, or says why nothing fits), or run on a "
            "native Linux host",
            code=1,
        )


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


def _flag_values(argv: list[str], flag: str) -> list[str]:
    """Every value ``argv`` gives ``flag`` (``--flag V`` or ``--flag=V``), in order."""
    values = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
    return values


def _listen_port(raw: str, extra: list[str]) -> int:
    """GEMMA4_LISTEN_PORT as a port number; refused when not one, or when GEMMA4_EXTRA_ARGS says otherwise."""
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise LaunchError(f"GEMMA4_LISTEN_PORT={raw!r} is not a port number (1-65535)")
    other = [v for v in _flag_values(extra, "--port") if v != str(port)]
    if other:
        raise LaunchError(
            f"GEMMA4_EXTRA_ARGS sets --port {other[-1]}, but GEMMA4_LISTEN_PORT={port} is where the probes and the "
            "Service look: remove --port from the extra arguments (in Helm, set serving.port instead)"
        )
    return port


def _shutdown_timeout(raw: str, extra: list[str]) -> int:
    """GEMMA4_SHUTDOWN_TIMEOUT as whole seconds; refused when not one, or when GEMMA4_EXTRA_ARGS says otherwise.

    vLLM 0.21.0 aborts every unfinished request on SIGTERM unless ``--shutdown-timeout`` is above 0. Where no
    preStop hook drains the server first (compose: `docker stop` sends SIGTERM at once), this lets the streams
    in flight finish; the container's stop grace period must be longer.
    """
    if not raw.isdigit():
        raise LaunchError(f"GEMMA4_SHUTDOWN_TIMEOUT={raw!r} is not a whole number of seconds")
    other = [v for v in _flag_values(extra, "--shutdown-timeout") if v != raw]
    if other:
        raise LaunchError(
            f"GEMMA4_EXTRA_ARGS sets --shutdown-timeout {other[-1]}, but GEMMA4_SHUTDOWN_TIMEOUT={raw} is what the "
            "container's stop grace period is sized for: remove --shutdown-timeout from the extra arguments"
        )
    return int(raw)


def _features_to_drop(
    base: dict[str, Any], features: list[str], extra: list[str], gpu: GPU, model: GemmaModel
) -> tuple[list[str], list[str]]:
    """Why the features miss the card: (features any one of which, dropped, makes it fit; the features left).

    When no single feature is to blame but dropping them all fits, all are named; when even that does not fit,
    the features are not the problem and both lists are empty.
    """

    def fits(names: list[str]) -> bool:
        config = {**apply_features(base, names), **overrides_from_argv(extra)}
        return plan(model, from_mapping(config), gpu.total_bytes, gpu_name=gpu.name).fits

    single = [f for f in features if fits([g for g in features if g != f])]
    if single:
        return single, [f for f in features if f != single[0]]
    return (list(features), []) if fits([]) else ([], [])


# Features that need a multimodal tower, which `language-model-only` (a text-only plan) never loads.
TOWER_FEATURES = ("audio",)


def _refuse_towers_the_profile_dropped(
    config: dict[str, Any], features: list[str], profile: str, gpu: GPU | None
) -> None:
    """A text-only profile (planned so for a small card) cannot serve audio: refuse rather than serve it deaf."""
    culprits = [name for name in features if name in TOWER_FEATURES]
    if not culprits or not config.get("language-model-only"):
        return
    rest = [name for name in features if name not in culprits]
    card = gpu.name if gpu is not None else "this GPU"
    raise LaunchError(
        f"the features {FEATURES_ENV}={','.join(features)} do not fit {card} with this profile: {profile} is "
        f"text only (language-model-only) to fit the card, so no {' or '.join(culprits)} tower is loaded. Drop "
        f"{' and '.join(culprits)}: {FEATURES_ENV}={','.join(rest) or 'none'} (compose) or the same list in "
        "serving.features (Helm); or use a GPU with more memory",
        code=1,
    )


def _check_fit(
    config: dict[str, Any],
    extra: list[str],
    gpu: GPU,
    model: GemmaModel,
    base: dict[str, Any] | None = None,
    features: list[str] | None = None,
) -> Plan:
    try:
        args = from_mapping({**config, **overrides_from_argv(extra)})
        result = plan(model, args, gpu.total_bytes, gpu_name=gpu.name, pcie=gpu.link)
    except (FitError, ValueError) as exc:
        raise LaunchError(f"cannot plan the resolved arguments: {exc}") from exc
    if not result.fits and features and base is not None:
        culprits, rest = _features_to_drop(base, features, extra, gpu, model)
        if culprits:
            which = " or ".join(culprits) if rest or len(culprits) == 1 else " and ".join(culprits)
            raise LaunchError(
                f"the features {FEATURES_ENV}={','.join(features)} do not fit {gpu.name} with this profile: "
                f"{result.reason}. Drop {which}: {FEATURES_ENV}={','.join(rest) or 'none'} (compose) or the same "
                "list in serving.features (Helm); or use a GPU with more memory",
                code=1,
            )
    if not result.fits:
        try:
            rec = recommend(model, gpu.total_bytes, gpu.compute_capability, gpu_name=gpu.name, pcie=gpu.link)
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
            plan(
                model, with_args(args, gpu_memory_utilization=lower), gpu.total_bytes, gpu_name=gpu.name, pcie=gpu.link
            )
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
    wsl: bool | None = None,
) -> Resolved:
    """Decide the profile and the config for ``gpu`` (None: nvidia-smi unavailable) from the environment.

    ``wsl``: whether this runs under WSL2 (default: ``GEMMA4_WSL=1|0`` if set, else vLLM's own uname test).
    """
    classes = classes or load_classes()
    model = model or GemmaModel.load()
    notes: list[str] = []
    if wsl is None:
        wsl = environ["GEMMA4_WSL"] == "1" if environ.get("GEMMA4_WSL") in ("0", "1") else in_wsl()
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
        profile, config = _base_profile(gpu, classes, model, notes, wsl)
    else:
        try:
            config = load_profile(requested)
        except ProfileError as exc:
            raise LaunchError(f"GEMMA4_PROFILE: {exc}") from exc
        profile = requested
        notes.append(f"profile {requested} (forced by GEMMA4_PROFILE)")
    config = dict(config)
    base = config
    try:
        features = parse_features(environ.get(FEATURES_ENV))
    except ProfileError as exc:
        raise LaunchError(f"{FEATURES_ENV}: {exc}") from exc
    if features:
        try:
            config = apply_features(config, features)
        except ProfileError as exc:
            raise LaunchError(f"{FEATURES_ENV}: {exc}") from exc
        for name in features:
            notes.append(f"feature {name} ({FEATURES_ENV}): {feature_summary(name)}")
        _refuse_towers_the_profile_dropped(config, features, profile, gpu)
    if environ.get("GEMMA4_MODEL"):
        config["model"] = environ["GEMMA4_MODEL"]
        notes.append(f"model {config['model']} (GEMMA4_MODEL); the fit check still assumes Gemma 4 E2B W8A16")
    config["revision"] = environ.get("GEMMA4_REVISION") or DEFAULT_REVISION
    if environ.get("GEMMA4_LISTEN_PORT", "").strip():
        config["port"] = _listen_port(environ["GEMMA4_LISTEN_PORT"].strip(), extra)
        notes.append(f"port {config['port']} (GEMMA4_LISTEN_PORT)")
    if environ.get("GEMMA4_SHUTDOWN_TIMEOUT", "").strip():
        config["shutdown-timeout"] = _shutdown_timeout(environ["GEMMA4_SHUTDOWN_TIMEOUT"].strip(), extra)
        notes.append(
            f"on SIGTERM, in-flight requests finish for up to {config['shutdown-timeout']} s (GEMMA4_SHUTDOWN_TIMEOUT)"
        )
    result = None
    if wsl:
        _refuse_offload_under_wsl(config, extra, profile)
    if gpu is None:
        notes.append("no GPU information (nvidia-smi unavailable): the fit and free-memory checks are skipped")
    else:
        _correct_kv_dtype(config, extra, gpu, notes)
        base = {**base, "kv-cache-dtype": config.get("kv-cache-dtype", "auto")}
        result = _check_fit(config, extra, gpu, model, base, features)
        if result.offload_seconds_per_step:
            if gpu.pcie is None:
                notes.append("nvidia-smi did not report the PCIe link: CPU offload is priced for PCIe 4.0 x16")
            if result.offload_seconds_per_step > MAX_OFFLOAD_SECONDS_PER_STEP:
                notes.append(
                    f"warning: on this card's {result.pcie} the offload costs more than the "
                    f"{MAX_OFFLOAD_SECONDS_PER_STEP * 1000:.0f} ms a step the profiles are planned for; a card with "
                    "more lanes, or more memory, decodes faster"
                )
    return Resolved(profile, config, extra, notes, result, features)


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
    """Three lines on what the plan expects of the GPU (modelled, not measured)."""
    offloaded = -result.weights_by_component.get("cpu_offload", 0)
    return (
        f"fit (modelled, not measured): weights {result.weights_bytes / GiB:.2f} GiB on the GPU"
        f"{f' (+{offloaded / GiB:.2f} GiB offloaded to CPU)' if offloaded else ''}, overheads "
        f"{sum(o.bytes for k, o in result.overheads.items() if k != 'cuda_context') / GiB:.2f} GiB, KV cache "
        f"{result.kv_cache_budget_bytes / GiB:.2f} GiB (vLLM should log about {result.kv_cache_tokens:,} tokens)\n"
        f"     = {result.max_sequences_at_max_model_len} sequence(s) of {result.args['max-model-len']} tokens at "
        f"{result.kv_cache_bytes_per_sequence / MiB:.1f} MiB each after a {result.safety_margin_bytes // MiB} MiB "
        f"safety margin; budget {result.requested_bytes / GiB:.2f} GiB of {result.total_bytes / GiB:.2f} GiB, "
        f"peak about {result.peak_bytes / GiB:.2f} GiB\n"
        f"     {decode_note(result)}"
    )


def command(config_path: Path, extra: list[str]) -> list[str]:
    """The command the launcher execs."""
    return ["vllm", "serve", "--config", str(config_path), *extra]
