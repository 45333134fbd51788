"""The launcher on the fixture set of nvidia-smi answers (tests/fixtures/nvidia_smi): the right profile, or a
clear refusal, for each card and situation issue 18 names.

Each case puts a fake nvidia-smi answering from one fixture folder on PATH and runs `deploy launch --dry-run`
in-process (the launcher's own `run`, so detection, MIG/WSL2 handling, planning and the printed plan are all
under test), then reads what it printed and the resolved config it wrote.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from deploy.launcher.cli import run
from deploy.launcher.gpu import GPU, in_wsl, parse_mig_list, parse_mig_memory
from deploy.launcher.resolve import LaunchError, resolve
from deploy.planner.budget import GiB, MiB
from tests.fixtures import fake_gpu


@dataclass(frozen=True)
class Case:
    """A fixture folder, the environment, and what the launcher must do."""

    scenario: str
    profile: str | None = None  # the `-> NAME` the launcher chooses; None when it must refuse
    kv: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    code: int = 0
    says: tuple[str, ...] = ()  # fragments of stdout (success) or stderr (refusal)
    config: dict[str, object] = field(default_factory=dict)  # keys the resolved config must have


CASES = [
    Case("rtx-4060", "gpu-8gb", "fp8", says=("over PCIe 4.0 x8", "tokens/s per stream")),
    Case("rtx-3070", "gpu-8gb-ampere", "auto", says=("over PCIe 4.0 x16",)),
    Case("rtx-3080-10gb", "gpu-10gb-ampere", "auto"),
    Case("rtx-4090", "gpu-24gb", "fp8", says=("no CPU offload",)),
    Case("l4", "gpu-24gb", "fp8"),
    Case("a10g", "gpu-24gb-ampere", "auto"),
    Case("a100-40gb", "gpu-24gb-ampere", "auto"),
    Case("a100-80gb", "gpu-80gb-ampere", "auto", config={"max-num-seqs": 256, "max-num-batched-tokens": 2048}),
    Case("h100", "gpu-80gb", "fp8", config={"max-num-seqs": 1024, "max-num-batched-tokens": 8192}),
    Case("mig-1g.10gb", "gpu-10gb-ampere", "auto", says=("MIG slice 1g.10gb", "of 9.50 GiB")),
    Case("mig-3g.40gb", "gpu-24gb-ampere", "auto", says=("MIG slice 3g.40gb", "of 39.25 GiB")),
    Case("wsl2-rtx-4060", env={"GEMMA4_WSL": "1"}, code=1, says=("WSL2", "pin", "llama.cpp")),
    Case(
        "wsl2-rtx-3080-10gb",
        "gpu-10gb-ampere (planned for 10240 MiB)",
        "auto",
        env={"GEMMA4_WSL": "1"},
        says=("under WSL2", "planned without offload", "no CPU offload"),
    ),
    Case("wsl2-rtx-4060", env={"GEMMA4_WSL": "1", "GEMMA4_PROFILE": "gpu-8gb"}, code=1, says=("offloads 0.75 GiB",)),
    Case("two-gpus", "gpu-24gb", "fp8", says=("CUDA_DEVICE_ORDER=PCI_BUS_ID",)),
    Case("two-gpus", "gpu-8gb-ampere", "auto", env={"CUDA_VISIBLE_DEVICES": "1"}),
    Case("two-gpus", env={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, code=2, says=("cannot tell which card",)),
    Case("no-driver", code=2, says=("couldn't communicate with the NVIDIA driver",)),
    Case("no-devices", code=2, says=("No devices were found",)),
]


def _id(case: Case) -> str:
    return case.scenario + "".join(f"-{k}={v}" for k, v in case.env.items())


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_launcher_on_the_fixture_set(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    fake_gpu.install_scenario(bin_dir, case.scenario)
    for name in ("GEMMA4_PROFILE", "GEMMA4_EXTRA_ARGS", "GEMMA4_WSL", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("GEMMA4_WSL", "0")  # this test machine's own uname must not decide
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    code = run(argparse.Namespace(dry_run=True, config_dir=tmp_path / "resolved"))
    out, err = capsys.readouterr()
    assert code == case.code, err + out
    resolved_file = tmp_path / "resolved" / "resolved.yaml"
    if case.code:
        assert not resolved_file.exists()
        for fragment in case.says:
            assert fragment in err
        return
    assert f"-> {case.profile} " in out or f"profile {case.profile}" in resolved_file.read_text()
    config = yaml.safe_load(resolved_file.read_text())
    assert config["kv-cache-dtype"] == case.kv
    assert config.get("limit-mm-per-prompt", {}).get("video") == 0 or config.get("language-model-only") is True
    for fragment in case.says:
        assert fragment in out
    for key, value in case.config.items():
        assert config[key] == value
    assert "safety margin" in out and "decode" in out


def test_every_fixture_folder_is_used() -> None:
    folders = {p.name for p in fake_gpu.SCENARIOS_DIR.iterdir() if p.is_dir()}
    assert folders == {case.scenario for case in CASES}


def test_mig_parsers_read_the_slice_not_the_parent() -> None:
    folder = fake_gpu.SCENARIOS_DIR / "mig-1g.10gb"
    listed = parse_mig_list((folder / "list.txt").read_text())
    assert [(i, profile) for i, profile, _ in listed[0]] == [(0, "1g.10gb")]
    assert listed[0][0][2].startswith("MIG-")
    memory = parse_mig_memory((folder / "q-0.txt").read_text())
    assert memory == {0: (9728 * MiB, (9728 - 13) * MiB)}  # the GPU's own 81920 MiB FB section is not read
    assert parse_mig_memory("GPU 00000000:07:00.0\n    MIG Devices                 : None\n") == {}


def test_wsl_detection_is_vllms_uname_test() -> None:
    assert in_wsl("Linux host 5.15.167.4-microsoft-standard-WSL2 #1 SMP x86_64 x86_64")
    assert not in_wsl("Linux host 6.8.0-49-generic #49-Ubuntu SMP x86_64 x86_64")


def test_wsl_extra_offload_is_refused_and_auto_drops_offload() -> None:
    ampere_10gb = GPU(0, "NVIDIA GeForce RTX 3080", 10240 * MiB, 9900 * MiB, (8, 6))
    with pytest.raises(LaunchError, match="--cpu-offload-gb 1") as e:
        resolve({"GEMMA4_EXTRA_ARGS": "--cpu-offload-gb 1"}, ampere_10gb, wsl=True)
    assert e.value.code == 1
    native = resolve({}, ampere_10gb, wsl=False)
    wsl = resolve({}, ampere_10gb, wsl=True)
    assert native.config.get("cpu-offload-gb", 0) > 0 and "cpu-offload-gb" not in wsl.config
    assert wsl.plan is not None and wsl.plan.fits and wsl.plan.total_bytes == 10240 * MiB


def test_mig_slice_is_planned_for_its_own_memory() -> None:
    """The 80 GB parent would have picked gpu-80gb-ampere: the slice's 9.5 GiB picks the 10 GB class."""
    slice_ = GPU(0, "NVIDIA A100-SXM4-80GB MIG 1g.10gb", 9728 * MiB, 9715 * MiB, (8, 0), mig_profile="1g.10gb")
    parent = GPU(0, "NVIDIA A100-SXM4-80GB", 81920 * MiB, 81000 * MiB, (8, 0))
    assert resolve({}, parent, wsl=False).profile == "gpu-80gb-ampere"
    r = resolve({}, slice_, wsl=False)
    assert r.profile == "gpu-10gb-ampere" and r.plan is not None and r.plan.total_bytes < 10 * GiB
