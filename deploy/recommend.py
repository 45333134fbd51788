"""``fit --recommend``: the cheapest set of concessions that makes Gemma 4 E2B start on a given GPU.

Every candidate configuration is planned with :func:`deploy.fit.plan`; among those that fit, the one whose
concessions cost least wins. Concessions are ranked (worst first) as: dropping image input, shortening the
context, offloading decoder weights to the CPU, disabling CUDA graphs, fewer concurrent sequences, a smaller
prefill chunk. Fixed choices, not concessions: the KV dtype is fp8 where the GPU supports it (compute
capability >= 8.9) and bf16 elsewhere, and the audio tower is off (the bundle serves text and images).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from deploy.fit import (
    PCIE_BYTES_PER_SECOND,
    FitError,
    GiB,
    Plan,
    ServeArgs,
    default_max_num_batched_tokens,
    default_max_num_seqs,
    fp8_kv_supported,
    plan,
    utilization_for,
)
from deploy.model import DECODER_LAYER_COMPONENTS, GemmaModel

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
# More offload than this costs over 60 ms per generated token on PCIe 4.0 x16: not a usable server any more.
MAX_CPU_OFFLOAD_GIB = 1.5
LLAMA_CPP_HINT = (
    "use the llama.cpp path with a GGUF quantization instead (for example ggml-org/gemma-4-E2B-it-GGUF, "
    "README 'Other engines'), or a GPU with more memory"
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


def _offload_steps(model: GemmaModel, weights: dict[str, int] | None) -> list[float]:
    w = weights if weights is not None else model.weight_bytes()
    decoder_gib = sum(w.get(c, 0) for c in DECODER_LAYER_COMPONENTS) / GiB
    top = min(MAX_CPU_OFFLOAD_GIB, decoder_gib)
    return [i * OFFLOAD_STEP_GIB for i in range(int(top / OFFLOAD_STEP_GIB) + 1)]


def recommend(
    model: GemmaModel,
    total_bytes: int,
    compute_capability: tuple[int, int],
    *,
    max_model_len: int = 32768,
    weights: dict[str, int] | None = None,
    gpu_name: str = "",
    min_sequences: int = MIN_FULL_SEQUENCES,
) -> Recommendation:
    """Search the arguments for the best configuration that fits; raise :class:`FitError` when none does."""
    kv_dtype = kv_dtype_for(compute_capability)
    util = utilization_for(total_bytes)
    if util <= 0:
        raise FitError(f"a {total_bytes / GiB:.2f} GiB GPU cannot even hold the CUDA context: {LLAMA_CPP_HINT}")
    top_seqs = default_max_num_seqs(total_bytes, gpu_name)
    top_mnbt = default_max_num_batched_tokens(total_bytes, gpu_name)
    seqs_ladder = [s for s in (top_seqs, *SEQ_LADDER) if s <= top_seqs]
    seqs_ladder = sorted(set(seqs_ladder), reverse=True)
    mnbt_ladder = sorted({top_mnbt, *(m for m in BATCHED_TOKENS_LADDER if m < top_mnbt)}, reverse=True)
    contexts = [max_model_len, *(c for c in CONTEXT_LADDER if c < max_model_len)]
    offloads = _offload_steps(model, weights)

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
            gpu_memory_utilization=util,
            limit_mm_per_prompt={"image": 0, "audio": 0} if text_only else {"audio": 0},
        )
        result = plan(model, args, total_bytes, weights, gpu_name)
        if result.fits and result.max_sequences_at_max_model_len >= min_sequences:
            best = (cost, result, args)
    if best is None:
        raise FitError(
            f"Gemma 4 E2B does not fit a {total_bytes / GiB:.2f} GiB GPU with vLLM even text-only, with "
            f"{offloads[-1]:g} GiB offloaded to the CPU and a {contexts[-1]}-token context: {LLAMA_CPP_HINT}"
        )
    _, result, args = best
    return Recommendation(result, args, tuple(concessions(args, max_model_len, top_seqs, top_mnbt, compute_capability)))


def concessions(
    args: ServeArgs, max_model_len: int, top_seqs: int, top_mnbt: int, compute_capability: tuple[int, int]
) -> list[str]:
    """What ``args`` gives up against vLLM's defaults and the card's promise, each with its cost."""
    out = []
    if args.kv_cache_dtype != "fp8":
        cc = ".".join(str(x) for x in compute_capability)
        out.append(
            f"kv-cache-dtype auto (bf16) instead of fp8: compute capability {cc} < 8.9 cannot run fp8 KV for this "
            "model (vLLM issue 26431); each sequence's KV takes twice the memory"
        )
    if not args.tower_enabled("audio"):
        out.append(
            "audio input off (limit-mm-per-prompt audio 0): the audio tower is not loaded; the bundle serves text+image"
        )
    if not args.tower_enabled("image"):
        out.append("image input off: text only; saves the vision tower and its encoder profile run")
    if args.max_model_len < max_model_len:
        out.append(f"max-model-len {args.max_model_len} instead of {max_model_len}: longer prompts are rejected")
    if args.cpu_offload_gb:
        ms = args.cpu_offload_gb * GiB / PCIE_BYTES_PER_SECOND * 1000
        out.append(
            f"cpu-offload-gb {args.cpu_offload_gb:g}: those decoder weights cross PCIe on every step, about "
            f"{ms:.0f} ms more per generated token (PCIe 4.0 x16 at 25 GB/s; modelled, not measured)"
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
