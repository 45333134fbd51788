"""The planner's inputs through vLLM 0.21.0's own code (runs in the vLLM venv; imports nothing from ``deploy``).

    $VLLM_PYTHON tests/contract/vllm_budget.py OUT.json < cases.json

Input on stdin (JSON), answers written to OUT.json:

- ``kv``: ``{"layers": [{"sliding", "head_dim", "num_kv_heads"}, ...], "sliding_window": int, "cases": [...]}``,
  each case ``{"kv_dtype", "max_model_len", "max_num_batched_tokens", "budget", "block_size"}``. Output ``kv``:
  per case the bytes vLLM's hybrid KV manager reserves for one ``max_model_len`` request (``get_kv_cache_groups`` +
  ``_max_memory_usage_bytes_from_groups``) and the "GPU KV cache size" tokens it would log for ``budget`` bytes
  (``get_kv_cache_config_from_groups`` + ``get_max_concurrency_for_kv_cache_config``).
- ``mm``: ``{"checkpoint": DIR, "cases": {name: engine args}}``. The harness first writes a tiny Gemma 4 into
  DIR (tests/fixtures/tiny_gemma4.py, with this venv's transformers) with the real E2B's 280-token image default
  and 32k positions. For each case it builds vLLM's config with ``EngineArgs(...).create_engine_config()``,
  asks ``MultiModalBudget`` (what ``profile_run`` uses) for the encoder's dummy batch, and builds the model on
  the meta device (``initialize_model``) to see which towers exist and how big the per-layer-embedding
  staging buffer is. Output ``mm``: per case the limits, the towers built, the dummy modality, its items and
  tokens per item, and the staging buffer's shape.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
REPO = Path(__file__).resolve().parents[2]


def kv_results(data: dict) -> list[dict]:
    """Bytes per request and logged KV tokens, per case."""
    import torch
    from vllm.v1.core import kv_cache_utils as kvu
    from vllm.v1.kv_cache_interface import FullAttentionSpec, SlidingWindowSpec

    out = []
    for case in data["cases"]:
        dtype = torch.float8_e4m3fn if case["kv_dtype"] == "fp8" else torch.bfloat16
        specs = {}
        for i, layer in enumerate(data["layers"]):
            common = {
                "block_size": case.get("block_size", 16),
                "num_kv_heads": layer["num_kv_heads"],
                "head_size": layer["head_dim"],
                "dtype": dtype,
            }
            if layer["sliding"]:
                specs[f"layers.{i}.attn"] = SlidingWindowSpec(sliding_window=data["sliding_window"], **common)
            else:
                specs[f"layers.{i}.attn"] = FullAttentionSpec(**common)
        config = SimpleNamespace(
            model_config=SimpleNamespace(max_model_len=case["max_model_len"]),
            scheduler_config=SimpleNamespace(
                max_num_batched_tokens=case["max_num_batched_tokens"], disable_hybrid_kv_cache_manager=False
            ),
            parallel_config=SimpleNamespace(decode_context_parallel_size=1, prefill_context_parallel_size=1),
            cache_config=SimpleNamespace(num_gpu_blocks_override=None),
        )
        groups = kvu.get_kv_cache_groups(config, specs)
        per_request = kvu._max_memory_usage_bytes_from_groups(config, groups)
        kv_config = kvu.get_kv_cache_config_from_groups(config, groups, case["budget"])
        concurrency = kvu.get_max_concurrency_for_kv_cache_config(config, kv_config)
        out.append(
            {
                "bytes_per_request": per_request,
                "kv_cache_tokens": int(concurrency * case["max_model_len"]),
                "groups": len(groups),
            }
        )
    return out


def build_checkpoint(dest: Path, image_tokens: int = 280) -> None:
    """The tiny Gemma 4 with the two fields vLLM needs and the fixture leaves out: 32k positions and the image
    default (280 like the real E2B for budget questions; a server must use the tiny processor's 70)."""
    sys.path.insert(0, str(REPO))
    from tests.fixtures.tiny_gemma4 import build_tiny_gemma4

    build_tiny_gemma4(dest)
    path = dest / "config.json"
    config = json.loads(path.read_text())
    config["vision_config"]["default_output_length"] = image_tokens
    config["text_config"]["max_position_embeddings"] = 32768
    path.write_text(json.dumps(config, indent=2))


def mm_results(data: dict) -> dict[str, dict]:
    """What vLLM builds and profiles for each case's multimodal settings."""
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.encoder_budget import MultiModalBudget
    from vllm.utils.torch_utils import set_default_torch_dtype

    checkpoint = Path(data["checkpoint"])
    build_checkpoint(checkpoint)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = EngineArgs(model=str(checkpoint), max_model_len=32768).create_engine_config()
    with set_current_vllm_config(first):
        init_distributed_environment(
            world_size=1, rank=0, distributed_init_method=f"tcp://127.0.0.1:{port}", local_rank=0, backend="gloo"
        )
        initialize_model_parallel(1, 1)
    out = {}
    for name, engine_args in data["cases"].items():
        config = EngineArgs(model=str(checkpoint), **engine_args).create_engine_config()
        mm = config.model_config.multimodal_config
        budget = MultiModalBudget(config, MULTIMODAL_REGISTRY)
        dummy = budget.get_modality_with_max_tokens() if budget.mm_max_toks_per_item else None
        with set_current_vllm_config(config), set_default_torch_dtype(torch.bfloat16), torch.device("meta"):
            model = initialize_model(vllm_config=config)
        staging = getattr(model, "per_layer_embeddings", None)
        out[name] = {
            "limits": {m: mm.get_limit_per_prompt(m) for m in ("image", "video", "audio")},
            "vision_tower_built": type(model.vision_tower).__name__ != "StageMissingLayer",
            "tokens_per_item": dict(budget.mm_max_toks_per_item),
            "dummy_modality": dummy,
            "dummy_items": budget.mm_max_items_per_batch[dummy] if dummy else 0,
            "ple_staging_shape": list(staging.shape) if staging is not None else None,
            "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
            "max_num_seqs": config.scheduler_config.max_num_seqs,
        }
        del model
    return out


def main() -> int:
    """Read the cases; write vLLM's answers as JSON to the file named on the command line."""
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform

    vllm.platforms._current_platform = CpuPlatform()
    data = json.load(sys.stdin)
    result = {}
    if "kv" in data:
        result["kv"] = kv_results(data["kv"])
    if "mm" in data:
        result["mm"] = mm_results(data["mm"])
    # A file, not stdout: vLLM's logger writes to stdout.
    Path(sys.argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
