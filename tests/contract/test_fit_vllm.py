"""The planner's KV-cache figures against vLLM 0.21.0's own kv_cache_utils (run in the vLLM venv)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deploy.fit import kv_bytes_per_sequence
from deploy.model import GemmaModel

pytestmark = pytest.mark.contract

HARNESS = Path(__file__).with_name("vllm_kv.py")
CASES = [
    ("fp8", 32768, 2048),
    ("fp8", 32768, 8192),
    ("auto", 32768, 2048),
    ("fp8", 131072, 2048),
    ("fp8", 32768, 512),
    ("auto", 16384, 1024),
    ("fp8", 300, 2048),  # shorter than the sliding window plus one chunk
]


def test_kv_bytes_per_sequence_match_vllm(vllm_python: str) -> None:
    model = GemmaModel.load()
    payload = {
        "layers": [
            {"sliding": layer.sliding, "head_dim": layer.head_dim, "num_kv_heads": layer.num_kv_heads}
            for layer in model.kv_layers
        ],
        "sliding_window": model.sliding_window,
        "cases": [{"kv_dtype": d, "max_model_len": n, "max_num_batched_tokens": t} for d, n, t in CASES],
    }
    proc = subprocess.run(
        [vllm_python, str(HARNESS)], input=json.dumps(payload), capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout)
    ours = [kv_bytes_per_sequence(model, d, n, t) for d, n, t in CASES]
    assert ours == theirs
    assert theirs[0] == 116_588_544  # the facts file's reference case
