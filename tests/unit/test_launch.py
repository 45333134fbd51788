"""The launcher on CPU: a fake nvidia-smi on PATH per GPU, `python -m deploy launch --dry-run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.launcher.cli import pick_gpu
from deploy.launcher.gpu import GPU, GPUError, detect, parse_query
from deploy.launcher.resolve import LaunchError, resolve
from deploy.profiles import DEFAULT_REVISION, MODEL_ID
from tests.fixtures import fake_gpu

REPO = Path(__file__).resolve().parents[2]


def launch(tmp_path: Path, card: str | None, used_mib: int = 300, **env: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    if card is not None:
        fake_gpu.install(bin_dir, fake_gpu.query_line(card, used_mib))
    else:
        bin_dir.mkdir(parents=True, exist_ok=True)
    environ = fake_gpu.env_with(bin_dir, GEMMA4_RESOLVED_DIR=str(tmp_path / "resolved"), PYTHONPATH=str(REPO), **env)
    if card is None:
        environ["PATH"] = str(bin_dir) + ":/usr/bin:/bin"  # no nvidia-smi anywhere
    return subprocess.run(
        [sys.executable, "-m", "deploy", "launch", "--dry-run"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def resolved(tmp_path: Path) -> dict:
    return yaml.safe_load((tmp_path / "resolved" / "resolved.yaml").read_text())


@pytest.mark.parametrize(
    ("card", "profile", "kv"),
    [
        ("8gb-ada", "gpu-8gb", "fp8"),
        ("10gb-ampere", "gpu-10gb-ampere", "auto"),
        ("24gb-ampere", "gpu-24gb-ampere", "auto"),
        ("80gb-hopper", "gpu-80gb", "fp8"),
    ],
)
def test_auto_picks_the_class_profile_and_kv_dtype(tmp_path: Path, card: str, profile: str, kv: str) -> None:
    proc = launch(tmp_path, card)
    assert proc.returncode == 0, proc.stderr
    assert f"-> {profile} " in proc.stdout
    config = resolved(tmp_path)
    assert config["kv-cache-dtype"] == kv
    assert config["model"] == MODEL_ID and config["revision"] == DEFAULT_REVISION
    exec_line = next(line for line in proc.stdout.splitlines() if line.startswith("exec: "))
    assert exec_line == f"exec: vllm serve --config {tmp_path / 'resolved' / 'resolved.yaml'}"
    assert "fit (modelled, not measured)" in proc.stdout


def test_8gb_ada_gets_cpu_offload_priced_for_its_link(tmp_path: Path) -> None:
    proc = launch(tmp_path, "8gb-ada")
    assert proc.returncode == 0, proc.stderr
    assert resolved(tmp_path)["cpu-offload-gb"] > 0
    assert "over PCIe 4.0 x8" in proc.stdout and "tokens/s per stream" in proc.stdout


def test_too_small_gpu_is_refused_naming_llama_cpp(tmp_path: Path) -> None:
    proc = launch(tmp_path, "6gb-ampere")
    assert proc.returncode == 1
    assert "llama.cpp" in proc.stderr and "smaller than" not in proc.stdout
    assert not (tmp_path / "resolved" / "resolved.yaml").exists()


def test_pre_ampere_gpu_is_refused(tmp_path: Path) -> None:
    proc = launch(tmp_path, "16gb-turing")
    assert proc.returncode == 1 and "compute capability 7.5" in proc.stderr


def test_extra_args_are_appended_after_the_config(tmp_path: Path) -> None:
    proc = launch(tmp_path, "24gb-ampere", GEMMA4_EXTRA_ARGS="--max-num-seqs 16 --enable-log-requests")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith("resolved.yaml --max-num-seqs 16 --enable-log-requests")


def test_forced_fp8_profile_on_ampere_is_corrected(tmp_path: Path) -> None:
    proc = launch(tmp_path, "24gb-ampere", GEMMA4_PROFILE="gpu-24gb")
    assert proc.returncode == 0, proc.stderr
    assert "kv-cache-dtype fp8 -> auto" in proc.stdout
    assert resolved(tmp_path)["kv-cache-dtype"] == "auto"


def test_explicit_fp8_override_on_ampere_is_refused(tmp_path: Path) -> None:
    proc = launch(tmp_path, "24gb-ampere", GEMMA4_EXTRA_ARGS="--kv-cache-dtype fp8")
    assert proc.returncode == 2 and "remove it from GEMMA4_EXTRA_ARGS" in proc.stderr


def test_forced_profile_that_does_not_fit_says_what_to_use(tmp_path: Path) -> None:
    proc = launch(tmp_path, "8gb-ada", GEMMA4_PROFILE="default")
    assert proc.returncode == 1
    assert "does not fit NVIDIA GeForce RTX 4060" in proc.stderr and "--cpu-offload-gb" in proc.stderr


def test_busy_gpu_gets_exact_advice(tmp_path: Path) -> None:
    proc = launch(tmp_path, "24gb-ampere", used_mib=3000)
    assert proc.returncode == 1
    assert "already in use" in proc.stderr and "GEMMA4_EXTRA_ARGS='--gpu-memory-utilization 0." in proc.stderr


def test_auto_without_a_gpu_is_bad_input(tmp_path: Path) -> None:
    proc = launch(tmp_path, None)
    assert proc.returncode == 2 and "nvidia-smi not found" in proc.stderr


def test_forced_profile_without_a_gpu_warns_and_skips_the_fit(tmp_path: Path) -> None:
    proc = launch(tmp_path, None, GEMMA4_PROFILE="gpu-24gb", GEMMA4_MODEL="org/other", GEMMA4_REVISION="abc123")
    assert proc.returncode == 0, proc.stderr
    assert "fit and free-memory checks are skipped" in proc.stdout
    assert resolved(tmp_path)["model"] == "org/other" and resolved(tmp_path)["revision"] == "abc123"


def test_unknown_profile_and_bad_quoting_are_bad_input() -> None:
    gpu = GPU(0, "NVIDIA A10", 23028 * 2**20, 22000 * 2**20, (8, 6))
    with pytest.raises(LaunchError, match="unknown profile 'gpu-7gb'") as e:
        resolve({"GEMMA4_PROFILE": "gpu-7gb"}, gpu)
    assert e.value.code == 2
    with pytest.raises(LaunchError, match="shell quoting"):
        resolve({"GEMMA4_EXTRA_ARGS": "--served-model-name 'x"}, gpu)


def test_card_between_classes_gets_the_lower_class() -> None:
    gpu = GPU(0, "NVIDIA A100-SXM4-40GB", 40960 * 2**20, 40000 * 2**20, (8, 0))
    assert resolve({}, gpu).profile == "gpu-24gb-ampere"


def test_nvidia_smi_output_parsing(tmp_path: Path) -> None:
    gpus = parse_query(
        "0, GPU-1, NVIDIA L4, 23034, 22700, 8.9, 4, 16, [N/A]\n1, GPU-2, NVIDIA A10, 23028, 100, 8.6, 3, 8, [N/A]\n"
    )
    assert [g.cc for g in gpus] == ["8.9", "8.6"] and gpus[1].free_bytes == 100 * 2**20
    assert str(gpus[1].link) == "PCIe 3.0 x8" and gpus[0].uuid == "GPU-1"
    with pytest.raises(GPUError, match="compute_cap"):
        parse_query("0, GPU-1, Old GPU, 8192, 8000, [N/A], 3, 16, [N/A]")
    with pytest.raises(GPUError, match="not a number of MiB"):
        parse_query("0, GPU-1, NVIDIA L4, [N/A], [N/A], 8.9, 4, 16, [N/A]")  # only a MIG parent may hide its memory
    assert parse_query("0, GPU-1, NVIDIA L4, 23034, 22700, 8.9, [N/A], [N/A], [N/A]")[0].pcie is None
    fake_gpu.install(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the driver", exit_code=9)
    with pytest.raises(GPUError, match="exit 9"):
        detect(str(tmp_path / "nvidia-smi"))


def test_launch_execs_vllm_with_the_resolved_config_and_the_secrets(tmp_path: Path) -> None:
    """Without --dry-run the launcher replaces itself with `vllm serve`; a fake vllm records what it got."""
    bin_dir = tmp_path / "bin"
    fake_gpu.install(bin_dir, fake_gpu.query_line("24gb-ampere"))
    record = tmp_path / "vllm-argv"
    (bin_dir / "vllm").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nprintf "%s" "${{VLLM_API_KEY:-unset}}" > {record}.key\n'
    )
    (bin_dir / "vllm").chmod(0o755)
    key_file = tmp_path / "api-key"
    key_file.write_text("not-a-real-key\n")
    environ = fake_gpu.env_with(
        bin_dir,
        GEMMA4_RESOLVED_DIR=str(tmp_path / "resolved"),
        GEMMA4_EXTRA_ARGS="--max-num-seqs 8",
        VLLM_API_KEY_FILE=str(key_file),
        PYTHONPATH=str(REPO),
    )
    environ.pop("VLLM_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "launch"], capture_output=True, text=True, env=environ, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    config = tmp_path / "resolved" / "resolved.yaml"
    assert record.read_text().split() == ["serve", "--config", str(config), "--max-num-seqs", "8"]
    assert (tmp_path / "vllm-argv.key").read_text() == "not-a-real-key"
    assert "not-a-real-key" not in proc.stdout + proc.stderr + config.read_text()


def test_pick_gpu_follows_cuda_visible_devices() -> None:
    gpus = parse_query(
        "0, GPU-aa, NVIDIA RTX A4000, 16376, 16000, 8.6, 4, 16, [N/A]\n"
        "1, GPU-bb, NVIDIA L4, 23034, 22700, 8.9, 4, 16, [N/A]\n"
    )
    assert pick_gpu(gpus, {}).name == "NVIDIA RTX A4000"
    assert pick_gpu(gpus, {"CUDA_VISIBLE_DEVICES": "1"}).name == "NVIDIA L4"
    assert pick_gpu(gpus, {"CUDA_VISIBLE_DEVICES": "GPU-bb,GPU-aa"}).name == "NVIDIA L4"
    assert pick_gpu(gpus, {"CUDA_VISIBLE_DEVICES": "GPU-unknown"}).name == "NVIDIA RTX A4000"


def test_the_pods_port_replaces_the_profiles(tmp_path: Path) -> None:
    """Helm's serving.port arrives as GEMMA4_LISTEN_PORT: vLLM must listen where the probes and Service look."""
    proc = launch(tmp_path, None, GEMMA4_PROFILE="gpu-24gb", GEMMA4_LISTEN_PORT="9000")
    assert proc.returncode == 0, proc.stderr
    assert resolved(tmp_path)["port"] == 9000 and "port 9000 (GEMMA4_LISTEN_PORT)" in proc.stdout
    # Unset keeps the profile's own port.
    assert resolve({"GEMMA4_PROFILE": "gpu-24gb"}, None).config["port"] == 8000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GEMMA4_LISTEN_PORT": "http"}, "GEMMA4_LISTEN_PORT='http' is not a port number"),
        ({"GEMMA4_LISTEN_PORT": "70000"}, "is not a port number"),
        ({"GEMMA4_LISTEN_PORT": "9000", "GEMMA4_EXTRA_ARGS": "--port 8000"}, "remove --port from the extra"),
        ({"GEMMA4_LISTEN_PORT": "9000", "GEMMA4_EXTRA_ARGS": "--port=8001"}, "sets --port 8001"),
    ],
)
def test_a_bad_or_contradicted_listen_port_is_bad_input(env: dict[str, str], message: str) -> None:
    with pytest.raises(LaunchError, match=message) as e:
        resolve({"GEMMA4_PROFILE": "gpu-24gb", **env}, None)
    assert e.value.code == 2


def test_compose_shutdown_timeout_reaches_vllm_and_a_bad_one_is_bad_input() -> None:
    """compose's GEMMA4_SHUTDOWN_TIMEOUT becomes vLLM's --shutdown-timeout (drain on `docker stop`); unset, none."""
    config = resolve({"GEMMA4_PROFILE": "gpu-24gb", "GEMMA4_SHUTDOWN_TIMEOUT": "60"}, None).config
    assert config["shutdown-timeout"] == 60
    assert "shutdown-timeout" not in resolve({"GEMMA4_PROFILE": "gpu-24gb"}, None).config
    for env, message in [
        ({"GEMMA4_SHUTDOWN_TIMEOUT": "1m"}, "GEMMA4_SHUTDOWN_TIMEOUT='1m' is not a whole number"),
        ({"GEMMA4_SHUTDOWN_TIMEOUT": "60", "GEMMA4_EXTRA_ARGS": "--shutdown-timeout 5"}, "sets --shutdown-timeout 5"),
    ]:
        with pytest.raises(LaunchError, match=message) as e:
            resolve({"GEMMA4_PROFILE": "gpu-24gb", **env}, None)
        assert e.value.code == 2


def test_the_probes_default_url_follows_the_listen_port() -> None:
    """The image's HEALTHCHECK runs `deploy probe` with the container's environment and no --url."""
    code = "from deploy.launcher.probe import DEFAULT_URL; print(DEFAULT_URL)"
    run = lambda **env: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(REPO), **env}, check=True
    ).stdout.strip()
    assert run() == "http://127.0.0.1:8000"
    assert run(GEMMA4_LISTEN_PORT="9000") == "http://127.0.0.1:9000"
