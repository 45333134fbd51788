"""The shared test fixtures are what they claim: a real (tiny) Gemma 4 text+vision checkpoint, a faithful
W8A16 compressed-tensors copy, and servers that come up and go away cleanly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from tests.fixtures.servers import closed_port_url, layout_hf_cache, run_asgi, serve_transformers
from tests.fixtures.tiny_gemma4 import MAX_SOFT_TOKENS, TOKEN_ID, build_tiny_gemma4

pytestmark = pytest.mark.slow


def test_tiny_checkpoint_is_a_gemma4_vision_model(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Gemma4ForConditionalGeneration"]
    assert config["model_type"] == "gemma4"
    assert config["vision_config"]["model_type"] == "gemma4_vision"
    assert config["image_token_id"] == TOKEN_ID["<|image|>"]
    assert config["boi_token_id"] == TOKEN_ID["<|image>"]
    assert (tiny_checkpoint / "model.safetensors").stat().st_size < 5_000_000


def test_an_image_reaches_the_prompt_as_soft_tokens(tiny_checkpoint: Path) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    assert type(processor).__name__ == "Gemma4Processor"
    text = [{"role": "user", "content": [{"type": "text", "text": "What colour is this image?"}]}]
    image = [
        {
            "role": "user",
            "content": [{"type": "image", "image": Image.new("RGB", (96, 96), "red")}, *text[0]["content"]],
        }
    ]
    kwargs = {"add_generation_prompt": True, "tokenize": True, "return_dict": True, "return_tensors": "pt"}
    without = processor.apply_chat_template(text, **kwargs)["input_ids"]
    with_image = processor.apply_chat_template(image, **kwargs)
    grown = with_image["input_ids"].shape[1] - without.shape[1]
    soft = int((with_image["input_ids"] == TOKEN_ID["<|image|>"]).sum())
    assert 0 < soft <= MAX_SOFT_TOKENS
    assert grown == soft + 2  # soft tokens between begin-of-image and end-of-image
    assert "pixel_values" in with_image
    rendered = processor.apply_chat_template(text, add_generation_prompt=True, tokenize=False)
    assert rendered == "<bos><|turn>user\nWhat colour is this image?<turn|>\n<|turn>model\n"


def test_the_build_is_deterministic(tiny_checkpoint: Path, tmp_path: Path) -> None:
    again = build_tiny_gemma4(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        first = hashlib.sha256((tiny_checkpoint / name).read_bytes()).hexdigest()
        assert first == hashlib.sha256((again / name).read_bytes()).hexdigest(), name


def test_w8a16_copy_is_pack_quantized_int8_channelwise(tiny_checkpoint: Path, tiny_w8a16_checkpoint: Path) -> None:
    import torch
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors import safe_open

    qconfig = json.loads((tiny_w8a16_checkpoint / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "compressed-tensors"
    assert qconfig["format"] == "pack-quantized"
    (group,) = qconfig["config_groups"].values()
    expected = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"}
    assert group["weights"] | expected == group["weights"]
    assert group["input_activations"] is None  # A16: activations stay 16-bit
    assert "lm_head" in qconfig["ignore"]
    assert all("language_model" not in name for name in qconfig["ignore"])

    name = "model.language_model.layers.0.mlp.down_proj"
    with safe_open(tiny_checkpoint / "model.safetensors", "pt") as f:
        original = f.get_tensor(f"{name}.weight").float()
    with safe_open(tiny_w8a16_checkpoint / "model.safetensors", "pt") as f:
        stored = set(f.keys())
        packed, scale, shape = (f.get_tensor(f"{name}.{k}") for k in ("weight_packed", "weight_scale", "weight_shape"))
    assert f"{name}.weight" not in stored
    assert not any("vision_tower" in k and k.endswith("weight_packed") for k in stored)
    assert packed.dtype == torch.int32 and scale.shape == (original.shape[0], 1)
    restored = unpack_from_int32(packed, 8, shape).float() * scale
    # Round to nearest: every weight within half a quantization step of the original.
    assert torch.all((restored - original).abs() <= scale / 2 + 1e-7)


def test_hf_cache_layout_rejects_a_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        layout_hf_cache(tmp_path / "model", tmp_path / "hf", "x/y")


def test_serve_transformers_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(RuntimeError, match="did not come up") as info, serve_transformers(broken, ready_timeout_s=60):
        pass
    assert "transformers-serve.log" in str(info.value)


def test_run_asgi_serves_then_stops() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with run_asgi(app) as url:
        assert httpx.get(url, timeout=5).status_code == 204
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


def test_closed_port_refuses_connections() -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(closed_port_url(), timeout=2)
