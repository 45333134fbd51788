"""``python -m deploy fit``: whether Gemma 4 E2B starts on a GPU with given arguments, and at what cost.

Exit 0 when it fits, 1 when it does not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from deploy.checkpoint.weights import CheckpointError, hub_tensors, snapshot_tensors, weights_by_component
from deploy.planner.args import from_mapping, parse_limit_mm, parse_tokens
from deploy.planner.budget import FitError, GiB, MiB, PCIeLink, Plan, ServeArgs, fp8_kv_supported, plan
from deploy.planner.gpu_classes import parse_compute_capability
from deploy.planner.model import GemmaModel
from deploy.planner.recommend import recommend
from deploy.profiles import ProfileError, apply_features, load_profile, parse_features, to_argv

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B?|B)?\s*$", re.I)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_size(text: str) -> int:
    """``8GiB``, ``7.5 GiB``, ``8192MiB``, ``8GB`` (decimal), or a plain byte count -> bytes."""
    m = _SIZE_RE.match(text)
    if not m:
        raise FitError(f"--gpu-memory {text!r}: write a size like 8GiB, 7.5GiB or 8192MiB")
    number, unit = float(m.group(1)), (m.group(2) or "").upper()
    if unit.endswith("IB") or (len(unit) == 2 and unit[1] == "I"):
        scale = 1024 ** ("KMGT".index(unit[0]) + 1)
    else:
        scale = _UNITS[unit.rstrip("B") if unit != "B" else "B"]
    return int(number * scale)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fit`` subcommand."""
    p = subparsers.add_parser("fit", help="vLLM 0.21.0's memory budget for Gemma 4 E2B on a GPU; --recommend")
    p.add_argument("--gpu-memory", required=True, help="the card's memory, e.g. 8GiB, 7.5GiB, 24564MiB")
    p.add_argument("--compute-capability", default="8.9", help="e.g. 8.6 (Ampere), 8.9 (Ada), 9.0 (Hopper)")
    p.add_argument("--gpu-name", default="", help="nvidia-smi name (A100s get vLLM's smaller defaults)")
    p.add_argument("--profile", help="start from this profile's arguments (deploy/profiles/NAME.yaml)")
    p.add_argument("--features", metavar="LIST", help="merge these opt-in features, e.g. tools,audio (GEMMA4_FEATURES)")
    p.add_argument("--max-model-len")
    p.add_argument("--kv-cache-dtype", choices=["auto", "fp8"])
    p.add_argument("--max-num-seqs", type=int)
    p.add_argument("--max-num-batched-tokens", type=int)
    p.add_argument("--cpu-offload-gb", type=float)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--enforce-eager", action="store_true", default=None)
    p.add_argument("--limit-mm-per-prompt", help='JSON, e.g. \'{"image": 2, "audio": 0, "video": 0}\'')
    p.add_argument("--language-model-only", action="store_true", default=None, help="text only: no tower is loaded")
    p.add_argument(
        "--pcie",
        default="4.0 x16",
        help='PCIe link that prices CPU offload, e.g. "4.0 x8" (nvidia-smi pcie.link.*.max)',
    )
    p.add_argument("--checkpoint", help="local snapshot directory or Hub id: read weight sizes from its headers")
    p.add_argument("--recommend", action="store_true", help="search for the best configuration that fits")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def _weights(checkpoint: str | None) -> dict[str, int] | None:
    if not checkpoint:
        return None
    try:
        if Path(checkpoint).is_dir():
            return weights_by_component(snapshot_tensors(Path(checkpoint)))
        return weights_by_component(hub_tensors(checkpoint))
    except CheckpointError as exc:
        raise FitError(f"--checkpoint {checkpoint}: {exc}") from exc
    except Exception as exc:  # huggingface_hub's network and not-found errors: report and stop
        raise FitError(
            f"--checkpoint {checkpoint}: cannot read its safetensors headers from the Hub ({type(exc).__name__}: "
            f"{exc}); give a local snapshot directory instead, or leave --checkpoint out to size from the config"
        ) from exc


def _serve_args(a: argparse.Namespace, cc: tuple[int, int]) -> ServeArgs:
    base: dict[str, Any] = {}
    try:
        if a.profile:
            base = load_profile(a.profile)
        base = apply_features(base, parse_features(a.features))
    except ProfileError as exc:
        raise FitError(str(exc)) from exc
    overrides: dict[str, Any] = {
        "max-model-len": parse_tokens(a.max_model_len) if a.max_model_len else None,
        "kv-cache-dtype": a.kv_cache_dtype,
        "max-num-seqs": a.max_num_seqs,
        "max-num-batched-tokens": a.max_num_batched_tokens,
        "cpu-offload-gb": a.cpu_offload_gb,
        "gpu-memory-utilization": a.gpu_memory_utilization,
        "enforce-eager": a.enforce_eager,
        "limit-mm-per-prompt": parse_limit_mm(a.limit_mm_per_prompt) if a.limit_mm_per_prompt else None,
        "language-model-only": a.language_model_only,
    }
    config = {**base, **{k: v for k, v in overrides.items() if v is not None}}
    config.setdefault("kv-cache-dtype", "fp8" if fp8_kv_supported(cc) else "auto")
    args = from_mapping(config)
    if args.kv_cache_dtype.startswith("fp8") and not fp8_kv_supported(cc):
        raise FitError(
            f"kv-cache-dtype fp8 on compute capability {cc[0]}.{cc[1]}: vLLM cannot run an fp8 KV cache for Gemma 4 "
            "below 8.9 (vLLM issue 26431); use --kv-cache-dtype auto"
        )
    return args


def parse_pcie(text: str) -> PCIeLink:
    """``4.0 x8`` or ``4 x16`` -> a PCIe link."""
    m = re.match(r"^\s*(\d)(?:\.0)?\s*x(\d+)\s*$", text or "")
    if not m:
        raise FitError(f'--pcie {text!r}: write the link like "4.0 x16" or "4.0 x8" (generation and lanes)')
    return PCIeLink(int(m.group(1)), int(m.group(2)))


def _print_plan(p: Plan) -> None:
    print(f"GPU: {p.total_bytes / GiB:.2f} GiB; budget (utilization x total): {p.requested_bytes / GiB:.2f} GiB")
    print("weights on the GPU:")
    for name, size in p.weights_by_component.items():
        print(f"  {name:<22} {size / GiB:>8.3f} GiB")
    print(f"  {'total':<22} {p.weights_bytes / GiB:>8.3f} GiB")
    print("overheads inside the budget (modelled):")
    for name, o in p.overheads.items():
        if name != "cuda_context":
            print(f"  {name:<22} {o.bytes / GiB:>8.3f} GiB  {o.assumption}")
    print("outside the budget (modelled):")
    for name, o in {"cuda_context": p.overheads["cuda_context"], **p.outside_budget}.items():
        print(f"  {name:<22} {o.bytes / GiB:>8.3f} GiB  {o.assumption}")
    print(
        f"KV cache budget: {p.kv_cache_budget_bytes / GiB:.3f} GiB (vLLM should log about {p.kv_cache_tokens:,} "
        f"tokens, {p.expected_max_concurrency:.2f}x concurrency)"
    )
    print(
        f"safety margin: {p.safety_margin_bytes / MiB:.0f} MiB of that budget kept unused against modelling error; "
        f"per {p.args['max-model-len']}-token sequence {p.kv_cache_bytes_per_sequence / MiB:.1f} MiB -> "
        f"{p.max_sequences_at_max_model_len} full-length sequences after the margin"
    )
    offloaded = -p.weights_by_component.get("cpu_offload", 0)
    if offloaded:
        print(
            f"CPU offload: {offloaded / GiB:.2f} GiB over {p.pcie} -> {p.offload_seconds_per_step * 1000:.0f} ms per "
            f"decode step, at most {p.decode_ceiling_tokens_per_second:.0f} tokens/s per stream (modelled)"
        )
    else:
        print("CPU offload: none")
    print(
        f"free memory needed at start: {p.required_free_bytes / GiB:.2f} GiB; peak once serving about "
        f"{p.peak_bytes / GiB:.2f} GiB"
    )
    print(("FITS: " if p.fits else "DOES NOT FIT: ") + p.reason)


def run(a: argparse.Namespace) -> int:
    """Plan or recommend; exit 0 fits, 1 does not fit, 2 bad input."""
    model = GemmaModel.load()
    try:
        total = parse_size(a.gpu_memory)
        cc = parse_compute_capability(a.compute_capability)
        weights = _weights(a.checkpoint)
        pcie = parse_pcie(a.pcie)
        if a.recommend:
            max_len = parse_tokens(a.max_model_len) if a.max_model_len else 32768
            try:
                rec = recommend(
                    model, total, cc, max_model_len=max_len, weights=weights, gpu_name=a.gpu_name, pcie=pcie
                )
            except FitError as exc:
                if a.json:
                    print(json.dumps({"fits": False, "error": str(exc)}))
                else:
                    print(f"DOES NOT FIT: {exc}")
                return 1
            if a.json:
                print(json.dumps({**rec.plan.to_json(), "concessions": list(rec.concessions)}, indent=2))
            else:
                _print_plan(rec.plan)
                print("recommended: vllm serve " + shlex.join(to_argv(rec.plan.args)))
                for c in rec.concessions:
                    print(f"  concession: {c}")
            return 0
        result = plan(model, _serve_args(a, cc), total, weights, a.gpu_name, pcie)
    except (FitError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_plan(result)
    return 0 if result.fits else 1
