"""What the GPU is: ``nvidia-smi`` query output -> a small value object; and the GPU classes the profiles serve."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MiB = 1024**2
GPU_CLASSES_PATH = Path(__file__).resolve().parent / "data" / "gpu_classes.yaml"
QUERY_FIELDS = "index,name,memory.total,memory.free,compute_cap"
NVIDIA_SMI_TIMEOUT_S = 20


class GPUError(RuntimeError):
    """No usable GPU information; the message says what to check."""


@dataclass(frozen=True)
class GPU:
    """One GPU as nvidia-smi reports it (memory in bytes)."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]

    @property
    def cc(self) -> str:
        """Compute capability as ``major.minor``."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def parse_compute_capability(text: str) -> tuple[int, int]:
    """``"8.9"`` -> ``(8, 9)``; raises ValueError on anything else."""
    major, _, minor = str(text).strip().partition(".")
    if not major.isdigit() or not minor.isdigit():
        raise ValueError(f"compute capability {text!r} is not MAJOR.MINOR (for example 8.9)")
    return int(major), int(minor)


def parse_query(output: str) -> list[GPU]:
    """Parse ``nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits`` output (MiB)."""
    gpus = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5:
            raise GPUError(f"unexpected nvidia-smi line {line!r}: expected {QUERY_FIELDS}")
        index, name, total, free, cc = fields
        try:
            gpus.append(
                GPU(int(index), name, int(float(total)) * MiB, int(float(free)) * MiB, parse_compute_capability(cc))
            )
        except ValueError as exc:
            raise GPUError(
                f"unexpected nvidia-smi line {line!r}: {exc} (a driver older than 510 lacks compute_cap)"
            ) from exc
    return gpus


def detect(nvidia_smi: str = "nvidia-smi") -> list[GPU]:
    """The GPUs visible to this process; raises :class:`GPUError` saying what to fix when there are none."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        raise GPUError(
            "nvidia-smi not found: no NVIDIA GPU is visible. In Docker, install the NVIDIA Container Toolkit and "
            "give the container a GPU (compose does, via deploy.resources.reservations.devices); or force a "
            "profile with GEMMA4_PROFILE=<name>"
        )
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GPUError(f"nvidia-smi did not answer within {NVIDIA_SMI_TIMEOUT_S} s: is the driver healthy?") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise GPUError(f"nvidia-smi failed (exit {proc.returncode}): {detail[-1] if detail else 'no output'}")
    gpus = parse_query(proc.stdout)
    if not gpus:
        raise GPUError("nvidia-smi lists no GPU: check that the container was given one (GEMMA4_GPU)")
    return gpus


@dataclass(frozen=True)
class GPUClass:
    """A memory class with its two profiles (Ada/Hopper fp8 and Ampere bf16 KV)."""

    name: str
    memory_mib: int
    variants: dict[str, dict[str, Any]]

    @property
    def total_bytes(self) -> int:
        """Memory the class's profiles are planned for."""
        return self.memory_mib * MiB

    def profile_name(self, ampere: bool) -> str:
        """``gpu-8gb`` or ``gpu-8gb-ampere``."""
        return f"gpu-{self.name}-ampere" if ampere else f"gpu-{self.name}"


def load_classes(path: Path = GPU_CLASSES_PATH) -> list[GPUClass]:
    """The GPU classes, smallest first."""
    data = yaml.safe_load(Path(path).read_text())
    classes = [
        GPUClass(c["name"], int(c["memory_mib"]), {"ada": c["ada"], "ampere": c["ampere"]}) for c in data["classes"]
    ]
    return sorted(classes, key=lambda c: c.memory_mib)


def class_for(gpu: GPU, classes: list[GPUClass]) -> GPUClass | None:
    """The largest class whose planned memory the GPU has; None when it is smaller than every class."""
    fitting = [c for c in classes if c.total_bytes <= gpu.total_bytes]
    return fitting[-1] if fitting else None
