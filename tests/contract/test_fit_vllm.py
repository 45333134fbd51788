"""The planner against vLLM 0.21.0's own code, run in the vLLM venv on CPU (tests/contract/vllm_budget.py).

One harness run answers every question, so vLLM is imported once:

- KV bytes per request and the "GPU KV cache size" tokens vLLM logs, from its ``kv_cache_utils``;
- for every committed profile, its multimodal and batch settings through ``EngineArgs.create_engine_config``,
  ``MultiModalBudget`` (the encoder dummy batch ``profile_run`` uses) and the model built on the meta device with a
  tiny Gemma 4: which towers exist, which modality vLLM profiles with how many items, the staging buffer's size.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deploy.planner.args import from_mapping
from deploy.planner.budget import (
    VIDEO_TOKENS_PER_ITEM,
    ServeArgs,
    encoder_profile,
    kv_bytes_per_sequence,
    kv_cache_tokens,
    kv_groups,
    ple_staging_bytes,
)
from deploy.planner.model import GemmaModel
from deploy.profiles import list_profiles, load_profile

pytestmark = pytest.mark.contract

HARNESS = Path(__file__).with_name("vllm_budget.py")
# (KV dtype, max-model-len, max-num-batched-tokens, KV budget bytes, block size: 16 on GPUs, 128 on vLLM's CPU)
KV_CASES = [
    ("fp8", 32768, 2048, 12 * 2**30, 16),
    ("fp8", 32768, 8192, 60 * 2**30, 16),
    ("auto", 32768, 2048, 5 * 2**30, 16),
    ("fp8", 131072, 2048, 3 * 2**30, 16),
    ("fp8", 32768, 512, 700 * 2**20, 16),
    ("auto", 16384, 1024, 450 * 2**20, 16),
    ("fp8", 300, 2048, 2**30, 16),  # shorter than the sliding window plus one chunk
    ("fp8", 32768, 2048, 2**30, 128),
    ("auto", 16384, 512, 3 * 2**30, 128),
]
# The profile keys that decide what vLLM builds and profiles; the rest (KV dtype, offload) do not change it.
MM_KEYS = (
    "limit-mm-per-prompt",
    "language-model-only",
    "mm-processor-kwargs",
    "max-model-len",
    "max-num-seqs",
    "max-num-batched-tokens",
)


def _engine_args(config: dict[str, Any]) -> dict[str, Any]:
    args = {k.replace("-", "_"): v for k, v in config.items() if k in MM_KEYS}
    args.setdefault("max_model_len", 32768)
    # The `default` profile (the model card's command) leaves the batch limits to vLLM, whose defaults depend on
    # the GPU; pin the under-70-GiB ones so the planner and vLLM answer the same question on a CPU.
    args.setdefault("max_num_seqs", 256)
    args.setdefault("max_num_batched_tokens", 2048)
    return args


@pytest.fixture(scope="module")
def vllm_answers(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    model = GemmaModel.load()
    payload = {
        "kv": {
            "layers": [
                {"sliding": layer.sliding, "head_dim": layer.head_dim, "num_kv_heads": layer.num_kv_heads}
                for layer in model.kv_layers
            ],
            "sliding_window": model.sliding_window,
            "cases": [
                {"kv_dtype": d, "max_model_len": n, "max_num_batched_tokens": t, "budget": b, "block_size": k}
                for d, n, t, b, k in KV_CASES
            ],
        },
        "mm": {
            "checkpoint": str(tmp_path_factory.mktemp("tiny-gemma4-vllm")),
            "cases": {name: _engine_args(load_profile(name)) for name in list_profiles()},
        },
    }
    out = tmp_path_factory.mktemp("vllm-budget") / "answers.json"
    proc = subprocess.run(
        [vllm_python, str(HARNESS), str(out)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    answers = json.loads(out.read_text())
    answers["tiny_model"] = GemmaModel.load(Path(payload["mm"]["checkpoint"]) / "config.json")
    return answers


def test_kv_bytes_and_logged_tokens_match_vllm(vllm_answers: dict[str, Any]) -> None:
    model = GemmaModel.load()
    theirs = vllm_answers["kv"]
    assert [kv_bytes_per_sequence(model, d, n, t, k) for d, n, t, _, k in KV_CASES] == [
        c["bytes_per_request"] for c in theirs
    ]
    assert theirs[0]["bytes_per_request"] == 116_588_544  # the facts file's reference case
    assert [kv_cache_tokens(model, d, n, t, b, k) for d, n, t, b, k in KV_CASES] == [
        c["kv_cache_tokens"] for c in theirs
    ]
    assert {c["groups"] for c in theirs} == {kv_groups(model)[0]}  # the Triton buffers are allocated per group


@pytest.mark.parametrize("name", [n for n in list_profiles() if n != "default"])
def test_every_profile_turns_video_off_in_vllm(vllm_answers: dict[str, Any], name: str) -> None:
    """vLLM's own resolution of the profile's limits: no video (it would default to 999 per prompt), no audio."""
    limits = vllm_answers["mm"][name]["limits"]
    assert limits["video"] == 0 and limits["audio"] == 0
    assert vllm_answers["mm"][name]["dummy_modality"] in ("image", None)


@pytest.mark.parametrize("name", list_profiles())
def test_planner_models_what_vllm_builds_and_profiles(vllm_answers: dict[str, Any], name: str) -> None:
    """Towers built, the encoder's dummy batch and the staging buffer: the planner's answer is vLLM's."""
    theirs = vllm_answers["mm"][name]
    tiny: GemmaModel = vllm_answers["tiny_model"]
    args = from_mapping(load_profile(name), ServeArgs())
    mnbt, seqs = theirs["max_num_batched_tokens"], theirs["max_num_seqs"]
    assert args.tower_enabled("vision_tower") is theirs["vision_tower_built"]
    ours = encoder_profile(tiny, args, mnbt, seqs)
    if theirs["dummy_modality"] is None:
        assert ours.items == 0
    else:
        assert (ours.modality, ours.items, ours.tokens_per_item) == (
            theirs["dummy_modality"],
            theirs["dummy_items"],
            theirs["tokens_per_item"][theirs["dummy_modality"]],
        )
    staging = theirs["ple_staging_shape"]
    assert ple_staging_bytes(tiny, mnbt) == staging[0] * staging[1] * staging[2] * 2


def test_the_model_card_command_profiles_a_32_frame_video(vllm_answers: dict[str, Any]) -> None:
    """What issue 18 found: left unset, video accepts 999 per prompt and vLLM profiles one 2,496-token video."""
    default = vllm_answers["mm"]["default"]
    assert default["limits"]["video"] == 999 and default["dummy_modality"] == "video"
    assert default["tokens_per_item"]["video"] == VIDEO_TOKENS_PER_ITEM == 2496
    text_only_by_limits = ServeArgs(limit_mm_per_prompt={"image": 0, "audio": 0})
    assert text_only_by_limits.tower_enabled("vision_tower")  # {image: 0} alone still builds the vision tower
