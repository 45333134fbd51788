"""Our metric code gives the same numbers as vLLM 0.21.0's own ``calculate_metrics`` for the same samples.

The samples go to vLLM's function (``vllm/benchmarks/serve.py``) in the contract venv; every headline
number (throughputs, goodput, mean/median/percentiles of TTFT, TPOT, ITL, E2EL, peak output rate) must match.
"""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from deploy.bench.metrics import RequestSample, Slo, compute_metrics

pytestmark = pytest.mark.contract

_VLLM_SIDE = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput
from vllm.benchmarks.serve import calculate_metrics
data = json.load(sys.stdin)
outputs = []
for s in data["samples"]:
    o = RequestFuncOutput(success=s["success"], latency=s["latency"], output_tokens=s["output_tokens"], ttft=s["ttft"],
                          itl=list(s["itl"]), prompt_len=s["prompt_tokens"], start_time=s["start"])
    outputs.append(o)
metrics, _ = calculate_metrics([None] * len(outputs), outputs, data["duration"], None, [50.0, 90.0, 99.0],
                               {"ttft": 300.0, "tpot": 60.0})
out = {k: v for k, v in vars(metrics).items() if isinstance(v, (int, float))}
for name in ("ttft", "tpot", "itl", "e2el"):
    out[name + "_pcts"] = {str(p): v for p, v in getattr(metrics, "percentiles_" + name + "_ms")}
print(json.dumps(out))
"""


def make_samples(seed: int) -> list[RequestSample]:
    rng = random.Random(seed)
    samples = []
    for i in range(40):
        if i % 13 == 5:
            samples.append(RequestSample(index=i, success=False, error="HTTP 500"))
            continue
        out = rng.choice([1, 2, 5, 17, 64])
        ttft = rng.uniform(0.05, 0.6)
        itl = [rng.uniform(0.005, 0.09) for _ in range(out - 1)]
        samples.append(
            RequestSample(
                index=i,
                success=True,
                start=rng.uniform(0, 5),
                ttft=ttft,
                itl=itl,
                latency=ttft + sum(itl) + rng.uniform(0, 0.002),
                prompt_tokens=rng.randint(10, 5000),
                output_tokens=out,
            )
        )
    return samples


@pytest.mark.parametrize("seed", [1])
def test_metrics_match_vllm_calculate_metrics(vllm_python: str, seed: int) -> None:
    samples = make_samples(seed)
    duration = 7.5
    ours = compute_metrics(samples, duration, slo=Slo(ttft_ms=300.0, tpot_ms=60.0))
    payload = json.dumps({"samples": [s.to_json() for s in samples], "duration": duration})
    proc = subprocess.run(
        [vllm_python, "-c", _VLLM_SIDE], input=payload, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ours["completed"] == theirs["completed"] and ours["failed"] == theirs["failed"]
    for ours_key, their_key in [
        ("request_throughput", "request_throughput"),
        ("request_goodput", "request_goodput"),
        ("output_throughput", "output_throughput"),
        ("total_token_throughput", "total_token_throughput"),
        ("max_output_tokens_per_s", "max_output_tokens_per_s"),
        ("max_concurrent_requests", "max_concurrent_requests"),
    ]:
        assert ours[ours_key] == pytest.approx(theirs[their_key], rel=1e-9), ours_key
    for name in ("ttft", "tpot", "itl", "e2el"):
        assert ours[f"{name}_ms"]["mean"] == pytest.approx(theirs[f"mean_{name}_ms"], rel=1e-9), name
        assert ours[f"{name}_ms"]["median"] == pytest.approx(theirs[f"median_{name}_ms"], rel=1e-9), name
        assert ours[f"{name}_ms"]["std"] == pytest.approx(theirs[f"std_{name}_ms"], rel=1e-9), name
        for p in ("50.0", "90.0", "99.0"):
            key = "p" + p.removesuffix(".0")
            assert ours[f"{name}_ms"][key] == pytest.approx(theirs[f"{name}_pcts"][p], rel=1e-9), (name, p)
