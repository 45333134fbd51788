"""What the GPU is: ``nvidia-smi`` output -> small value objects (the classes live in deploy.planner.gpu_classes).

Three nvidia-smi calls, all plain text so a fake nvidia-smi can stand in for tests:

- ``--query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits``: every physical GPU, its memory, compute
  capability, PCIe link (``pcie.link.gen.max``, ``pcie.link.width.max``: the fastest link GPU and slot agree on,
  not the idle link's current state) and MIG mode.
- ``-L``: only when a GPU has MIG enabled, the MIG devices and their UUIDs. Inside a container given a MIG
  slice, ``memory.total`` in the query above is the PARENT GPU's memory (80 GB on an A100 80GB), so:
- ``-q -i <index>``: the MIG devices' own framebuffer memory ("FB Memory Usage" under "MIG Devices").

A MIG-enabled GPU is replaced by its MIG devices: CUDA (and so vLLM) sees the slices, not the parent.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from deploy.errors import DeployError
from deploy.planner.budget import DEFAULT_PCIE, PCIeLink
from deploy.planner.gpu_classes import GPUClass, parse_compute_capability

MiB = 1024**2
QUERY_FIELDS = (
    "index,uuid,name,memory.total,memory.free,compute_cap,pcie.link.gen.max,pcie.link.width.max,mig.mode.current"
)
NVIDIA_SMI_TIMEOUT_S = 20
_NA = ("[N/A]", "N/A", "[Not Supported]", "")
_LIST_GPU = re.compile(r"^GPU (\d+): (.+?) \(UUID: (GPU-[^)]+)\)\s*$")
_LIST_MIG = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)]+)\)\s*$")
_MEMORY = re.compile(r"^\s*(Total|Free)\s*:\s*(\d+)\s*MiB\s*$")


class GPUError(DeployError, RuntimeError):
    """No usable GPU information; the message says what to check."""


@dataclass(frozen=True)
class GPU:
    """One CUDA device as nvidia-smi reports it (memory in bytes): a whole GPU or a MIG slice."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]
    uuid: str = ""
    pcie: PCIeLink | None = None
    mig_profile: str = ""
    mig_index: int | None = None  # the MIG device's index under its parent (nvidia-smi -L "Device N")

    @property
    def cc(self) -> str:
        """Compute capability as ``major.minor``."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"

    @property
    def link(self) -> PCIeLink:
        """The PCIe link offload crosses (the planner's default when nvidia-smi could not say)."""
        return self.pcie or DEFAULT_PCIE


@dataclass(frozen=True)
class _Row:
    gpu: GPU
    mig_enabled: bool


def _mib(text: str) -> int | None:
    return None if text in _NA else int(float(text)) * MiB


def _link(gen: str, width: str) -> PCIeLink | None:
    if gen in _NA or width in _NA or not gen.isdigit() or not width.isdigit():
        return None
    return PCIeLink(int(gen), int(width))


def parse_query_rows(output: str) -> list[_Row]:
    """Parse ``nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits`` output."""
    rows = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(QUERY_FIELDS.split(",")):
            raise GPUError(f"unexpected nvidia-smi line {line!r}: expected {QUERY_FIELDS}")
        index, uuid, name, total, free, cc, gen, width, mig = fields
        mig_enabled = mig.lower() == "enabled"
        try:
            total_b, free_b = _mib(total), _mib(free)
            if (total_b is None or free_b is None) and not mig_enabled:
                raise ValueError(f"memory {total!r}/{free!r} is not a number of MiB")
            gpu = GPU(
                int(index),
                name,
                total_b or 0,
                free_b or 0,
                parse_compute_capability(cc),
                uuid=uuid,
                pcie=_link(gen, width),
            )
        except ValueError as exc:
            raise GPUError(
                f"unexpected nvidia-smi line {line!r}: {exc} (a driver older than 510 lacks compute_cap)"
            ) from exc
        rows.append(_Row(gpu, mig_enabled))
    return rows


def parse_query(output: str) -> list[GPU]:
    """The physical GPUs in a ``--query-gpu`` answer (MIG slices are not resolved here; see :func:`detect`)."""
    return [row.gpu for row in parse_query_rows(output)]


def parse_mig_list(output: str) -> dict[int, list[tuple[int, str, str]]]:
    """``nvidia-smi -L`` -> {GPU index: [(MIG device index, profile such as ``1g.10gb``, MIG UUID), ...]}."""
    out: dict[int, list[tuple[int, str, str]]] = {}
    current: int | None = None
    for line in output.splitlines():
        if m := _LIST_GPU.match(line):
            current = int(m.group(1))
            out.setdefault(current, [])
        elif (m := _LIST_MIG.match(line)) and current is not None:
            out[current].append((int(m.group(2)), m.group(1), m.group(3)))
    return out


def parse_mig_memory(output: str) -> dict[int, tuple[int, int]]:
    """``nvidia-smi -q -i N`` -> {MIG device index: (total bytes, free bytes)}.

    Reads each "MIG Device" block under "MIG Devices" by indentation: its "Index" and the "Total" and "Free" of
    its own "FB Memory Usage". The GPU's own "FB Memory Usage" (the parent's memory) sits outside that section
    and is ignored.
    """
    out: dict[int, tuple[int, int]] = {}
    section = device = fb = None  # indentation of the open "MIG Devices", "MIG Device", "FB Memory Usage"
    index: int | None = None
    values: dict[str, int] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = (part.strip() for part in line.partition(":"))
        if fb is not None and indent <= fb:
            fb = None
        if device is not None and indent <= device:
            device = None
        if section is not None and indent <= section:
            section = None
        if section is None:
            if key == "MIG Devices" and not value:
                section = indent
            continue
        if key == "MIG Device" and not value:
            device, index, values = indent, None, {}
        elif device is not None and key == "Index" and index is None and value.isdigit():
            index = int(value)
        elif device is not None and key == "FB Memory Usage":
            fb = indent
        elif fb is not None and (m := _MEMORY.match(line)):
            values[m.group(1)] = int(m.group(2)) * MiB
            if index is not None and {"Total", "Free"} <= values.keys():
                out[index] = (values["Total"], values["Free"])
    return out


Runner = Callable[[list[str]], str]


def _runner(exe: str) -> Runner:
    def run(args: list[str]) -> str:
        try:
            proc = subprocess.run(
                [exe, *args], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise GPUError(
                f"nvidia-smi did not answer within {NVIDIA_SMI_TIMEOUT_S} s: is the driver healthy?"
            ) from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise GPUError(f"nvidia-smi failed (exit {proc.returncode}): {detail[-1] if detail else 'no output'}")
        return proc.stdout

    return run


def _mig_devices(parent: GPU, run: Runner) -> list[GPU]:
    listed = parse_mig_list(run(["-L"])).get(parent.index, [])
    if not listed:
        raise GPUError(
            f"{parent.name} (GPU {parent.index}) has MIG enabled but nvidia-smi -L lists no MIG device: create a "
            "GPU instance and a compute instance (nvidia-smi mig -cgi ... -C), or give the container one"
        )
    memory = parse_mig_memory(run(["-q", "-i", str(parent.index)]))
    devices = []
    for mig_index, profile, uuid in listed:
        if mig_index not in memory:
            raise GPUError(
                f"cannot read the memory of MIG device {mig_index} ({profile}) on GPU {parent.index} from "
                "`nvidia-smi -q`: name a profile with GEMMA4_PROFILE instead of auto"
            )
        total, free = memory[mig_index]
        devices.append(
            GPU(
                parent.index,
                f"{parent.name} MIG {profile}",
                total,
                free,
                parent.compute_capability,
                uuid=uuid,
                pcie=parent.pcie,
                mig_profile=profile,
                mig_index=mig_index,
            )
        )
    return devices


def detect(nvidia_smi: str = "nvidia-smi") -> list[GPU]:
    """The CUDA devices visible to this process; raises :class:`GPUError` saying what to fix when there are none."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        raise GPUError(
            "nvidia-smi not found: no NVIDIA GPU is visible. In Docker, install the NVIDIA Container Toolkit and "
            "give the container a GPU (compose does, via deploy.resources.reservations.devices); or force a "
            "profile with GEMMA4_PROFILE=<name>"
        )
    run = _runner(exe)
    rows = parse_query_rows(run([f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits"]))
    if not rows:
        raise GPUError("nvidia-smi lists no GPU: check that the container was given one (GEMMA4_GPU)")
    gpus: list[GPU] = []
    for row in rows:
        gpus += _mig_devices(row.gpu, run) if row.mig_enabled else [row.gpu]
    return gpus


def in_wsl(uname: str | None = None) -> bool:
    """Whether this is WSL, the way vLLM decides it (``vllm/platforms/interface.py``: "microsoft" in uname)."""
    text = uname if uname is not None else " ".join(platform.uname())
    return "microsoft" in text.lower()


def class_for(gpu: GPU, classes: list[GPUClass]) -> GPUClass | None:
    """The largest class whose planned memory the GPU has; None when it is smaller than every class."""
    fitting = [c for c in classes if c.total_bytes <= gpu.total_bytes]
    return fitting[-1] if fitting else None
