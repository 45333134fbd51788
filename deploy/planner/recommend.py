"""``fit --recommend``: the cheapest set of concessions that makes Gemma 4 E2B start on a given GPU.

Every candidate configuration is planned with :func:`deploy.planner.budget.plan`; among those that fit, the one whose
concessions cost least wins. Concessions are ranked (worst first) as: dropping image input
(``--language-model-only``), shortening the context, offloading decoder weights to the CPU, disabling CUDA graphs,
fewer concurrent sequences, a smaller prefill chunk. Fixed choices, not concessions: the KV dtype is fp8 where the
GPU supports it (compute capability >= 8.9) and bf16 elsewhere, and audio and video are off (the bundle serves
text and images; vLLM would otherwise accept 999 videos per prompt and profile a 32-frame video).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from deploy.planner.budget import (
    DEFAULT_PCIE,
    FitError,
    GiB,
    PCIeLink,
    Plan,
    ServeArgs,
    default_max_num_batched_tokens,
    default_max_num_seqs,
    fp8_kv_supported,
    offload_seconds_per_step,
    outside_budget,
    plan,
    utilization_for,
    with_args,
)
from deploy.planner.model import DECODER_LAYER_COMPONENTS, GemmaModel

# At least this many concurrent sequences, and this many full-length ones in the KV cache. One is vLLM's own
# start-up condition, but a server that holds a single long conversation serves nobody else: below this the
# planner refuses and points to llama.cpp.
MIN_FULL_SEQUENCES = 4
SEQ_LADDER: tuple[int, ...] = (256, 128, 64, 32, 16, 8, 4)
# Shortest context the planner offers: below 8k tokens an image (up to 1120 soft tokens) and a chat history
# no longer fit together.
CONTEXT_LADDER: tuple[int, ...] = (32768, 16384, 8192)
BATCHED_TOKENS_LADDER: tuple[int, ...] = (2048, 1024, 512)
OFFLOAD_STEP_GIB = 0.25
# The most time a decode step may spend reading offloaded weights over PCIe: 65 ms caps one stream at about
# 15 tokens/s, the slowest the planner calls a usable server. On PCIe 4.0 x16 that is 1.5 GiB, on 4.0 x8
# (RTX 4060, 4060 Ti) or 3.0 x16 0.75 GiB.
MAX_OFFLOAD_SECONDS_PER_STEP = 0.065
MAX_CPU_OFFLOAD_GIB = 1.5  # on the default link, PCIe 4.0 x16; see offload_cap_gib for others
# What the bundle serves: text and images. Audio and video towers stay off in every plan.
IMAGE_LIMITS = {"audio": 0, "video": 0}
LLAMA_CPP_HINT = (
    "use the llama.cpp path with a GGUF quantization instead (for example ggml-org/gemma-4-E2B-it-GGUF, "
    "docs/engines.md), or a GPU with more memory"
)


@dataclass(frozen=True)
class Recommendation:
    """The chosen plan and what it gave up, each concession with its cost in words."""

    plan: Plan
    args: ServeArgs
    concessions: tuple[str, ...]


def kv_dtype_for(compute_capability: tuple[int, int]) -> str:
    """fp8 on Ada/Hopper and newer, vLLM's ``auto`` (bf16 for this model) on Ampere."""
    return "fp8" if fp8_kv_supported(compute_capability) else "auto"


def offload_cap_gib(pcie: PCIeLink = DEFAULT_PCIE) -> float:
    """The most CPU offload the planner accepts on ``pcie``, in OFFLOAD_STEP_GIB steps."""
    steps = int(MAX_OFFLOAD_SECONDS_PER_STEP * pcie.bytes_per_second / GiB / OFFLOAD_STEP_GIB + 1e-9)
    return steps * OFFLOAD_STEP_GIB


def _offload_steps(
    model: GemmaModel, weights: dict[str, int] | None, pcie: PCIeLink, allow_offload: bool
) -> list[float]:
    if not allow_offload:
        return [0.0]
    w = weights if weights is not None else model.weight_bytes()
    decoder_gib = sum(w.get(c, 0) for c in DECODER_LAYER_COMPONENTS) / GiB
    top = min(offload_cap_gib(pcie), decoder_gib)
    return [i * OFFLOAD_STEP_GIB for i in range(int(top / OFFLOAD_STEP_GIB + 1e-9) + 1)]


def recommend(
    model: GemmaModel,
    total_bytes: int,
    compute_capability: tuple[int, int],
    *,
    max_model_len: int = 32768,
    weights: dict[str, int] | None = None,
    gpu_name: str = "",
    min_sequences: int = MIN_FULL_SEQUENCES,
    pcie: PCIeLink = DEFAULT_PCIE,
    allow_offload: bool = True,
) -> Recommendation:
    """Search the arguments for the best configuration that fits; raise :class:`FitError` when none does.

    ``pcie`` prices CPU offload (and caps it at MAX_OFFLOAD_SECONDS_PER_STEP); ``allow_offload=False`` plans
    without it (WSL2, where vLLM cannot pin host memory and so has no UVA offload).
    """
    kv_dtype = kv_dtype_for(compute_capability)
    if utilization_for(total_bytes) <= 0:
        raise FitError(f"a {total_bytes / GiB:.2f} GiB GPU cannot even hold the CUDA context: {LLAMA_CPP_HINT}")
    top_seqs = default_max_num_seqs(total_bytes, gpu_name)
    top_mnbt = default_max_num_batched_tokens(total_bytes, gpu_name)
    seqs_ladder = [s for s in (top_seqs, *SEQ_LADDER) if s <= top_seqs]
    seqs_ladder = sorted(set(seqs_ladder), reverse=True)
    mnbt_ladder = sorted({top_mnbt, *(m for m in BATCHED_TOKENS_LADDER if m < top_mnbt)}, reverse=True)
    contexts = [max_model_len, *(c for c in CONTEXT_LADDER if c < max_model_len)]
    offloads = _offload_steps(model, weights, pcie, allow_offload)

    best: tuple[tuple, Plan, ServeArgs] | None = None
    for text_only, (ctx_i, ctx), (off_i, off), eager, (seq_i, seqs), (mnbt_i, mnbt) in itertools.product(
        (False, True),
        enumerate(contexts),
        enumerate(offloads),
        (False, True),
        enumerate(seqs_ladder),
        enumerate(mnbt_ladder),
    ):
        if mnbt < seqs or seqs < min_sequences:
            continue
        cost = (text_only, ctx_i, off_i, eager, seq_i, mnbt_i)
        if best is not None and cost >= best[0]:
            continue
        args = ServeArgs(
            max_model_len=ctx,
            kv_cache_dtype=kv_dtype,
            max_num_seqs=seqs,
            max_num_batched_tokens=mnbt,
            cpu_offload_gb=off,
            enforce_eager=eager,
            limit_mm_per_prompt={} if text_only else dict(IMAGE_LIMITS),
            language_model_only=text_only,
        )
        after = sum(o.bytes for o in outside_budget(model, args, mnbt, seqs).values())
        args = with_args(args, gpu_memory_utilization=utilization_for(total_bytes, after))
        if args.gpu_memory_utilization <= 0:
            continue
        result = plan(model, args, total_bytes, weights, gpu_name, pcie)
        if result.fits and result.max_sequences_at_max_model_len >= min_sequences:
            best = (cost, result, args)
    if best is None:
        offload = (
            f"{offloads[-1]:g} GiB offloaded to the CPU (the most {pcie} moves in "
            f"{MAX_OFFLOAD_SECONDS_PER_STEP * 1000:.0f} ms a step)"
            if allow_offload
            else "no CPU offload (WSL2: vLLM cannot pin host memory there)"
        )
        raise FitError(
            f"Gemma 4 E2B does not fit a GPU of {total_bytes / GiB:.2f} GiB with vLLM even text-only, with "
            f"{offload} and a {contexts[-1]}-token context: {LLAMA_CPP_HINT}"
        )
    _, result, args = best
    return Recommendation(
        result, args, tuple(concessions(args, max_model_len, top_seqs, top_mnbt, compute_capability, pcie))
    )


def concessions(
    args: ServeArgs,
    max_model_len: int,
    top_seqs: int,
    top_mnbt: int,
    compute_capability: tuple[int, int],
    pcie: PCIeLink = DEFAULT_PCIE,
) -> list[str]:
    """What ``args`` gives up against vLLM's defaults and the card's promise, each with its cost."""
    out = []
    if args.kv_cache_dtype != "fp8":
        cc = ".".join(str(x) for x in compute_capability)
        out.append(
            f"kv-cache-dtype auto (bf16) instead of fp8: compute capability {cc} < 8.9 cannot run fp8 KV for this "
            "model (vLLM issue 26431); each sequence's KV takes twice the memory"
        )
    if args.language_model_only:
        out.append("image input off (language-model-only): text only; neither the vision nor the audio tower is loaded")
    else:
        out.append(
            "audio and video input off (limit-mm-per-prompt audio 0, video 0): the audio tower is not loaded and "
            "vLLM profiles images, not a 32-frame video; the bundle serves text+image"
        )
    if args.max_model_len < max_model_len:
        out.append(f"max-model-len {args.max_model_len} instead of {max_model_len}: longer prompts are rejected")
    if args.cpu_offload_gb:
        seconds = offload_seconds_per_step(int(args.cpu_offload_gb * GiB), pcie)
        out.append(
            f"cpu-offload-gb {args.cpu_offload_gb:g}: those decoder weights cross PCIe on every decode step, about "
            f"{seconds * 1000:.0f} ms more per step, so at most {1 / seconds:.0f} tokens/s per stream ({pcie} at "
            f"{pcie.bytes_per_second / 1e9:.1f} GB/s; modelled, not measured)"
        )
    if args.enforce_eager:
        out.append("enforce-eager: no CUDA graphs; decode is slower at small batch sizes (modelled, not measured)")
    if args.max_num_seqs is not None and args.max_num_seqs < top_seqs:
        out.append(f"max-num-seqs {args.max_num_seqs} instead of {top_seqs}: more requests than that wait in the queue")
    if args.max_num_batched_tokens is not None and args.max_num_batched_tokens < top_mnbt:
        out.append(
            f"max-num-batched-tokens {args.max_num_batched_tokens} instead of {top_mnbt}: long prompts are prefilled "
            "in smaller chunks (slower time to first token)"
        )
    return out
