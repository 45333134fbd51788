"""KV-cache bytes per request computed by vLLM 0.21.0's own ``kv_cache_utils`` (runs in the vLLM venv).

Input on stdin: ``{"layers": [{"sliding": bool, "head_dim": int, "num_kv_heads": int}, ...], "sliding_window": int,
"cases": [{"kv_dtype": "fp8"|"auto", "max_model_len": int, "max_num_batched_tokens": int}, ...]}``.
Output: a JSON list of byte counts, one per case: what vLLM's hybrid KV manager reserves for one request of
``max_model_len`` tokens (``_max_memory_usage_bytes_from_groups`` over the groups ``get_kv_cache_groups`` makes).
Imports nothing from this project, so the numbers are vLLM's, not a copy of the planner's formula.
"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")


def main() -> int:
    """Read the model's KV layers and the cases; print vLLM's byte counts."""
    import torch
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform

    vllm.platforms._current_platform = CpuPlatform()
    from vllm.v1.core import kv_cache_utils as kvu
    from vllm.v1.kv_cache_interface import FullAttentionSpec, SlidingWindowSpec

    data = json.load(sys.stdin)
    out = []
    for case in data["cases"]:
        dtype = torch.float8_e4m3fn if case["kv_dtype"] == "fp8" else torch.bfloat16
        specs = {}
        for i, layer in enumerate(data["layers"]):
            common = {
                "block_size": 16,
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
        )
        groups = kvu.get_kv_cache_groups(config, specs)
        out.append(kvu._max_memory_usage_bytes_from_groups(config, groups))
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
