"""The memory planner: weights, KV, overheads, verdict, the CLI's JSON and exit codes."""

from __future__ import annotations

import json
import math

import pytest

from deploy.__main__ import main
from deploy.fit import (
    CUDA_CONTEXT_BYTES,
    FitError,
    GiB,
    MiB,
    ServeArgs,
    cuda_graph_sizes,
    kv_bytes_per_sequence,
    plan,
    utilization_for,
)
from deploy.fit_cli import parse_size
from deploy.model import GemmaModel

MODEL = GemmaModel.load()
JSON_KEYS = {
    "fits",
    "weights_bytes",
    "weights_by_component",
    "kv_cache_bytes_per_sequence",
    "kv_cache_budget_bytes",
    "max_sequences_at_max_model_len",
    "overheads",
    "args",
}


def test_reference_kv_bytes_per_sequence_from_the_facts() -> None:
    assert kv_bytes_per_sequence(MODEL, "fp8", 32768, 2048) == 116_588_544
    assert round(kv_bytes_per_sequence(MODEL, "fp8", 32768, 8192) / MiB, 1) == 147.2
    assert round(kv_bytes_per_sequence(MODEL, "auto", 32768, 2048) / MiB, 1) == 222.4
    assert round(kv_bytes_per_sequence(MODEL, "fp8", 131072, 2048) / MiB, 1) == 399.2


def test_towers_limited_to_zero_are_not_counted() -> None:
    full = plan(MODEL, ServeArgs(), 24 * GiB)
    no_audio = plan(MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0}), 24 * GiB)
    text = plan(MODEL, ServeArgs(limit_mm_per_prompt={"audio": 0, "image": 0}), 24 * GiB)
    assert "audio_tower" in full.weights_by_component and "audio_tower" not in no_audio.weights_by_component
    assert "vision_tower" not in text.weights_by_component
    assert round(no_audio.weights_bytes / GiB, 2) == 7.20 and round(text.weights_bytes / GiB, 2) == 6.89


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
    assert "no memory left for the KV cache" in result.reason


def test_budget_is_utilization_of_the_card_minus_everything_else() -> None:
    r = plan(MODEL, ServeArgs(gpu_memory_utilization=0.9, kv_cache_dtype="fp8"), 24 * GiB)
    non_kv = r.weights_bytes + sum(o.bytes for k, o in r.overheads.items() if k != "cuda_context")
    assert r.kv_cache_budget_bytes == r.requested_bytes - non_kv
    assert r.requested_bytes == math.ceil(24 * GiB * 0.9)  # vLLM's request_memory rounds up
    assert r.required_free_bytes == r.requested_bytes + CUDA_CONTEXT_BYTES
    assert r.max_sequences_at_max_model_len == r.kv_cache_budget_bytes // r.kv_cache_bytes_per_sequence


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


def test_utilization_rule_leaves_the_context_outside() -> None:
    assert utilization_for(8188 * MiB) == 0.87
    assert utilization_for(80 * GiB) == 0.92  # never above vLLM's default
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


def test_cli_ampere_defaults_to_bf16_kv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--gpu-memory", "24GiB", "--compute-capability", "8.6", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["args"]["kv-cache-dtype"] == "auto"
    assert round(doc["kv_cache_bytes_per_sequence"] / MiB, 1) == 222.4  # bf16: twice fp8's 111.2 MiB
