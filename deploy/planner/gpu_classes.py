"""The GPU classes the profiles are generated for (deploy/data/gpu_classes.yaml), and compute capabilities."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.planner.budget import DEFAULT_PCIE, PCIeLink

MiB = 1024**2
GPU_CLASSES_PATH = Path(__file__).resolve().parents[1] / "data" / "gpu_classes.yaml"


def parse_compute_capability(text: str) -> tuple[int, int]:
    """``"8.9"`` -> ``(8, 9)``; raises ValueError on anything else."""
    major, _, minor = str(text).strip().partition(".")
    if not major.isdigit() or not minor.isdigit():
        raise ValueError(f"compute capability {text!r} is not MAJOR.MINOR (for example 8.9)")
    return int(major), int(minor)


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

    def pcie(self, variant: str) -> PCIeLink:
        """The slowest PCIe link among the variant's example cards (``pcie: "4.0 x8"``; default 4.0 x16)."""
        text = str(self.variants[variant].get("pcie", "")).strip()
        if not text:
            return DEFAULT_PCIE
        gen, _, width = text.partition(" x")
        return PCIeLink(int(float(gen)), int(width))


def load_classes(path: Path = GPU_CLASSES_PATH) -> list[GPUClass]:
    """The GPU classes, smallest first."""
    data = yaml.safe_load(Path(path).read_text())
    classes = [
        GPUClass(c["name"], int(c["memory_mib"]), {"ada": c["ada"], "ampere": c["ampere"]}) for c in data["classes"]
    ]
    return sorted(classes, key=lambda c: c.memory_mib)
