"""vLLM 0.21.0's GPU memory budget for Gemma 4 E2B: weights, KV cache, overheads -> a verdict.

How vLLM 0.21.0 spends a GPU (``v1/worker/gpu_worker.py``, ``v1/worker/utils.py``, ``v1/core/kv_cache_utils.py``):

1. ``requested = ceil(total x gpu_memory_utilization)``; start-up fails unless the memory free at that moment
   (after the process's own CUDA context exists) covers it.
2. A profile run measures the torch peak (weights + activations of one ``max_num_batched_tokens`` forward pass,
   the multimodal encoder's dummy batch, the sampler over ``max_num_seqs`` rows), the non-torch growth, and the
   CUDA graph pool (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` is on by default).
3. ``KV budget = requested - weights - activation peak - non-torch growth - CUDA graphs``; start-up fails unless it
   holds one request of ``max_model_len`` tokens.

The weights and the KV formula are exact (the KV formula is checked against vLLM's own ``kv_cache_utils`` in the
tests). The overheads are MODELLED, not measured: nothing here has run on a GPU. Each constant below states its
assumption; docs/fit.md lists them with what would change them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from deploy.model import DECODER_LAYER_COMPONENTS, TOWERS, GemmaModel

MiB = 1024**2
GiB = 1024**3

# ---- vLLM 0.21.0 behaviour (read from its source) ------------------------------------------------------------
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
# engine/arg_utils.py: OpenAI server defaults, by device memory (A100s keep the small ones).
LARGE_GPU_BYTES = 70 * GiB
KV_BLOCK_SIZE = 16  # default block size; the hybrid manager doubles the sliding layers' to unify page sizes
KV_DTYPE_BYTES = {"fp8": 1, "fp8_e4m3": 1, "auto": 2, "bfloat16": 2}
# fp8 KV on the TRITON_ATTN backend Gemma 4 is forced onto needs e4m3 Triton kernels: compute capability 8.9+.
FP8_KV_MIN_COMPUTE_CAPABILITY = (8, 9)
IMAGE_SOFT_TOKENS_DEFAULT = 280  # Gemma 4 processor's default max_soft_tokens

# ---- Modelled overheads: each is an ASSUMPTION (docs/fit.md) -------------------------------------------------
# Memory the CUDA context and the torch/cuBLAS runtime take before vLLM's first memory snapshot. It is outside
# `requested`, so it must fit in the (1 - utilization) share of the card. Typical for recent drivers: 300-500 MiB.
CUDA_CONTEXT_BYTES = 512 * MiB
# Kept free beyond the context when choosing gpu-memory-utilization: what an idle GPU already shows as used
# (driver, persistence daemon, a small display) plus growth during start-up.
HEADROOM_BYTES = 512 * MiB
# Non-torch memory that grows during vLLM's profile run (cuBLAS/cuBLASLt workspaces, Triton kernels, NCCL-free
# single-GPU runtime). vLLM measures it; 256 MiB is the assumption.
NON_TORCH_BYTES = 256 * MiB
# The sampler's dummy run holds logits for max_num_seqs rows over the full vocabulary in fp32, and about two
# more copies of that size (soft-capped logits, probabilities) at its peak.
SAMPLER_FP32_COPIES = 3
# One text forward pass keeps, per token and in bf16: the widest MLP's gate, up and product, six hidden-size
# tensors (residual, norms, attention output), the q/k/v projections, and the per-layer input embeddings of all
# layers (looked up once per step, 35 x 256 values). The attention kernel itself (Triton) needs no L x L matrix.
HIDDEN_COPIES = 6
# Vision encoder, per patch, in bf16: q/k/v/o and residual copies (6 x hidden) and the MLP's gate/up (2 x width),
# with memory-efficient attention (no patches x patches matrix). Each soft token pools pooling_kernel_size^2 patches.
VISION_HIDDEN_COPIES = 6
# Audio encoder: its longest clip in soft tokens (30 s of audio) and activations per token, analogous to vision.
AUDIO_TOKENS_PER_ITEM = 750
# CUDA graphs: each captured batch size costs a fixed amount (graph objects, per-size static buffers) and the
# pool holds the activations of the largest captured batch.
CUDA_GRAPH_BYTES_PER_SIZE = 2 * MiB
# CPU offload: decode reads every offloaded byte over PCIe once per step. 4.0 x16 sustains about 25 GB/s.
PCIE_BYTES_PER_SECOND = 25e9


class FitError(ValueError):
    """Bad planner input; the message names the value and the fix."""


@dataclass(frozen=True)
class ServeArgs:
    """The vLLM arguments that move memory. ``None`` means vLLM's own default for the card."""

    max_model_len: int = 32768
    kv_cache_dtype: str = "auto"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    cpu_offload_gb: float = 0.0
    enforce_eager: bool = False
    gpu_memory_utilization: float = VLLM_DEFAULT_GPU_MEMORY_UTILIZATION
    limit_mm_per_prompt: dict[str, int] = field(default_factory=dict)
    image_soft_tokens: int = IMAGE_SOFT_TOKENS_DEFAULT

    def validate(self) -> None:
        """Raise :class:`FitError` on a value vLLM would reject or the planner cannot model."""
        if self.max_model_len < 1:
            raise FitError(f"--max-model-len must be a positive number of tokens, not {self.max_model_len}")
        if self.kv_cache_dtype not in KV_DTYPE_BYTES:
            raise FitError(f"--kv-cache-dtype {self.kv_cache_dtype!r}: choose auto or fp8")
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FitError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        if self.cpu_offload_gb < 0:
            raise FitError(f"--cpu-offload-gb must be 0 or more, not {self.cpu_offload_gb}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise FitError(f"--gpu-memory-utilization must be in (0, 1], not {self.gpu_memory_utilization}")
        bad = {k: v for k, v in self.limit_mm_per_prompt.items() if k not in (*TOWERS, "video") or v < 0}
        if bad:
            raise FitError(f"--limit-mm-per-prompt {bad}: modalities are image, audio, video with counts >= 0")

    def tower_enabled(self, modality: str) -> bool:
        """Whether the tower for ``modality`` is loaded (vLLM skips one limited to 0 items)."""
        return self.limit_mm_per_prompt.get(modality, 1) > 0


def default_max_num_seqs(total_bytes: int, gpu_name: str = "") -> int:
    """The OpenAI server's default ``--max-num-seqs`` in vLLM 0.21.0 for this card."""
    return 1024 if total_bytes >= LARGE_GPU_BYTES and "a100" not in gpu_name.lower() else 256


def default_max_num_batched_tokens(total_bytes: int, gpu_name: str = "") -> int:
    """The OpenAI server's default ``--max-num-batched-tokens`` in vLLM 0.21.0 for this card."""
    return 8192 if total_bytes >= LARGE_GPU_BYTES and "a100" not in gpu_name.lower() else 2048


def fp8_kv_supported(compute_capability: tuple[int, int]) -> bool:
    """fp8 KV cache works for this model only from compute capability 8.9 (Ada, Hopper) on."""
    return tuple(compute_capability) >= FP8_KV_MIN_COMPUTE_CAPABILITY


def utilization_for(total_bytes: int) -> float:
    """The gpu-memory-utilization rule for a card of ``total_bytes``.

    Leave the CUDA context and a margin outside the budget, round down to a hundredth, never above vLLM's default.
    """
    share = (total_bytes - CUDA_CONTEXT_BYTES - HEADROOM_BYTES) / total_bytes
    return max(0.0, min(VLLM_DEFAULT_GPU_MEMORY_UTILIZATION, math.floor(share * 100) / 100))


# ---- KV cache ------------------------------------------------------------------------------------------------


def kv_page_bytes(model: GemmaModel, kv_dtype: str) -> tuple[int, int, int]:
    """(page bytes, full-attention block size, sliding block size) after vLLM unifies page sizes.

    Every layer starts with block size 16; the layer kinds whose page is smaller get their block size scaled up
    until all pages are equal (``unify_kv_cache_spec_page_size``).
    """
    b = KV_DTYPE_BYTES[kv_dtype]
    pages = {layer.sliding: KV_BLOCK_SIZE * layer.num_kv_heads * layer.head_dim * 2 * b for layer in model.kv_layers}
    page = max(pages.values())
    full_block = KV_BLOCK_SIZE * page // pages.get(False, page)
    sliding_block = KV_BLOCK_SIZE * page // pages.get(True, page)
    return page, full_block, sliding_block


def kv_bytes_per_sequence(model: GemmaModel, kv_dtype: str, max_model_len: int, max_num_batched_tokens: int) -> int:
    """KV bytes vLLM's hybrid manager reserves for one request of ``max_model_len`` tokens.

    Layers are grouped by kind into groups of equal size (the gcd of the kind counts: 3 full, 12 sliding -> 5
    groups of 3); a block costs group_size pages. Full layers hold ceil(L / block) blocks; sliding layers hold
    the window plus one chunk of prefill, ceil(min(window - 1 + MNBT, L) / block) + 1.
    """
    page, full_block, sliding_block = kv_page_bytes(model, kv_dtype)
    full = sum(1 for layer in model.kv_layers if not layer.sliding)
    sliding = len(model.kv_layers) - full
    group_size = math.gcd(full, sliding) if full and sliding else max(full, sliding)
    blocks = 0
    if full:
        blocks += (full // group_size) * math.ceil(max_model_len / full_block)
    if sliding:
        window_tokens = min(model.sliding_window - 1 + max_num_batched_tokens, max_model_len)
        blocks += (sliding // group_size) * (math.ceil(window_tokens / sliding_block) + 1)
    return group_size * page * blocks


# ---- overheads -----------------------------------------------------------------------------------------------


def forward_bytes_per_token(model: GemmaModel) -> int:
    """Activation bytes one token holds at the peak of a text forward pass (see HIDDEN_COPIES)."""
    t = model.text
    qkv = int(t["num_attention_heads"]) * model.head_dim(model.num_layers - 1) + 2 * int(
        t["num_key_value_heads"]
    ) * max(model.head_dim(i) for i in range(model.num_layers))
    values = 3 * model.max_mlp_width + HIDDEN_COPIES * model.hidden + qkv + model.num_layers * model.per_layer_dim
    return 2 * values


def cuda_graph_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> list[int]:
    """The batch sizes vLLM 0.21.0 captures by default (``VllmConfig._set_cudagraph_sizes``)."""
    largest = min(min(max_num_seqs * 2, 512), max_num_batched_tokens)
    sizes = [i for i in (1, 2, 4) if i <= largest]
    if largest >= 8:
        sizes += list(range(8, min(largest + 1, 256), 8))
    if largest >= 256:
        sizes += list(range(256, largest + 1, 16))
    if max_num_batched_tokens <= largest and max_num_batched_tokens not in sizes:
        sizes.append(max_num_batched_tokens)
    return sizes


def encoder_profile_bytes(model: GemmaModel, args: ServeArgs, mnbt: int, max_num_seqs: int) -> tuple[int, str]:
    """Peak of vLLM's multimodal encoder dummy run.

    The modality with the most tokens per item, as many items as the encoder budget allows
    (``multimodal/encoder_budget.py``).
    """
    candidates = {}
    v = model.config.get("vision_config")
    if v and args.tower_enabled("image"):
        patches = int(v["pooling_kernel_size"]) ** 2
        per_patch = 2 * (VISION_HIDDEN_COPIES * int(v["hidden_size"]) + 2 * int(v["intermediate_size"]))
        candidates["image"] = (args.image_soft_tokens, patches * per_patch + 2 * model.hidden)
    a = model.config.get("audio_config")
    if a and args.tower_enabled("audio"):
        h = int(a["hidden_size"])
        candidates["audio"] = (AUDIO_TOKENS_PER_ITEM, 2 * (VISION_HIDDEN_COPIES * h + 2 * 4 * h) + 2 * model.hidden)
    if not candidates:
        return 0, "no tower loaded"
    modality, (tokens, per_token) = max(candidates.items(), key=lambda kv: (kv[1][0], kv[0]))
    budget = max(mnbt, tokens)
    per_prompt = max(1, min(args.limit_mm_per_prompt.get(modality, 10**9), args.max_model_len // tokens))
    items = max(1, min(budget // tokens, max_num_seqs * per_prompt))
    return items * tokens * per_token, f"{items} {modality} item(s) x {tokens} soft tokens"


@dataclass(frozen=True)
class Overhead:
    """One non-KV reservation and the assumption behind its size."""

    bytes: int
    assumption: str


@dataclass(frozen=True)
class Plan:
    """The planner's verdict for one GPU and one set of arguments."""

    fits: bool
    reason: str
    total_bytes: int
    requested_bytes: int
    required_free_bytes: int
    weights_bytes: int
    weights_by_component: dict[str, int]
    kv_cache_bytes_per_sequence: int
    kv_cache_budget_bytes: int
    max_sequences_at_max_model_len: int
    overheads: dict[str, Overhead]
    args: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (schema in docs/fit.md)."""
        return {
            "fits": self.fits,
            "weights_bytes": self.weights_bytes,
            "weights_by_component": dict(self.weights_by_component),
            "kv_cache_bytes_per_sequence": self.kv_cache_bytes_per_sequence,
            "kv_cache_budget_bytes": self.kv_cache_budget_bytes,
            "max_sequences_at_max_model_len": self.max_sequences_at_max_model_len,
            "overheads": {k: asdict(v) for k, v in self.overheads.items()},
            "args": dict(self.args),
        }


def vllm_args(args: ServeArgs, mnbt: int, max_num_seqs: int) -> dict[str, Any]:
    """The plan as vLLM flag names (profile keys), defaults included so the plan does not depend on them."""
    out: dict[str, Any] = {
        "kv-cache-dtype": args.kv_cache_dtype,
        "max-model-len": args.max_model_len,
        "gpu-memory-utilization": args.gpu_memory_utilization,
        "max-num-seqs": max_num_seqs,
        "max-num-batched-tokens": mnbt,
    }
    if args.limit_mm_per_prompt:
        out["limit-mm-per-prompt"] = dict(args.limit_mm_per_prompt)
    if args.cpu_offload_gb:
        out["cpu-offload-gb"] = args.cpu_offload_gb
    if args.enforce_eager:
        out["enforce-eager"] = True
    return out


def plan(
    model: GemmaModel,
    args: ServeArgs,
    total_bytes: int,
    weights_by_component: dict[str, int] | None = None,
    gpu_name: str = "",
) -> Plan:
    """Compute vLLM 0.21.0's budget for ``args`` on a card of ``total_bytes``; the verdict says if it starts."""
    args.validate()
    if total_bytes <= 0:
        raise FitError(f"GPU memory must be positive, not {total_bytes} bytes")
    mnbt = args.max_num_batched_tokens or default_max_num_batched_tokens(total_bytes, gpu_name)
    seqs = args.max_num_seqs or default_max_num_seqs(total_bytes, gpu_name)
    if mnbt < seqs:
        raise FitError(f"--max-num-batched-tokens ({mnbt}) must be at least --max-num-seqs ({seqs})")

    weights = dict(weights_by_component if weights_by_component is not None else model.weight_bytes())
    for modality, component in TOWERS.items():
        if not args.tower_enabled(modality):
            weights.pop(component, None)
    decoder = sum(weights.get(c, 0) for c in DECODER_LAYER_COMPONENTS)
    offloaded = min(int(args.cpu_offload_gb * GiB), decoder)
    weights_on_gpu = sum(weights.values()) - offloaded

    forward = mnbt * forward_bytes_per_token(model)
    sampler = seqs * model.vocab_size * 4 * SAMPLER_FP32_COPIES
    encoder, encoder_what = encoder_profile_bytes(model, args, mnbt, seqs)
    graphs = cuda_graph_sizes(seqs, mnbt) if not args.enforce_eager else []
    graph_bytes = len(graphs) * CUDA_GRAPH_BYTES_PER_SIZE + (max(graphs) if graphs else 0) * forward_bytes_per_token(
        model
    )
    peak = max(forward, sampler, encoder)
    overheads = {
        "activation_peak": Overhead(
            peak,
            f"max of the profile run's phases, each freed before the next: text forward of {mnbt} tokens "
            f"({forward} B), sampler over {seqs} rows x {model.vocab_size} fp32 logits x {SAMPLER_FP32_COPIES} "
            f"({sampler} B), encoder dummy batch of {encoder_what} ({encoder} B)",
        ),
        "non_torch": Overhead(NON_TORCH_BYTES, "cuBLAS/Triton workspaces that grow during the profile run"),
        "cuda_graphs": Overhead(
            graph_bytes,
            "enforce-eager: none"
            if not graphs
            else f"{len(graphs)} captured sizes x {CUDA_GRAPH_BYTES_PER_SIZE // MiB} MiB + activations of the "
            f"largest ({max(graphs)} tokens)",
        ),
        "cuda_context": Overhead(
            CUDA_CONTEXT_BYTES, "outside gpu-memory-utilization: must be free on top of the budget at start"
        ),
    }
    requested = math.ceil(total_bytes * args.gpu_memory_utilization)
    budget = requested - weights_on_gpu - peak - NON_TORCH_BYTES - graph_bytes
    per_seq = kv_bytes_per_sequence(model, args.kv_cache_dtype, args.max_model_len, mnbt)
    sequences = max(0, budget // per_seq)
    required_free = requested + CUDA_CONTEXT_BYTES
    if requested + CUDA_CONTEXT_BYTES > total_bytes:
        fits, reason = (
            False,
            (
                f"gpu-memory-utilization {args.gpu_memory_utilization} asks for {requested / GiB:.2f} GiB, but "
                f"with the CUDA context ({CUDA_CONTEXT_BYTES / GiB:.2f} GiB) that is more than the card's "
                f"{total_bytes / GiB:.2f} GiB"
            ),
        )
    elif budget <= 0:
        fits, reason = False, f"no memory left for the KV cache ({budget / GiB:.2f} GiB after weights and overheads)"
    elif sequences < 1:
        fits, reason = (
            False,
            (
                f"the KV budget ({budget / GiB:.2f} GiB) holds less than one {args.max_model_len}-token sequence "
                f"({per_seq / GiB:.3f} GiB)"
            ),
        )
    else:
        fits, reason = True, f"{sequences} sequence(s) of {args.max_model_len} tokens fit in the KV cache"
    if offloaded:
        weights["cpu_offload"] = -offloaded
    return Plan(
        fits=fits,
        reason=reason,
        total_bytes=total_bytes,
        requested_bytes=requested,
        required_free_bytes=required_free,
        weights_bytes=weights_on_gpu,
        weights_by_component=weights,
        kv_cache_bytes_per_sequence=per_seq,
        kv_cache_budget_bytes=budget,
        max_sequences_at_max_model_len=int(sequences),
        overheads=overheads,
        args=vllm_args(args, mnbt, seqs),
    )


def with_args(args: ServeArgs, **changes: Any) -> ServeArgs:
    """A copy of ``args`` with some fields changed."""
    return replace(args, **changes)
