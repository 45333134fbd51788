"""deploy.planner.model against transformers' own Gemma 4 model, built on the meta device from the real E2B config."""

from __future__ import annotations

import re

import pytest

from deploy.planner.model import COMPONENTS, GemmaModel

GiB = 1024**3


def _component(name: str) -> str:
    """Which deploy.planner.model component a transformers parameter belongs to."""
    if "vision_tower" in name or "embed_vision" in name:
        return "vision_tower"
    if "audio_tower" in name or "embed_audio" in name:
        return "audio_tower"
    if "embed_tokens_per_layer" in name:
        return "per_layer_embeddings"
    if "embed_tokens" in name:
        return "embed_tokens"
    if re.search(r"language_model\.layers\.\d+\.", name):
        return "decoder_other" if "norm" in name else "decoder_linears"
    return "text_other"


@pytest.fixture(scope="module")
def transformers_counts() -> dict[str, dict[str, int]]:
    """Parameters, Linear weights and Linear output channels per component, counted by transformers."""
    torch = pytest.importorskip("torch")
    from transformers import Gemma4ForConditionalGeneration
    from transformers.models.gemma4.configuration_gemma4 import Gemma4Config

    config = Gemma4Config(**GemmaModel.load().config)
    with torch.device("meta"):
        model = Gemma4ForConditionalGeneration(config)
    counts = {c: {"params": 0, "linear": 0, "channels": 0, "modules": 0} for c in COMPONENTS}
    for name, p in model.named_parameters():
        counts[_component(name)]["params"] += p.numel()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):  # tied: no weights of its own
            c = counts[_component(name + ".weight")]
            c["linear"] += module.weight.numel()
            c["channels"] += module.weight.shape[0]
            c["modules"] += 1
    return counts


@pytest.mark.parametrize("component", COMPONENTS)
def test_parameter_counts_match_transformers(component: str, transformers_counts: dict) -> None:
    ours = GemmaModel.load().components[component]
    theirs = transformers_counts[component]
    assert ours.params == theirs["params"]
    assert ours.linear_params == theirs["linear"]
    assert ours.out_channels == theirs["channels"]
    assert ours.linear_modules == theirs["modules"]


def test_total_is_the_dense_5_1_billion() -> None:
    total = sum(c.params for c in GemmaModel.load().components.values())
    assert 5.10e9 < total < 5.11e9  # dense, not a mixture of experts


def test_w8a16_bytes_match_the_facts() -> None:
    """7.77 GiB with every tower, 7.20 without audio, 6.89 text only (vllm-0.21.0-facts.md)."""
    w = GemmaModel.load().weight_bytes(quantized=True)
    total = sum(w.values())
    assert round(total / GiB, 2) == 7.77
    assert round((total - w["audio_tower"]) / GiB, 2) == 7.20
    assert round((total - w["audio_tower"] - w["vision_tower"]) / GiB, 2) == 6.89
    assert round(sum(GemmaModel.load().weight_bytes(quantized=False).values()) / GiB, 2) == 9.51


def test_kv_owning_layers() -> None:
    layers = GemmaModel.load().kv_layers
    assert len(layers) == 15  # 35 layers, the last 20 share KV
    assert [layer.index for layer in layers if not layer.sliding] == [4, 9, 14]
    assert {layer.head_dim for layer in layers if layer.sliding} == {256}
    assert {layer.head_dim for layer in layers if not layer.sliding} == {512}


def test_shared_layers_have_double_wide_mlp() -> None:
    m = GemmaModel.load()
    assert m.mlp_width(0) == 6144 and m.mlp_width(15) == 12288
