"""`make gpu-check` (deploy/launcher/gpu_check.py) on a fake GPU: a fake nvidia-smi (an L4 from the fixture set) and a
fake `vllm` that logs vLLM 0.21.0's memory lines and serves the OpenAI stub, so the whole run is real except the
engine: the launcher, the emulation of a smaller class, the log parsing, the smoke suite, the bench, the JSON,
and stopping what it started. A real GPU run has not happened (no GPU here): docs/fit.md says how to do it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.launcher.gpu import GPU
from deploy.launcher.gpu_check import Target, choose_targets, predict, predicted_figures
from deploy.planner.budget import GiB, MiB
from deploy.planner.gpu_classes import load_classes
from deploy.planner.model import GemmaModel
from tests.fixtures import fake_gpu, fake_vllm

REPO = Path(__file__).resolve().parents[2]
L4 = GPU(0, "NVIDIA L4", 23034 * MiB, 23033 * MiB, (8, 9))


def vllm_log(available_kv: int, concurrency: float, tokens: int, model_loading: float = 7.21) -> str:
    """Start-up lines in vLLM 0.21.0's own format (the real ones are in tests/fixtures/vllm_logs/)."""
    return "\n".join(
        [
            f"INFO 12-07 12:00:01 [gpu_model_runner.py:4960] Model loading took {model_loading} GiB memory and "
            "12.345678 seconds",
            "DEBUG 12-07 12:00:30 [gpu_worker.py:461] Memory profiling takes 9.12 seconds. Total non KV cache "
            "memory: 8.95GiB; torch peak memory increase: 1.2GiB; non-torch forward increase memory: 0.31GiB; "
            "weights memory: 7.21GiB.",
            "INFO 12-07 12:00:40 [gpu_model_runner.py:6143] Estimated CUDA graph memory: 0.2 GiB total",
            f"INFO 12-07 12:00:41 [gpu_worker.py:463] Available KV cache memory: {round(available_kv / GiB, 2)} GiB",
            f"INFO 12-07 12:00:42 [kv_cache_utils.py:1710] GPU KV cache size: {tokens:,} tokens",
            "INFO 12-07 12:00:42 [kv_cache_utils.py:1712] Maximum concurrency for 32,768 tokens per request: "
            f"{concurrency:.2f}x",
        ]
    )


def run_check(tmp_path: Path, *args: str, scenario: str | None = "l4", vllm: bool = True, **env: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if scenario is not None:
        folder = tmp_path / "gpu"
        folder.mkdir(exist_ok=True)
        for source in (fake_gpu.SCENARIOS_DIR / scenario).iterdir():
            (folder / source.name).write_text(source.read_text())
        (folder / "used.csv").write_text("612\n")
        fake_gpu.install_scenario(bin_dir, folder)
    if vllm:
        fake_vllm.install(bin_dir)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GEMMA4_", "CUDA_", "FAKE_VLLM"))}
    environ.update(PATH=f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin", PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [str(REPO / "scripts" / "gpu-check.sh"), "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        env={**environ, "GPU_CHECK_PYTHON": sys.executable},
        timeout=240,
        check=False,
    )


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_fake_gpu_run_measures_each_profile_against_its_plan(tmp_path: Path) -> None:
    model = GemmaModel.load()
    own = Target("gpu-24gb")
    logs = tmp_path / "logs"
    logs.mkdir()
    # gpu-24gb: vLLM lands 100 MiB under the prediction (inside the margin): the plan holds.
    p = predicted_figures(predict(model, L4, own))
    (logs / "gpu-24gb.log").write_text(
        vllm_log(p["available_kv_bytes"] - 100 * MiB, p["max_concurrency"] - 1, p["kv_cache_tokens"])
    )
    # gpu-8gb, emulated at its 8188 MiB class: 300 MiB short and fewer sequences than promised: it fails.
    tight = choose_targets(L4, load_classes())[1]
    q = predicted_figures(predict(model, L4, tight))
    (logs / "gpu-8gb.log").write_text(vllm_log(q["available_kv_bytes"] - 300 * MiB, 2.5, 40000))
    argv_file = tmp_path / "vllm-argv.json"
    proc = run_check(tmp_path, FAKE_VLLM_LOG=str(logs), FAKE_VLLM_ARGV=str(argv_file))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "out" / "gpu-check-nvidia-l4.json").read_text())
    assert doc["schema"] == "gemma4-serve/gpu-check/1" and doc["gpu"]["name"] == "NVIDIA L4"
    own_run, tight_run = doc["runs"]
    assert own_run["profile"] == "gpu-24gb" and own_run["holds"], own_run["problems"]
    assert own_run["measured"]["available_kv_bytes"] == pytest.approx(p["available_kv_bytes"] - 100 * MiB, abs=6 * MiB)
    assert own_run["measured"]["kv_cache_tokens"] == p["kv_cache_tokens"]
    assert own_run["measured"]["peak_bytes"] == 0  # the fake's memory.used never moves from its 612 MiB baseline
    assert own_run["smoke"]["exit_code"] == 0 and not own_run["smoke"]["text_only"]
    assert [c["batch"] for c in own_run["bench"]["cells"]] == [1, 4]
    # The emulated class: utilization scaled to the 8 GB card's budget, image checks left out (text-only plan).
    assert tight_run["profile"] == "gpu-8gb" and tight_run["emulates_class_mib"] == 8188
    assert tight_run["gpu_memory_utilization"] == tight.utilization < 0.87
    assert tight_run["predicted"]["requested_bytes"] <= 0.87 * 8188 * MiB
    assert tight_run["smoke"]["text_only"] and tight_run["smoke"]["exit_code"] == 0
    assert not tight_run["holds"] and any("safety margin" in p for p in tight_run["problems"])
    assert any("promised" in p for p in tight_run["problems"])
    argv = json.loads(argv_file.read_text())  # the last start: the emulated profile, through the launcher
    assert argv[:2] == ["serve", "--config"] and "--gpu-memory-utilization" in argv
    assert "gpu-24gb: holds" in proc.stdout and "gpu-8gb: FAILS" in proc.stdout
    for run in doc["runs"]:
        assert "Available KV cache memory" in (tmp_path / "out" / f"{run['profile']}.vllm.log").read_text()
    assert port_closed(int(argv[argv.index("--port") + 1]))  # the server it started is gone


def test_a_server_that_never_starts_is_a_failed_plan(tmp_path: Path) -> None:
    proc = run_check(
        tmp_path, "--profiles", "gpu-24gb", FAKE_VLLM_EXIT="ValueError: Free memory on device (1.0/22.5 GiB)"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = json.loads((tmp_path / "out" / "gpu-check-nvidia-l4.json").read_text())["runs"][0]
    assert run["measured"]["ready_s"] is None
    assert "did not become healthy" in run["problems"][0] and "Free memory on device" in run["problems"][0]


@pytest.mark.parametrize("scenario", [None, "no-driver"])
def test_no_gpu_fails_cleanly(tmp_path: Path, scenario: str | None) -> None:
    proc = run_check(tmp_path, scenario=scenario)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.startswith("gpu-check: no GPU to check:")
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_missing_vllm_or_a_profile_it_cannot_host_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_check(tmp_path, vllm=False)
    assert proc.returncode == 2 and "no `vllm` command on PATH" in proc.stderr
    proc = run_check(tmp_path, "--profiles", "gpu-48gb")
    assert proc.returncode == 2 and "more than this card's 23034 MiB" in proc.stderr
