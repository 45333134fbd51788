"""The checkpoints the engine tier serves have the shape vLLM 0.21.0's CPU build needs, and the rotation of
profiles covers every profile."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from deploy.profiles import list_profiles
from tests.engine.selection import selected_profiles
from tests.fixtures.vllm_server import Checkpoints

pytestmark = pytest.mark.engine


def test_the_w4a16_checkpoint_is_the_w8a16_scheme_at_4_bits(vllm_checkpoints: Checkpoints) -> None:
    config = json.loads((vllm_checkpoints.w4a16 / "config.json").read_text())
    quant = config["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors" and quant["format"] == "pack-quantized"
    [group] = quant["config_groups"].values()
    assert (group["weights"]["num_bits"], group["weights"]["strategy"], group["weights"]["symmetric"]) == (
        4,
        "channel",
        True,
    )
    assert group["input_activations"] is None  # A16: activations stay 16-bit
    assert "lm_head" in quant["ignore"] and any("vision_tower" in name for name in quant["ignore"])


def test_the_checkpoints_have_what_vllm_reads(vllm_checkpoints: Checkpoints) -> None:
    for folder in (vllm_checkpoints.bf16, vllm_checkpoints.w4a16):
        config = json.loads((folder / "config.json").read_text())
        assert config["vision_config"]["default_output_length"] == 70  # vLLM 0.21.0 requires it
        assert config["text_config"]["max_position_embeddings"] == 32768  # the profiles' max-model-len
        assert config["dtype"] == "bfloat16"
        text = config["text_config"]
        # Every quantized Linear must be a multiple of 32 wide for the CPU WNA16 kernel.
        for width in (text["hidden_size"], text["intermediate_size"], text["hidden_size_per_layer_input"]):
            assert width % 32 == 0, width


def test_the_rotation_serves_every_profile_within_a_cycle() -> None:
    profiles = sorted(list_profiles())
    start = dt.date(2026, 1, 1)
    seen = {selected_profiles("rotate", start + dt.timedelta(days=d))[0] for d in range(len(profiles))}
    assert seen == set(profiles)
    assert selected_profiles("all") == profiles
    assert selected_profiles("gpu-8gb, default") == ["gpu-8gb", "default"]
    with pytest.raises(ValueError, match="unknown profiles \\['gpu-7gb'\\]"):
        selected_profiles("gpu-7gb")
