"""The memory planner: weights, KV, overheads, verdict, the CLI's JSON and exit codes."""

from __future__ import annotations

import json
import math

import pytest

from deploy.__main__ import main
from deploy.planner.budget import (
    CUDA_CONTEXT_BYTES,
    SAFETY_MARGIN_BYTES,
    VIDEO_TOKENS_PER_ITEM,
    FitError,
    GiB,
    MiB,
    PCIeLink,
    ServeArgs,
    cuda_graph_bytes,
    cuda_graph_sets,
    cuda_graph_sizes,
    encoder_profile,
    forward_bytes_per_token,
    kv_bytes_per_sequence,
    plan,
    ple_staging_bytes,
    sampler_bytes,
    triton_softmax_bytes,
    utilization_for,
)
from deploy.planner.cli import parse_size
from deploy.planner.model import GemmaModel

MODEL = GemmaModel.load()
JSON_KEYS = {
    "fits",
    "weights_bytes",
    "weights_by_component",
    "kv_cache_bytes_per_sequence",
    "kv_cache_budget_bytes",
    "kv_cache_tokens",
    "expected_max_concurrency",
    "safety_margin_bytes",
    "max_sequences_at_max_model_len",
    "overheads",
    "outside_budget",
    "peak_bytes",
    "cpu_offload",
    "args",
}


def test_reference_kv_bytes_per_sequence_from_the_facts() -> None:
    assert kv_bytes_per_sequence(MODEL, "fp8", 32768, 2048) == 116_588_544
    assert round(kv_bytes_per_sequence(MODEL, "fp8", 32768, 8192) / MiB, 1) == 147.2
    assert round(kv_bytes_per_sequence(MODEL, "auto", 32768, 2048) / MiB, 1) == 222.4
    assert round(kv_bytes_per_sequence(MODEL, "fp8", 131072, 2048) / MiB, 1) == 399.2


def test_towers_are_counted_as_vllm_builds_them() -> None:
    """The vision tower serves image AND video: {image: 0} alone still loads it (video defaults to 999)."""
    full = plan(MODEL, ServeArgs(), 24 * GiB)
    no_audio = plan(MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0}), 24 * GiB)
    image_zero = plan(MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0, "image": 0}), 24 * GiB)
    no_vision = plan(MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0, "image": 0, "video": 0}), 24 * GiB)
    text = plan(MODEL, ServeArgs(language_model_only=True), 24 * GiB)
    assert "audio_tower" in full.weights_by_component and "audio_tower" not in no_audio.weights_by_component
    assert "vision_tower" in image_zero.weights_by_component
    assert "vision_tower" not in no_vision.weights_by_component and "vision_tower" not in text.weights_by_component
    assert round(no_audio.weights_bytes / GiB, 2) == 7.20 and round(text.weights_bytes / GiB, 2) == 6.89
    assert text.args["language-model-only"] is True and "limit-mm-per-prompt" not in text.args


def test_encoder_profile_is_the_32_frame_video_unless_video_is_off() -> None:
    """vLLM profiles the modality with the most tokens per item: a video (2,496 tokens) beats an image (280)."""
    video = encoder_profile(MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0}), 2048, 256)
    assert (video.modality, video.items, video.tokens_per_item) == ("video", 1, VIDEO_TOKENS_PER_ITEM)
    images = encoder_profile(MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0, "video": 0}), 2048, 256)
    assert (images.modality, images.items, images.tokens_per_item) == ("image", 7, 280)  # 2048 // 280
    bigger = encoder_profile(
        MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0, "video": 0}, image_soft_tokens=560), 512, 8
    )
    assert (bigger.items, bigger.tokens_per_item) == (1, 560)  # the budget grows to one item
    one_per_prompt = encoder_profile(
        MODEL, ServeArgs(limit_mm_per_prompt={"image": 1, "audio": 0, "video": 0}), 8192, 4
    )
    assert one_per_prompt.items == 4  # max-num-seqs x 1 image per prompt
    assert encoder_profile(MODEL, ServeArgs(language_model_only=True), 2048, 256).items == 0
    # 32 frames' pixels and embeddings are all on the GPU, but the tower runs one frame at a time.
    assert video.held_bytes == 32 * 70 * MODEL.hidden * 2 and video.peak_bytes > video.held_bytes


def test_cpu_offload_moves_only_decoder_layer_weights() -> None:
    base = plan(MODEL, ServeArgs(), 24 * GiB)
    decoder = base.weights_by_component["decoder_linears"] + base.weights_by_component["decoder_other"]
    one = plan(MODEL, ServeArgs(cpu_offload_gb=1), 24 * GiB)
    assert base.weights_bytes - one.weights_bytes == GiB
    huge = plan(MODEL, ServeArgs(cpu_offload_gb=100), 24 * GiB)
    assert base.weights_bytes - huge.weights_bytes == decoder  # the per-layer table cannot move
    assert huge.weights_bytes > 5 * GiB


def test_model_card_command_does_not_fit_8gb() -> None:
    card = ServeArgs(kv_cache_dtype="fp8", gpu_memory_utilization=0.90)
    result = plan(MODEL, card, 8 * GiB)
    assert not result.fits and result.max_sequences_at_max_model_len == 0
    assert "vision_tower" in result.weights_by_component  # video keeps the vision tower even without images


def test_budget_is_utilization_of_the_card_minus_everything_else() -> None:
    r = plan(MODEL, ServeArgs(gpu_memory_utilization=0.9, kv_cache_dtype="fp8"), 24 * GiB)
    non_kv = r.weights_bytes + sum(o.bytes for k, o in r.overheads.items() if k != "cuda_context")
    assert r.kv_cache_budget_bytes == r.requested_bytes - non_kv
    assert r.requested_bytes == math.ceil(24 * GiB * 0.9)  # vLLM's request_memory rounds up
    assert r.required_free_bytes == r.requested_bytes + CUDA_CONTEXT_BYTES
    assert r.max_sequences_at_max_model_len == (
        (r.kv_cache_budget_bytes - SAFETY_MARGIN_BYTES) // r.kv_cache_bytes_per_sequence
    )
    assert r.peak_bytes == r.required_free_bytes + sum(o.bytes for o in r.outside_budget.values())


def test_the_safety_margin_decides_a_tight_plan() -> None:
    """A plan whose KV budget holds a sequence only by eating into the margin does not fit."""
    base = ServeArgs(kv_cache_dtype="fp8", max_num_seqs=8, max_num_batched_tokens=512, cpu_offload_gb=1.0)
    results = [plan(MODEL, base, total * MiB) for total in range(7800, 8400, 4)]
    edge = next(r for r in results if r.kv_cache_budget_bytes >= r.kv_cache_bytes_per_sequence)
    assert not edge.fits and "safety margin" in edge.reason
    first_fit = next(r for r in results if r.fits)
    assert first_fit.kv_cache_budget_bytes - SAFETY_MARGIN_BYTES >= first_fit.kv_cache_bytes_per_sequence
    assert 150 * MiB <= SAFETY_MARGIN_BYTES <= 256 * MiB


def test_overheads_shrink_with_their_knobs() -> None:
    big = plan(MODEL, ServeArgs(max_num_seqs=256), 24 * GiB)
    small = plan(MODEL, ServeArgs(max_num_seqs=4), 24 * GiB)
    eager = plan(MODEL, ServeArgs(max_num_seqs=256, enforce_eager=True), 24 * GiB)
    assert small.overheads["activation_peak"].bytes < big.overheads["activation_peak"].bytes
    assert small.overheads["cuda_graphs"].bytes < big.overheads["cuda_graphs"].bytes
    assert eager.overheads["cuda_graphs"].bytes == 0
    for o in big.overheads.values():
        assert o.assumption  # every overhead says what it assumes


def test_cuda_graph_sizes_follow_vllm_defaults() -> None:
    sizes = cuda_graph_sizes(256, 2048)
    assert sizes[:4] == [1, 2, 4, 8] and sizes[-1] == 512 and len(sizes) == 51
    assert cuda_graph_sizes(4, 512) == [1, 2, 4, 8]


def test_cuda_graphs_are_two_sets() -> None:
    """FULL_AND_PIECEWISE: piecewise graphs at every size, full decode graphs up to max-num-seqs, both counted."""
    sets = cuda_graph_sets(256, 2048)
    assert len(sets["piecewise"]) == 51 and sets["full"][-1] == 256 and len(sets["full"]) == 35
    total, what = cuda_graph_bytes(MODEL, 256, 2048)
    # vLLM's estimate: the largest first capture, then every further graph of BOTH sets (1 MiB floor each).
    assert total == 512 * forward_bytes_per_token(MODEL) + 50 * 2 * MiB + 34 * 1 * MiB
    assert "full decode 35 sizes" in what


def test_sampler_staging_and_triton_terms_from_vllms_source() -> None:
    v = MODEL.vocab_size
    # 4+ rows: bf16 + fp32 logits, probabilities, exponential noise, and one fp32 row per Triton program.
    assert sampler_bytes(MODEL, 12) == 12 * v * 14 + 16 * v * 4  # programs rounded up to a power of two
    assert sampler_bytes(MODEL, 256) == 256 * v * 14 + 132 * v * 4  # at most one program per SM (H100: 132)
    assert sampler_bytes(MODEL, 4) == 4 * v * 23  # below 8 rows PyTorch sorts: int64 indices and more
    assert ple_staging_bytes(MODEL, 2048) == 2048 * 35 * 256 * 2
    # 5 KV cache groups x [128 rows, 8 heads, 16 segments, 512 (+2) fp32] = 160.6 MiB after the profile run.
    assert triton_softmax_bytes(MODEL, 256, 2048, enforce_eager=False) == 5 * 128 * 8 * 16 * 514 * 4
    assert triton_softmax_bytes(MODEL, 4, 512, enforce_eager=False) == 5 * 8 * 8 * 16 * 514 * 4  # largest size 8
    assert triton_softmax_bytes(MODEL, 4, 512, enforce_eager=True) == 5 * 128 * 8 * 16 * 514 * 4
    r = plan(MODEL, ServeArgs(kv_cache_dtype="fp8"), 24 * GiB)
    assert r.overheads["ple_staging"].bytes == ple_staging_bytes(MODEL, 2048)
    assert r.outside_budget["triton_softmax_buffers"].bytes == 5 * 128 * 8 * 16 * 514 * 4


def test_offload_cost_follows_the_pcie_link() -> None:
    args = ServeArgs(kv_cache_dtype="fp8", cpu_offload_gb=1.0, max_num_seqs=16, max_num_batched_tokens=512)
    x16 = plan(MODEL, args, 8 * GiB, pcie=PCIeLink(4, 16))
    x8 = plan(MODEL, args, 8 * GiB, pcie=PCIeLink(4, 8))
    assert round(x16.offload_seconds_per_step * 1000) == 43  # 1 GiB at 25.2 GB/s
    assert x8.offload_seconds_per_step == pytest.approx(2 * x16.offload_seconds_per_step)
    assert x8.decode_ceiling_tokens_per_second == pytest.approx(1 / x8.offload_seconds_per_step)
    assert plan(MODEL, ServeArgs(), 24 * GiB).decode_ceiling_tokens_per_second is None


def test_utilization_rule_leaves_the_context_outside() -> None:
    assert utilization_for(8188 * MiB) == 0.87
    assert utilization_for(80 * GiB) == 0.92  # never above vLLM's default
    assert utilization_for(12282 * MiB, 417 * MiB) < utilization_for(12282 * MiB)  # post-profile buffers too
    for total in (8 * GiB, 12 * GiB, 24 * GiB):
        assert total - utilization_for(total) * total >= CUDA_CONTEXT_BYTES


@pytest.mark.parametrize(
    "args",
    [
        ServeArgs(kv_cache_dtype="fp9"),
        ServeArgs(max_model_len=0),
        ServeArgs(gpu_memory_utilization=1.5),
        ServeArgs(cpu_offload_gb=-1),
        ServeArgs(limit_mm_per_prompt={"smell": 1}),
        ServeArgs(limit_mm_per_prompt={"video": -1}),
        ServeArgs(max_num_seqs=512, max_num_batched_tokens=256),
    ],
)
def test_bad_input_is_refused(args: ServeArgs) -> None:
    with pytest.raises(FitError):
        plan(MODEL, args, 8 * GiB)


@pytest.mark.parametrize(
    ("text", "size"),
    [("8GiB", 8 * GiB), ("7.5GiB", int(7.5 * GiB)), ("8192MiB", 8 * GiB), ("8GB", 8 * 10**9), ("1024", 1024)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_cli_json_schema_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--gpu-memory", "24GiB", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == JSON_KEYS and doc["fits"] is True
    assert doc["kv_cache_bytes_per_sequence"] == 116_588_544
    assert doc["weights_bytes"] == sum(doc["weights_by_component"].values())
    assert doc["args"]["kv-cache-dtype"] == "fp8"
    assert main(["fit", "--gpu-memory", "8GiB", "--profile", "default", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["fits"] is False
    assert main(["fit", "--gpu-memory", "lots"]) == 2
    assert "--gpu-memory 'lots'" in capsys.readouterr().err
    assert main(["fit", "--gpu-memory", "8GiB", "--compute-capability", "8.6", "--kv-cache-dtype", "fp8"]) == 2
    assert "issue 26431" in capsys.readouterr().err
    assert main(["fit", "--gpu-memory", "8GiB", "--limit-mm-per-prompt", "image=4"]) == 2
    assert main(["fit", "--gpu-memory", "8GiB", "--profile", "nope"]) == 2
    assert main(["fit", "--gpu-memory", "8GiB", "--pcie", "fast"]) == 2
    assert "--pcie 'fast'" in capsys.readouterr().err


def test_cli_shows_the_margin_and_the_offload_cost(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", "--gpu-memory", "8188MiB", "--profile", "gpu-8gb", "--pcie", "4.0 x8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"safety margin: {SAFETY_MARGIN_BYTES // MiB} MiB" in out
    assert "over PCIe 4.0 x8 -> 64 ms per decode step, at most 16 tokens/s per stream" in out
    assert "triton_softmax_buffers" in out and "vLLM should log about" in out
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["safety_margin_bytes"] == SAFETY_MARGIN_BYTES and doc["cpu_offload"]["pcie"] == "PCIe 4.0 x8"


def test_cli_ampere_defaults_to_bf16_kv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--gpu-memory", "24GiB", "--compute-capability", "8.6", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["args"]["kv-cache-dtype"] == "auto"
    assert round(doc["kv_cache_bytes_per_sequence"] / MiB, 1) == 222.4  # bf16: twice fp8's 111.2 MiB
