"""gpu-check's pure parts: which profiles it runs, how it reads vLLM's log, when a plan holds; and every
measured run committed under docs/gpu-check/ checked against today's planner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.launcher.gpu import GPU
from deploy.launcher.gpu_check import CheckError, Target, choose_targets, compare, parse_log, predict, predicted_figures
from deploy.planner.budget import GiB, MiB
from deploy.planner.gpu_classes import load_classes
from deploy.planner.model import GemmaModel

REPO = Path(__file__).resolve().parents[2]
RESULTS = sorted((REPO / "docs" / "gpu-check").glob("*.json"))
CLASSES = load_classes()
MODEL = GemmaModel.load()


def test_targets_are_the_cards_own_profile_and_the_tightest_emulated() -> None:
    l4 = GPU(0, "NVIDIA L4", 23034 * MiB, 23000 * MiB, (8, 9))
    own, tight = choose_targets(l4, CLASSES)
    assert own == Target("gpu-24gb")
    assert tight.profile == "gpu-8gb" and tight.emulates_mib == 8188
    assert (
        tight.utilization == pytest.approx(0.87 * 8188 / 23034, abs=1e-4) and tight.utilization <= 0.87 * 8188 / 23034
    )
    # vLLM's budget on the L4 is then the 8 GB card's (ceil(total x utilization) <= 0.87 x 8188 MiB).
    assert predict(MODEL, l4, tight).requested_bytes <= 0.87 * 8188 * MiB
    mig = GPU(0, "NVIDIA A100-SXM4-80GB MIG 1g.10gb", 9728 * MiB, 9700 * MiB, (8, 0), mig_profile="1g.10gb")
    assert [t.profile for t in choose_targets(mig, CLASSES)] == ["gpu-10gb-ampere", "gpu-8gb-ampere"]
    rtx4060 = GPU(0, "NVIDIA GeForce RTX 4060", 8188 * MiB, 7800 * MiB, (8, 9))
    assert choose_targets(rtx4060, CLASSES) == [Target("gpu-8gb")]
    with pytest.raises(CheckError, match="more than this card's 8188 MiB"):
        choose_targets(rtx4060, CLASSES, ["gpu-10gb"])
    with pytest.raises(CheckError, match="not a GPU-class profile"):
        choose_targets(rtx4060, CLASSES, ["default"])


def test_parse_log_reads_vllms_lines() -> None:
    text = "\n".join(
        [
            "(EngineCore pid=1) INFO 12-07 12:00:01 [gpu_model_runner.py:4960] Model loading took 7.21 GiB memory "
            "and 12.3 seconds",
            "DEBUG [gpu_worker.py:461] Memory profiling takes 9.12 seconds. Total non KV cache memory: 8.95GiB; "
            "torch peak memory increase: 1.2GiB; non-torch forward increase memory: 0.31GiB; weights memory: 7.21GiB.",
            "INFO [gpu_model_runner.py:6143] Estimated CUDA graph memory: 0.2 GiB total",
            "INFO [gpu_worker.py:463] Available KV cache memory: 12.1 GiB",
            "INFO [kv_cache_utils.py:1710] GPU KV cache size: 3,700,000 tokens",
            "INFO [kv_cache_utils.py:1712] Maximum concurrency for 32,768 tokens per request: 112.91x",
        ]
    )
    got = parse_log(text)
    assert got["model_loading_bytes"] == round(7.21 * GiB) and got["available_kv_bytes"] == round(12.1 * GiB)
    assert got["torch_peak_bytes"] == round(1.2 * GiB) and got["non_torch_bytes"] == round(0.31 * GiB)
    assert got["cuda_graph_bytes"] == round(0.2 * GiB) and got["non_kv_bytes"] == round(8.95 * GiB)
    assert got["kv_cache_tokens"] == 3_700_000 and got["max_concurrency"] == 112.91
    assert parse_log("nothing logged") == {}


def test_parse_log_reads_a_real_vllm_log() -> None:
    """Lines the real vLLM 0.21.0 engine printed (CPU build, `make gpu-check-cpu`): its CPU worker logs no GPU
    memory profile, so only the KV figures are there, and they are read."""
    got = parse_log((REPO / "tests" / "fixtures" / "vllm_logs" / "cpu-tiny-gemma4.log").read_text())
    assert got == {"kv_cache_tokens": 15_675_063, "max_concurrency": 478.36}


def test_compare_holds_within_the_margin_and_fails_outside() -> None:
    p = predicted_figures(predict(MODEL, GPU(0, "NVIDIA L4", 23034 * MiB, 23000 * MiB, (8, 9)), Target("gpu-24gb")))
    near = {"available_kv_bytes": p["available_kv_bytes"] - 150 * MiB, "max_concurrency": p["promised_sequences"]}
    assert compare(p, near, 23034 * MiB) == []
    far = {"available_kv_bytes": p["available_kv_bytes"] - 250 * MiB, "max_concurrency": 200.0}
    assert "more than the 192 MiB safety margin" in compare(p, far, 23034 * MiB)[0]
    short = {"available_kv_bytes": p["available_kv_bytes"], "max_concurrency": p["promised_sequences"] - 0.5}
    assert "the plan promised" in compare(p, short, 23034 * MiB)[0]
    assert compare(p, {"max_concurrency": 1.0}, 23034 * MiB) == ["vLLM's log has no KV cache figures (did it start?)"]


def test_committed_gpu_runs_agree_with_todays_planner() -> None:
    """Each real gpu-check result: re-plan what ran on the card that ran it; the measured KV budget is within the
    safety margin of the prediction and the promised sequences were there. (None committed yet.)"""
    for path in RESULTS:
        doc = json.loads(path.read_text())
        g = doc["gpu"]
        major, minor = (int(x) for x in g["compute_capability"].split("."))
        mig = g.get("mig_profile") or ""
        gpu = GPU(0, g["name"], g["total_bytes"], g["total_bytes"], (major, minor), mig_profile=mig)
        assert doc["runs"], f"{path.name}: no run"
        for run in doc["runs"]:
            target = Target(run["profile"], run["gpu_memory_utilization"] if run["emulates_class_mib"] else None)
            predicted = predicted_figures(predict(MODEL, gpu, target))
            assert compare(predicted, run["measured"], gpu.total_bytes) == [], f"{path.name}: {run['profile']}"


def test_the_verification_table_says_whether_the_plan_was_measured() -> None:
    table = (REPO / "docs/verification.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| the fit planner's overhead constants"))
    assert ("not yet verified" in row) == (not RESULTS), (
        "update docs/verification.md's row when docs/gpu-check/ gains results"
    )
