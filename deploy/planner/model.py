"""Gemma 4 E2B facts derived from its ``config.json``: components, their sizes, and the layers that own KV.

Everything here is arithmetic on the config (``deploy/data/gemma-4-e2b-config.json`` is the real one); a test
checks each count against transformers' own ``Gemma4ForConditionalGeneration`` built on the meta device.
A few shape constants are not in the config; each is named below with where it comes from.

Components are the units the fit planner adds, drops or moves:

- ``per_layer_embeddings``: the 262144 x (35 x 256) per-layer input table. An embedding, so compressed-tensors
  leaves it in bf16 and vLLM keeps it on the GPU; ``--cpu-offload-gb`` cannot move it.
- ``embed_tokens``: the token embedding, tied with ``lm_head``.
- ``decoder_linears``: the Linear layers inside the 35 decoder layers (int8 + one bf16 scale per output channel
  in the W8A16 checkpoint). With ``decoder_other`` (norms, scalars) these are what ``--cpu-offload-gb`` moves.
- ``text_other``: the per-layer model projection, its norm and the final norm.
- ``vision_tower`` / ``audio_tower``: each tower with its projection into the text model; vLLM skips a tower whose
  modality is limited to 0 items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

CONFIG_PATH = Path(__file__).resolve().parents[1] / "data" / "gemma-4-e2b-config.json"

# Not in config.json; read from transformers' Gemma 4 modelling code (checked by the meta-device test).
AUDIO_MEL_BINS = 128  # input features of the audio feature extractor
AUDIO_FF_MULTIPLIER = 4  # conformer feed-forward width = 4 x hidden
AUDIO_CONV_KERNEL_2D = 3  # the two subsampling convolutions are 3 x 3, stride 2 in frequency each
AUDIO_ATTENTION_PER_DIM = 128  # size of the relative-position per-dimension scale
VISION_CHANNELS = 3

BF16 = 2
INT8 = 1
# compressed-tensors pack-quantized stores each Linear's original shape as two int64.
WEIGHT_SHAPE_BYTES = 16

COMPONENTS: tuple[str, ...] = (
    "per_layer_embeddings",
    "embed_tokens",
    "decoder_linears",
    "decoder_other",
    "text_other",
    "vision_tower",
    "audio_tower",
)
DECODER_LAYER_COMPONENTS: tuple[str, ...] = ("decoder_linears", "decoder_other")
TOWERS: dict[str, str] = {"image": "vision_tower", "audio": "audio_tower"}


@dataclass(frozen=True)
class ComponentSize:
    """Parameters of one component; ``linear_params``/``linear_modules``/``out_channels`` are the quantizable part."""

    params: int
    linear_params: int = 0
    linear_modules: int = 0
    out_channels: int = 0

    def __add__(self, other: ComponentSize) -> ComponentSize:
        return ComponentSize(
            self.params + other.params,
            self.linear_params + other.linear_params,
            self.linear_modules + other.linear_modules,
            self.out_channels + other.out_channels,
        )


def _linear(out_features: int, in_features: int, bias: bool = False) -> ComponentSize:
    weights = out_features * in_features
    return ComponentSize(weights + (out_features if bias else 0), weights, 1, out_features)


def _params(n: int) -> ComponentSize:
    return ComponentSize(n)


@dataclass(frozen=True)
class KVLayer:
    """A decoder layer that allocates its own KV cache (the shared layers reuse another's)."""

    index: int
    sliding: bool
    head_dim: int
    num_kv_heads: int


@dataclass(frozen=True)
class GemmaModel:
    """The model's shape, read from a Gemma 4 ``config.json`` (multimodal layout)."""

    config: dict[str, Any]

    @classmethod
    def load(cls, path: Path = CONFIG_PATH) -> GemmaModel:
        """Read a config.json (the bundled E2B one by default)."""
        return cls(json.loads(Path(path).read_text()))

    @property
    def text(self) -> dict[str, Any]:
        """The text model's config section."""
        return self.config["text_config"]

    @property
    def hidden(self) -> int:
        """Hidden size of the text model."""
        return int(self.text["hidden_size"])

    @property
    def vocab_size(self) -> int:
        """Vocabulary size (the sampler's logits width)."""
        return int(self.text["vocab_size"])

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return int(self.text["num_hidden_layers"])

    @property
    def sliding_window(self) -> int:
        """Sliding-window length of the sliding attention layers."""
        return int(self.text["sliding_window"])

    def layer_is_sliding(self, i: int) -> bool:
        """Whether decoder layer ``i`` uses sliding-window attention."""
        return self.text["layer_types"][i] == "sliding_attention"

    def head_dim(self, i: int) -> int:
        """Head size of layer ``i`` (global layers use ``global_head_dim``)."""
        if self.layer_is_sliding(i):
            return int(self.text["head_dim"])
        return int(self.text.get("global_head_dim") or self.text["head_dim"])

    @property
    def first_shared_layer(self) -> int:
        """Index of the first layer that reuses an earlier layer's KV."""
        return self.num_layers - int(self.text.get("num_kv_shared_layers", 0))

    def mlp_width(self, i: int) -> int:
        """MLP intermediate size of layer ``i`` (doubled in the KV-shared layers when ``use_double_wide_mlp``)."""
        width = int(self.text["intermediate_size"])
        if self.text.get("use_double_wide_mlp") and i >= self.first_shared_layer:
            width *= 2
        return width

    @property
    def max_mlp_width(self) -> int:
        """Widest MLP of any layer (sets the activation peak)."""
        return max(self.mlp_width(i) for i in range(self.num_layers))

    @property
    def per_layer_dim(self) -> int:
        """Width of each layer's slice of the per-layer input embedding."""
        return int(self.text["hidden_size_per_layer_input"])

    @cached_property
    def kv_layers(self) -> tuple[KVLayer, ...]:
        """The layers that allocate KV cache: every layer before the first KV-shared one."""
        heads = int(self.text["num_key_value_heads"])
        return tuple(
            KVLayer(i, self.layer_is_sliding(i), self.head_dim(i), heads) for i in range(self.first_shared_layer)
        )

    # ---- parameter counts ------------------------------------------------------------------------------

    def _decoder_layer(self, i: int) -> tuple[ComponentSize, ComponentSize]:
        """(linears, other parameters) of decoder layer ``i``."""
        t, h = self.text, self.hidden
        heads, kv_heads, hd = int(t["num_attention_heads"]), int(t["num_key_value_heads"]), self.head_dim(i)
        owns_kv = i < self.first_shared_layer
        width = self.mlp_width(i)
        linears = _linear(heads * hd, h) + _linear(h, heads * hd)  # q, o
        if owns_kv:
            linears = linears + _linear(kv_heads * hd, h) + _linear(kv_heads * hd, h)  # k, v
        linears = linears + _linear(width, h) + _linear(width, h) + _linear(h, width)  # gate, up, down
        linears = linears + _linear(self.per_layer_dim, h) + _linear(h, self.per_layer_dim)  # per-layer gate, proj
        # q_norm (+ k_norm when the layer owns KV) and 5 layer norms of width h. (Each layer also carries one
        # `layer_scalar`, a buffer in transformers: 35 numbers, left out so the count matches its parameters.)
        other = _params(hd * (2 if owns_kv else 1) + 5 * h)
        return linears, other

    def _vision_tower(self) -> ComponentSize:
        v = self.config.get("vision_config")
        if not v:
            return ComponentSize(0)
        h, inter, layers = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["num_hidden_layers"])
        heads, kv_heads, hd = int(v["num_attention_heads"]), int(v["num_key_value_heads"]), int(v["head_dim"])
        patch = _linear(h, VISION_CHANNELS * int(v["patch_size"]) ** 2) + _params(
            2 * int(v["position_embedding_size"]) * h
        )
        layer = (
            _linear(heads * hd, h)
            + _linear(kv_heads * hd, h)
            + _linear(kv_heads * hd, h)
            + _linear(h, heads * hd)
            + _linear(inter, h)
            + _linear(inter, h)
            + _linear(h, inter)
            + _params(2 * hd + 4 * h)  # q_norm, k_norm, four layer norms
        )
        total = patch
        for _ in range(layers):
            total = total + layer
        return total + _linear(self.hidden, h)  # embed_vision projection

    def _audio_tower(self) -> ComponentSize:
        a = self.config.get("audio_config")
        if not a:
            return ComponentSize(0)
        h, layers = int(a["hidden_size"]), int(a["num_hidden_layers"])
        c0, c1 = (int(c) for c in a["subsampling_conv_channels"])
        k2 = AUDIO_CONV_KERNEL_2D**2
        freq_after_subsampling = AUDIO_MEL_BINS // 4
        subsample = _params(c0 * k2 + c0 + c1 * c0 * k2 + c1) + _linear(h, c1 * freq_after_subsampling)
        ff = h * AUDIO_FF_MULTIPLIER
        feed_forward = _linear(ff, h) + _linear(h, ff) + _params(2 * h)
        attention = _linear(h, h) + _linear(h, h) + _linear(h, h) + _linear(h, h) + _linear(h, h)
        attention = attention + _params(AUDIO_ATTENTION_PER_DIM)
        lconv = _linear(2 * h, h) + _linear(h, h) + _params(h * int(a["conv_kernel_size"]) + 2 * h)
        layer = feed_forward + feed_forward + attention + lconv + _params(3 * h)
        total = subsample
        for _ in range(layers):
            total = total + layer
        out = int(a["output_proj_dims"])
        return total + _linear(out, h, bias=True) + _linear(self.hidden, out)  # output_proj, embed_audio

    @cached_property
    def components(self) -> dict[str, ComponentSize]:
        """Parameter counts by component (see the module docstring for what each holds)."""
        h, vocab = self.hidden, self.vocab_size
        per_layer_total = self.num_layers * self.per_layer_dim
        linears, other = ComponentSize(0), ComponentSize(0)
        for i in range(self.num_layers):
            lin, oth = self._decoder_layer(i)
            linears, other = linears + lin, other + oth
        vocab_per_layer = int(self.text.get("vocab_size_per_layer_input", vocab))
        return {
            "per_layer_embeddings": _params(vocab_per_layer * per_layer_total),
            "embed_tokens": _params(vocab * h),
            "decoder_linears": linears,
            "decoder_other": other,
            # per_layer_model_projection, per_layer_projection_norm, final norm
            "text_other": _linear(per_layer_total, h) + _params(self.per_layer_dim + h),
            "vision_tower": self._vision_tower(),
            "audio_tower": self._audio_tower(),
        }

    def weight_bytes(self, quantized: bool = True) -> dict[str, int]:
        """Bytes per component on the GPU: bf16, or W8A16 (decoder Linears int8 + a bf16 scale per channel).

        The W8A16 layout is the served checkpoint's: only the Linear layers inside the decoder layers are
        quantized; embeddings, norms, the per-layer projection and both towers stay bf16.
        """
        out = {}
        for name, size in self.components.items():
            if quantized and name == "decoder_linears":
                out[name] = (
                    size.linear_params * INT8 + size.out_channels * BF16 + size.linear_modules * WEIGHT_SHAPE_BYTES
                )
            else:
                out[name] = size.params * BF16
        return out
