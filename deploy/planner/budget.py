"""vLLM 0.21.0's GPU memory budget for Gemma 4 E2B: weights, KV cache, overheads -> a verdict.

How vLLM 0.21.0 spends a GPU (docs/fit.md cites the source file:line for each step and term):

1. ``requested = ceil(total x gpu_memory_utilization)``; start-up fails unless the memory free at that moment
   (after the process's own CUDA context exists) covers it.
2. Model loading: the weights plus Gemma 4's per-layer-embedding staging buffer (MNBT x 35 x 256, bf16).
3. A profile run measures the torch peak of, in turn, the multimodal encoder's dummy batch (the modality with
   the most tokens per item: a 32-frame video unless video is limited to 0), one ``max_num_batched_tokens``
   forward pass and the sampler over ``min(max_num_seqs, MNBT)`` rows, plus the non-torch growth; then it
   estimates CUDA graph memory for both graph sets (piecewise and full decode).
4. ``KV budget = requested - model loading - torch peak - non-torch growth - CUDA graphs``; start-up fails unless
   it holds one request of ``max_model_len`` tokens. The planner asks for its sequences with a safety margin
   left over.
5. After the profile, outside ``requested``: Triton attention's decode buffers, and logprobs at run time.

The weights, the KV formula, the KV tokens vLLM logs and what vLLM builds and profiles for each profile are
checked against vLLM's own code in the tests. The overheads are MODELLED, not measured: nothing here has run on a
GPU (``make gpu-check`` measures them). Each constant below states its assumption.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from deploy.errors import UsageError
from deploy.planner.model import DECODER_LAYER_COMPONENTS, GemmaModel

MiB = 1024**2
GiB = 1024**3

# ---- vLLM 0.21.0 behaviour (read from its source; docs/fit.md cites file:line for each) -----------------------
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
# engine/arg_utils.py: OpenAI server defaults, by device memory (A100s keep the small ones).
LARGE_GPU_BYTES = 70 * GiB
KV_BLOCK_SIZE = 16  # default block size; the hybrid manager doubles the sliding layers' to unify page sizes
KV_DTYPE_BYTES = {"fp8": 1, "fp8_e4m3": 1, "auto": 2, "bfloat16": 2}
# fp8 KV on the TRITON_ATTN backend Gemma 4 is forced onto needs e4m3 Triton kernels: compute capability 8.9+.
FP8_KV_MIN_COMPUTE_CAPABILITY = (8, 9)
IMAGE_SOFT_TOKENS_DEFAULT = 280  # Gemma 4 processor's default max_soft_tokens (vision default_output_length)
# config/multimodal.py: a modality --limit-mm-per-prompt does not name accepts 999 items per prompt.
MM_DEFAULT_LIMIT = 999
MODALITIES = ("image", "video", "audio")
# Which tower serves which modalities: a tower is built unless every one of its modalities is limited to 0.
TOWER_MODALITIES: dict[str, tuple[str, ...]] = {"vision_tower": ("image", "video"), "audio_tower": ("audio",)}
# gemma4_mm.py: a video is up to 32 frames of 70 soft tokens, each framed by begin/end and ~6 timestamp tokens.
VIDEO_FRAMES = 32
VIDEO_FRAME_SOFT_TOKENS = 70
VIDEO_TOKENS_PER_ITEM = VIDEO_FRAMES * (VIDEO_FRAME_SOFT_TOKENS + 2 + 6)
# Sampler: the Triton top-k/top-p kernel (4+ rows) keeps one vocab-wide fp32 row per program, at most one
# program per SM. 132 is the H100/H200 SM count: an upper bound for every card the profiles serve.
SAMPLER_TRITON_MIN_ROWS = 8
SAMPLER_MAX_SMS = 132
# Triton attention's decode buffers (v1/attention/backends/triton_attn.py): 16 softmax segments, a launch grid
# of at least 128 programs.
TRITON_SOFTMAX_SEGMENTS = 16
TRITON_MIN_LAUNCH_GRID = 128
# CUDA graphs (v1/worker/gpu_model_runner.py profile_cudagraph_memory): at least 1 MiB per graph after the first.
CUDA_GRAPH_MIN_BYTES_PER_GRAPH = 1 * MiB

# ---- Modelled quantities: each is an ASSUMPTION (docs/fit.md) ------------------------------------------------
# Memory the CUDA context and the torch/cuBLAS runtime take before vLLM's first memory snapshot. It is outside
# `requested`, so it must fit in the (1 - utilization) share of the card. Typical for recent drivers: 300-500 MiB.
CUDA_CONTEXT_BYTES = 512 * MiB
# Kept free beyond the context when choosing gpu-memory-utilization: what an idle GPU already shows as used
# (driver, persistence daemon, a small display).
HEADROOM_BYTES = 512 * MiB
# Kept unused inside the KV budget against modelling error: a plan must hold its sequences with this much of
# the predicted KV budget left over. Sized to the spread of the modelled terms below (non-torch growth,
# activation and CUDA-graph estimates), within the 150-256 MiB the plans were reviewed against.
SAFETY_MARGIN_BYTES = 192 * MiB
# Non-torch memory that grows during vLLM's profile run (cuBLAS/cuBLASLt workspaces, Triton kernels, NCCL-free
# single-GPU runtime). vLLM measures it; 256 MiB is the assumption.
NON_TORCH_BYTES = 256 * MiB
# One text forward pass keeps, per token and in bf16: the widest MLP's gate, up and product, six hidden-size
# tensors (residual, norms, attention output), the q/k/v projections, and the per-layer input embeddings of all
# layers (looked up once per step, 35 x 256 values). The attention kernel itself (Triton) needs no L x L matrix.
HIDDEN_COPIES = 6
# Vision encoder, per patch, in bf16: q/k/v/o and residual copies (6 x hidden) and the MLP's gate/up (2 x width),
# with memory-efficient attention (no patches x patches matrix). Each soft token pools pooling_kernel_size^2 patches.
VISION_HIDDEN_COPIES = 6
# Pixel values reach the GPU as the HF processor makes them: fp32, 3 x patch_size^2 values per patch.
PIXEL_BYTES = 4
# Audio encoder: its longest clip in soft tokens (the processor's audio_seq_length) and activations per token.
AUDIO_TOKENS_PER_ITEM = 750
# Sampler bytes per logit at the peak of the profile's dummy sampler run (forward_native path): the bf16 logits
# the caller holds (2), their fp32 copy (4), the softmax probabilities (4) and the exponential noise (4).
SAMPLER_BYTES_PER_LOGIT = 2 + 4 + 4 + 4
# Below SAMPLER_TRITON_MIN_ROWS rows the PyTorch path sorts instead: fp32 values, int64 indices, fp32 cumulative
# probabilities and a bool mask on top of the bf16 and fp32 logits.
SAMPLER_SORT_BYTES_PER_LOGIT = 2 + 4 + 4 + 8 + 4 + 1
# CUDA graphs: the first capture of each set holds the activations of its largest batch; every further graph
# costs what vLLM's second sample measures: piecewise graphs (one per piece, ~36 pieces a size) 2 MiB, full
# decode graphs vLLM's 1 MiB floor.
CUDA_GRAPH_PIECEWISE_BYTES_PER_SIZE = 2 * MiB
CUDA_GRAPH_FULL_BYTES_PER_SIZE = CUDA_GRAPH_MIN_BYTES_PER_GRAPH
# CPU offload: decode reads every offloaded byte over PCIe once per step (UVA zero-copy). Usable bandwidth per
# lane after line encoding (GB/s, one direction), times an efficiency for packet overhead: 4.0 x16 -> 25 GB/s.
PCIE_LANE_BYTES_PER_SECOND = {1: 0.25e9, 2: 0.5e9, 3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}
PCIE_EFFICIENCY = 0.8


@dataclass(frozen=True)
class PCIeLink:
    """The link between GPU and host (nvidia-smi ``pcie.link.gen.max``, ``pcie.link.width.max``)."""

    gen: int = 4
    width: int = 16

    @property
    def bytes_per_second(self) -> float:
        """Sustained host-to-GPU read bandwidth the offload model assumes."""
        lane = PCIE_LANE_BYTES_PER_SECOND.get(self.gen, PCIE_LANE_BYTES_PER_SECOND[max(PCIE_LANE_BYTES_PER_SECOND)])
        return lane * self.width * PCIE_EFFICIENCY

    def __str__(self) -> str:
        return f"PCIe {self.gen}.0 x{self.width}"


DEFAULT_PCIE = PCIeLink()


class FitError(UsageError, ValueError):
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
    image_soft_tokens: int | None = None
    language_model_only: bool = False

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
        bad = {k: v for k, v in self.limit_mm_per_prompt.items() if k not in MODALITIES or v < 0}
        if bad:
            raise FitError(f"--limit-mm-per-prompt {bad}: modalities are image, audio, video with counts >= 0")

    def limit(self, modality: str) -> int:
        """Items of ``modality`` a prompt may carry, as vLLM resolves it (unnamed: 999; language-model-only: 0)."""
        if self.language_model_only:
            return 0
        return self.limit_mm_per_prompt.get(modality, MM_DEFAULT_LIMIT)

    def tower_enabled(self, tower_or_modality: str) -> bool:
        """Whether a tower is built: vLLM skips one only when all its modalities are limited to 0.

        Takes a tower (``vision_tower``) or a modality (``image``, ``video``: the vision tower serves both).
        """
        tower = tower_or_modality
        if tower not in TOWER_MODALITIES:
            tower = next(t for t, mods in TOWER_MODALITIES.items() if tower_or_modality in mods)
        return any(self.limit(m) > 0 for m in TOWER_MODALITIES[tower])


def default_max_num_seqs(total_bytes: int, gpu_name: str = "") -> int:
    """The OpenAI server's default ``--max-num-seqs`` in vLLM 0.21.0 for this card."""
    return 1024 if total_bytes >= LARGE_GPU_BYTES and "a100" not in gpu_name.lower() else 256


def default_max_num_batched_tokens(total_bytes: int, gpu_name: str = "") -> int:
    """The OpenAI server's default ``--max-num-batched-tokens`` in vLLM 0.21.0 for this card."""
    return 8192 if total_bytes >= LARGE_GPU_BYTES and "a100" not in gpu_name.lower() else 2048


def fp8_kv_supported(compute_capability: tuple[int, int]) -> bool:
    """fp8 KV cache works for this model only from compute capability 8.9 (Ada, Hopper) on."""
    return tuple(compute_capability) >= FP8_KV_MIN_COMPUTE_CAPABILITY


def utilization_for(total_bytes: int, outside_budget_bytes: int = 0) -> float:
    """The gpu-memory-utilization rule for a card of ``total_bytes``.

    Leave the CUDA context, the idle GPU's own use and what vLLM allocates after its profile run
    (``outside_budget_bytes``) outside the budget; round down to a hundredth, never above vLLM's default.
    """
    share = (total_bytes - CUDA_CONTEXT_BYTES - HEADROOM_BYTES - outside_budget_bytes) / total_bytes
    return max(0.0, min(VLLM_DEFAULT_GPU_MEMORY_UTILIZATION, math.floor(share * 100) / 100))


def offload_seconds_per_step(cpu_offload_bytes: int, link: PCIeLink = DEFAULT_PCIE) -> float:
    """Time every decode step spends reading the offloaded weights over ``link``."""
    return cpu_offload_bytes / link.bytes_per_second


# ---- KV cache ------------------------------------------------------------------------------------------------


def kv_page_bytes(model: GemmaModel, kv_dtype: str, block_size: int = KV_BLOCK_SIZE) -> tuple[int, int, int]:
    """(page bytes, full-attention block size, sliding block size) after vLLM unifies page sizes.

    Every layer starts with ``block_size`` (16 on GPUs; vLLM's CPU backend uses 128); the layer kinds whose page
    is smaller get their block size scaled up until all pages are equal (``unify_kv_cache_spec_page_size``).
    """
    b = KV_DTYPE_BYTES[kv_dtype]
    pages = {layer.sliding: block_size * layer.num_kv_heads * layer.head_dim * 2 * b for layer in model.kv_layers}
    page = max(pages.values())
    full_block = block_size * page // pages.get(False, page)
    sliding_block = block_size * page // pages.get(True, page)
    return page, full_block, sliding_block


def kv_groups(model: GemmaModel) -> tuple[int, int]:
    """(number of KV cache groups, layers per group): layers grouped by kind into groups of equal size."""
    full = sum(1 for layer in model.kv_layers if not layer.sliding)
    sliding = len(model.kv_layers) - full
    group_size = math.gcd(full, sliding) if full and sliding else max(full, sliding)
    return (full + sliding) // group_size, group_size


def kv_bytes_per_sequence(
    model: GemmaModel, kv_dtype: str, max_model_len: int, max_num_batched_tokens: int, block_size: int = KV_BLOCK_SIZE
) -> int:
    """KV bytes vLLM's hybrid manager reserves for one request of ``max_model_len`` tokens.

    Layers are grouped by kind into groups of equal size (the gcd of the kind counts: 3 full, 12 sliding -> 5
    groups of 3); a block costs group_size pages. Full layers hold ceil(L / block) blocks; sliding layers hold
    the window plus one chunk of prefill, ceil(min(window - 1 + MNBT, L) / block) + 1.
    """
    page, full_block, sliding_block = kv_page_bytes(model, kv_dtype, block_size)
    full = sum(1 for layer in model.kv_layers if not layer.sliding)
    sliding = len(model.kv_layers) - full
    _, group_size = kv_groups(model)
    blocks = 0
    if full:
        blocks += (full // group_size) * math.ceil(max_model_len / full_block)
    if sliding:
        window_tokens = min(model.sliding_window - 1 + max_num_batched_tokens, max_model_len)
        blocks += (sliding // group_size) * (math.ceil(window_tokens / sliding_block) + 1)
    return group_size * page * blocks


def kv_max_concurrency(
    model: GemmaModel, kv_dtype: str, max_model_len: int, mnbt: int, budget: int, block_size: int = KV_BLOCK_SIZE
) -> float:
    """The "Maximum concurrency" vLLM logs for a KV budget (``get_max_concurrency_for_kv_cache_config``).

    Blocks = budget // page // layers per group; concurrency = blocks / blocks one request needs.
    """
    if budget <= 0:
        return 0.0
    page, _, _ = kv_page_bytes(model, kv_dtype, block_size)
    _, group_size = kv_groups(model)
    num_blocks = budget // page // group_size
    per_request = kv_bytes_per_sequence(model, kv_dtype, max_model_len, mnbt, block_size)
    return num_blocks / -(-per_request // (page * group_size))


def kv_cache_tokens(
    model: GemmaModel, kv_dtype: str, max_model_len: int, mnbt: int, budget: int, block_size: int = KV_BLOCK_SIZE
) -> int:
    """The "GPU KV cache size: N tokens" vLLM logs: concurrency x max_model_len (``_report_kv_cache_config``)."""
    return int(kv_max_concurrency(model, kv_dtype, max_model_len, mnbt, budget, block_size) * max_model_len)


# ---- overheads -----------------------------------------------------------------------------------------------


def forward_bytes_per_token(model: GemmaModel) -> int:
    """Activation bytes one token holds at the peak of a text forward pass (see HIDDEN_COPIES)."""
    t = model.text
    qkv = int(t["num_attention_heads"]) * model.head_dim(model.num_layers - 1) + 2 * int(
        t["num_key_value_heads"]
    ) * max(model.head_dim(i) for i in range(model.num_layers))
    values = 3 * model.max_mlp_width + HIDDEN_COPIES * model.hidden + qkv + model.num_layers * model.per_layer_dim
    return 2 * values


def ple_staging_bytes(model: GemmaModel, mnbt: int) -> int:
    """The per-layer-embedding buffer gemma4_mm.py allocates with the model: MNBT x layers x per-layer dim, bf16.

    vLLM counts it in "Model loading took ..." (it exists before the profile run), so it is off the KV budget.
    """
    return mnbt * model.num_layers * model.per_layer_dim * 2


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


def cuda_graph_sets(max_num_seqs: int, max_num_batched_tokens: int) -> dict[str, list[int]]:
    """The two sets FULL_AND_PIECEWISE captures: piecewise at every size, full decode graphs up to max-num-seqs."""
    sizes = cuda_graph_sizes(max_num_seqs, max_num_batched_tokens)
    return {"piecewise": sizes, "full": [s for s in sizes if s <= max_num_seqs]}


def cuda_graph_bytes(model: GemmaModel, max_num_seqs: int, mnbt: int) -> tuple[int, str]:
    """The CUDA graph estimate vLLM subtracts: the larger first capture plus every further graph of both sets."""
    sets = cuda_graph_sets(max_num_seqs, mnbt)
    first = max(max(s) for s in sets.values()) * forward_bytes_per_token(model)
    rest = (len(sets["piecewise"]) - 1) * CUDA_GRAPH_PIECEWISE_BYTES_PER_SIZE + (
        len(sets["full"]) - 1
    ) * CUDA_GRAPH_FULL_BYTES_PER_SIZE
    what = (
        f"piecewise {len(sets['piecewise'])} sizes x {CUDA_GRAPH_PIECEWISE_BYTES_PER_SIZE // MiB} MiB + full decode "
        f"{len(sets['full'])} sizes x {CUDA_GRAPH_FULL_BYTES_PER_SIZE // MiB} MiB after the first capture, which "
        f"holds the activations of {max(sets['piecewise'])} tokens"
    )
    return first + rest, what


def triton_softmax_bytes(model: GemmaModel, max_num_seqs: int, mnbt: int, enforce_eager: bool) -> int:
    """Triton attention's decode buffers: one set per KV cache group, allocated after the profile run.

    Each metadata builder holds fp32 [T, q heads, 16 segments, padded head size] plus two [T, q heads, 16]
    tensors; T is 128 // KV heads, moved to the nearest captured size when CUDA graphs are on. The head size is
    the model's largest (global_head_dim, 512).
    """
    heads = int(model.text["num_attention_heads"])
    kv_heads = int(model.text["num_key_value_heads"])
    threshold = TRITON_MIN_LAUNCH_GRID // kv_heads
    if not enforce_eager:
        threshold = min(cuda_graph_sizes(max_num_seqs, mnbt), key=lambda x: abs(x - threshold))
    head = max(model.head_dim(i) for i in range(model.num_layers))
    padded = 1 << (head - 1).bit_length()
    groups, _ = kv_groups(model)
    return groups * threshold * heads * TRITON_SOFTMAX_SEGMENTS * (padded + 2) * 4


def sampler_bytes(model: GemmaModel, rows: int) -> int:
    """Peak of the profile's dummy sampler run over ``rows`` rows (see SAMPLER_BYTES_PER_LOGIT)."""
    v = model.vocab_size
    if rows < SAMPLER_TRITON_MIN_ROWS:
        return rows * v * SAMPLER_SORT_BYTES_PER_LOGIT
    programs = min(rows, SAMPLER_MAX_SMS)
    buffer_rows = min(1 << (programs - 1).bit_length(), SAMPLER_MAX_SMS)
    return rows * v * SAMPLER_BYTES_PER_LOGIT + buffer_rows * v * 4


@dataclass(frozen=True)
class EncoderProfile:
    """What vLLM's profile run feeds the encoder (``MultiModalBudget``) and what that costs."""

    modality: str
    items: int
    tokens_per_item: int
    peak_bytes: int
    held_bytes: int

    def describe(self) -> str:
        """One line: which dummy batch, how big."""
        if not self.items:
            return "no tower loaded"
        return f"{self.items} {self.modality} item(s) x {self.tokens_per_item} tokens"


def mm_tokens_per_item(model: GemmaModel, args: ServeArgs) -> dict[str, int]:
    """Tokens per item of each modality whose tower vLLM builds and profiles (``get_mm_max_tokens_per_item``)."""
    out = {}
    v = model.config.get("vision_config")
    if v:
        image = args.image_soft_tokens or int(v.get("default_output_length", IMAGE_SOFT_TOKENS_DEFAULT))
        if args.limit("image") > 0:
            out["image"] = image
        if args.limit("video") > 0:
            out["video"] = VIDEO_TOKENS_PER_ITEM
    if model.config.get("audio_config") and args.limit("audio") > 0:
        out["audio"] = AUDIO_TOKENS_PER_ITEM
    return out


def encoder_profile(model: GemmaModel, args: ServeArgs, mnbt: int, max_num_seqs: int) -> EncoderProfile:
    """The encoder's dummy batch in vLLM's profile run and its memory.

    vLLM profiles the one modality with the most tokens per item, as many items as the encoder budget
    (``max(MNBT, tokens per item)``) holds, at most max-num-seqs x items per prompt. Gemma 4's vision tower runs
    one image (or video frame) at a time, so its activations are one item's; all items' pixels and all their
    embeddings stay on the GPU. The embeddings stay in the encoder cache through the text forward and sampler.
    """
    tokens = mm_tokens_per_item(model, args)
    if not tokens:
        return EncoderProfile("none", 0, 0, 0, 0)
    modality, per_item = max(tokens.items(), key=lambda kv: (kv[1], kv[0]))
    budget = max(mnbt, max(tokens.values()))
    per_prompt = max(1, min(args.limit(modality), args.max_model_len // per_item))
    items = max(1, min(budget // per_item, max_num_seqs * per_prompt))
    if modality == "audio":
        h = int(model.config["audio_config"]["hidden_size"])
        per_token = 2 * (VISION_HIDDEN_COPIES * h + 2 * 4 * h)
        held = items * per_item * model.hidden * 2
        return EncoderProfile(modality, items, per_item, items * per_item * per_token + held, held)
    v = model.config["vision_config"]
    k2 = int(v["pooling_kernel_size"]) ** 2
    units, soft = (VIDEO_FRAMES, VIDEO_FRAME_SOFT_TOKENS) if modality == "video" else (1, per_item)
    patches = soft * k2
    per_patch = 2 * (VISION_HIDDEN_COPIES * int(v["hidden_size"]) + 2 * int(v["intermediate_size"]))
    pixels = items * units * patches * 3 * int(v["patch_size"]) ** 2 * PIXEL_BYTES
    held = items * units * soft * model.hidden * 2
    return EncoderProfile(modality, items, per_item, pixels + held + patches * per_patch, held)


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
    safety_margin_bytes: int = SAFETY_MARGIN_BYTES
    outside_budget: dict[str, Overhead] = field(default_factory=dict)
    kv_cache_tokens: int = 0
    expected_max_concurrency: float = 0.0
    pcie: PCIeLink = DEFAULT_PCIE
    offload_seconds_per_step: float = 0.0

    @property
    def peak_bytes(self) -> int:
        """GPU memory the process holds once serving: the budget, the context and what comes after the profile."""
        return self.requested_bytes + CUDA_CONTEXT_BYTES + sum(o.bytes for o in self.outside_budget.values())

    @property
    def decode_ceiling_tokens_per_second(self) -> float | None:
        """With CPU offload: the most decode steps per second the PCIe reads allow (None without offload)."""
        return 1 / self.offload_seconds_per_step if self.offload_seconds_per_step else None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (schema in docs/fit.md)."""
        return {
            "fits": self.fits,
            "weights_bytes": self.weights_bytes,
            "weights_by_component": dict(self.weights_by_component),
            "kv_cache_bytes_per_sequence": self.kv_cache_bytes_per_sequence,
            "kv_cache_budget_bytes": self.kv_cache_budget_bytes,
            "kv_cache_tokens": self.kv_cache_tokens,
            "expected_max_concurrency": round(self.expected_max_concurrency, 2),
            "safety_margin_bytes": self.safety_margin_bytes,
            "max_sequences_at_max_model_len": self.max_sequences_at_max_model_len,
            "overheads": {k: asdict(v) for k, v in self.overheads.items()},
            "outside_budget": {k: asdict(v) for k, v in self.outside_budget.items()},
            "peak_bytes": self.peak_bytes,
            "cpu_offload": {
                "pcie": str(self.pcie),
                "seconds_per_step": round(self.offload_seconds_per_step, 4),
                "decode_ceiling_tokens_per_second": (
                    round(self.decode_ceiling_tokens_per_second, 1) if self.decode_ceiling_tokens_per_second else None
                ),
            },
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
    if args.language_model_only:
        out["language-model-only"] = True
    elif args.limit_mm_per_prompt:
        out["limit-mm-per-prompt"] = dict(args.limit_mm_per_prompt)
    if args.cpu_offload_gb:
        out["cpu-offload-gb"] = args.cpu_offload_gb
    if args.enforce_eager:
        out["enforce-eager"] = True
    return out


def outside_budget(model: GemmaModel, args: ServeArgs, mnbt: int, max_num_seqs: int) -> dict[str, Overhead]:
    """What vLLM allocates after its profile run, beyond ``requested``: it must fit the (1 - utilization) share."""
    softmax = triton_softmax_bytes(model, max_num_seqs, mnbt, args.enforce_eager)
    groups, _ = kv_groups(model)
    logprobs = min(max_num_seqs, mnbt) * model.vocab_size * 4
    return {
        "triton_softmax_buffers": Overhead(
            softmax,
            f"Triton attention decode buffers of {groups} KV cache groups, allocated with the KV cache after the "
            "profile run",
        ),
        "runtime_logprobs": Overhead(
            logprobs,
            f"requests asking for logprobs add {min(max_num_seqs, mnbt)} rows x {model.vocab_size} fp32 log-probs "
            "to the sampler; the profile samples without logprobs",
        ),
    }


def batch_limits(args: ServeArgs, total_bytes: int, gpu_name: str = "") -> tuple[int, int]:
    """``(max-num-batched-tokens, max-num-seqs)``: the arguments' own, else vLLM 0.21.0's defaults for the card."""
    if total_bytes <= 0:
        raise FitError(f"GPU memory must be positive, not {total_bytes} bytes")
    mnbt = args.max_num_batched_tokens or default_max_num_batched_tokens(total_bytes, gpu_name)
    seqs = args.max_num_seqs or default_max_num_seqs(total_bytes, gpu_name)
    if mnbt < seqs:
        raise FitError(f"--max-num-batched-tokens ({mnbt}) must be at least --max-num-seqs ({seqs})")
    return mnbt, seqs


def loaded_weights(
    model: GemmaModel, args: ServeArgs, weights_by_component: dict[str, int] | None
) -> tuple[dict[str, int], int]:
    """The weights vLLM loads by component (towers it skips left out) and the bytes ``cpu-offload-gb`` moves off."""
    weights = dict(weights_by_component if weights_by_component is not None else model.weight_bytes())
    for tower in TOWER_MODALITIES:
        if not args.tower_enabled(tower):
            weights.pop(tower, None)
    decoder = sum(weights.get(c, 0) for c in DECODER_LAYER_COMPONENTS)
    return weights, min(int(args.cpu_offload_gb * GiB), decoder)


def in_budget_overheads(model: GemmaModel, args: ServeArgs, mnbt: int, seqs: int) -> dict[str, Overhead]:
    """What vLLM takes from ``requested`` besides weights and KV cache, each with its assumption.

    ``cuda_context`` is listed too (the report shows it) but lies outside the budget: see :func:`kv_budget_bytes`.
    """
    staging = ple_staging_bytes(model, mnbt)
    encoder = encoder_profile(model, args, mnbt, seqs)
    forward = mnbt * forward_bytes_per_token(model)
    rows = min(seqs, mnbt)
    sampler = sampler_bytes(model, rows)
    hidden_out = mnbt * model.hidden * 2
    peak = max(encoder.peak_bytes, encoder.held_bytes + forward, encoder.held_bytes + hidden_out + sampler)
    graph_bytes, graph_what = cuda_graph_bytes(model, seqs, mnbt) if not args.enforce_eager else (0, "")
    return {
        "ple_staging": Overhead(
            staging,
            f"per-layer-embedding buffer of {mnbt} tokens x {model.num_layers} layers x {model.per_layer_dim} (bf16), "
            "allocated with the model",
        ),
        "activation_peak": Overhead(
            peak,
            f"largest phase of the profile run: encoder dummy batch of {encoder.describe()} ({encoder.peak_bytes} B; "
            f"its {encoder.held_bytes} B of embeddings stay cached), text forward of {mnbt} tokens ({forward} B), "
            f"sampler over {rows} rows x {model.vocab_size} logits ({sampler} B)",
        ),
        "non_torch": Overhead(NON_TORCH_BYTES, "cuBLAS/Triton workspaces that grow during the profile run"),
        "cuda_graphs": Overhead(graph_bytes, "enforce-eager: none" if args.enforce_eager else graph_what),
        "cuda_context": Overhead(
            CUDA_CONTEXT_BYTES, "outside gpu-memory-utilization: must be free on top of the budget at start"
        ),
    }


def kv_budget_bytes(requested: int, weights_on_gpu: int, overheads: dict[str, Overhead]) -> int:
    """What is left of ``requested`` for the KV cache (the CUDA context is not taken from the budget)."""
    return requested - weights_on_gpu - sum(o.bytes for name, o in overheads.items() if name != "cuda_context")


def full_sequences(budget: int, per_seq: int) -> int:
    """How many ``max-model-len`` sequences the KV budget holds after the safety margin."""
    return int(max(0, (budget - SAFETY_MARGIN_BYTES) // per_seq))


def verdict(
    args: ServeArgs, total_bytes: int, requested: int, outside: int, budget: int, per_seq: int
) -> tuple[bool, str]:
    """``(fits, reason)``: the first limit the plan breaks, or how many full-length sequences fit."""
    sequences = full_sequences(budget, per_seq)
    if requested + outside > total_bytes:
        return False, (
            f"gpu-memory-utilization {args.gpu_memory_utilization} asks for {requested / GiB:.2f} GiB, but with "
            f"the CUDA context and the buffers vLLM allocates after profiling ({outside / GiB:.2f} GiB) that is "
            f"more than the card's {total_bytes / GiB:.2f} GiB"
        )
    if budget <= 0:
        return False, f"no memory left for the KV cache ({budget / GiB:.2f} GiB after weights and overheads)"
    if sequences < 1:
        return False, (
            f"the KV budget ({budget / GiB:.2f} GiB) less the {SAFETY_MARGIN_BYTES // MiB} MiB safety margin "
            f"holds less than one {args.max_model_len}-token sequence ({per_seq / GiB:.3f} GiB)"
        )
    return True, (
        f"{sequences} sequence(s) of {args.max_model_len} tokens fit in the KV cache with "
        f"{SAFETY_MARGIN_BYTES // MiB} MiB to spare"
    )


def plan(
    model: GemmaModel,
    args: ServeArgs,
    total_bytes: int,
    weights_by_component: dict[str, int] | None = None,
    gpu_name: str = "",
    pcie: PCIeLink = DEFAULT_PCIE,
) -> Plan:
    """Compute vLLM 0.21.0's budget for ``args`` on a card of ``total_bytes``; the verdict says if it starts.

    The steps follow vLLM's own order: batch limits, weights loaded, the profile run's overheads, the KV
    budget that is left, then what vLLM allocates after profiling (it must fit outside the budget).
    """
    args.validate()
    mnbt, seqs = batch_limits(args, total_bytes, gpu_name)
    weights, offloaded = loaded_weights(model, args, weights_by_component)
    weights_on_gpu = sum(weights.values()) - offloaded
    overheads = in_budget_overheads(model, args, mnbt, seqs)
    after = outside_budget(model, args, mnbt, seqs)
    requested = math.ceil(total_bytes * args.gpu_memory_utilization)
    budget = kv_budget_bytes(requested, weights_on_gpu, overheads)
    per_seq = kv_bytes_per_sequence(model, args.kv_cache_dtype, args.max_model_len, mnbt)
    outside = CUDA_CONTEXT_BYTES + sum(o.bytes for o in after.values())
    fits, reason = verdict(args, total_bytes, requested, outside, budget, per_seq)
    if offloaded:
        weights["cpu_offload"] = -offloaded
    return Plan(
        fits=fits,
        reason=reason,
        total_bytes=total_bytes,
        requested_bytes=requested,
        required_free_bytes=requested + CUDA_CONTEXT_BYTES,
        weights_bytes=weights_on_gpu,
        weights_by_component=weights,
        kv_cache_bytes_per_sequence=per_seq,
        kv_cache_budget_bytes=budget,
        max_sequences_at_max_model_len=full_sequences(budget, per_seq),
        overheads=overheads,
        args=vllm_args(args, mnbt, seqs),
        safety_margin_bytes=SAFETY_MARGIN_BYTES,
        outside_budget=after,
        kv_cache_tokens=kv_cache_tokens(model, args.kv_cache_dtype, args.max_model_len, mnbt, budget),
        expected_max_concurrency=kv_max_concurrency(model, args.kv_cache_dtype, args.max_model_len, mnbt, budget),
        pcie=pcie,
        offload_seconds_per_step=offload_seconds_per_step(offloaded, pcie),
    )


def decode_note(p: Plan) -> str:
    """What the plan means for decode speed, in one sentence (modelled, not measured)."""
    offloaded = -p.weights_by_component.get("cpu_offload", 0)
    if not offloaded:
        return "decode: no CPU offload, so the GPU alone sets the decode rate (not modelled)"
    return (
        f"decode: every step reads {offloaded / GiB:.2f} GiB of offloaded weights over {p.pcie} "
        f"({p.pcie.bytes_per_second / 1e9:.1f} GB/s), at least {p.offload_seconds_per_step * 1000:.0f} ms, so at most "
        f"{p.decode_ceiling_tokens_per_second:.0f} tokens/s per stream (modelled, not measured)"
    )


def with_args(args: ServeArgs, **changes: Any) -> ServeArgs:
    """A copy of ``args`` with some fields changed."""
    return replace(args, **changes)
