"""GPU memory in use during a benchmark: from the server's Prometheus ``/metrics`` or from ``nvidia-smi``.

vLLM's own ``/metrics`` has no GPU memory gauge; a DCGM exporter or nvidia_gpu_exporter does (point
``--metrics-url`` at it). ``nvidia-smi`` works when the bench runs on the GPU host (or in a container that
was given the GPU) and reads the whole device, so other processes on that GPU count too. When neither is
available the report says "not measured" instead of guessing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

import httpx

# Gauges that carry GPU memory in use, with the factor that turns their unit into MiB.
_METRIC_NAMES: dict[str, float] = {
    "DCGM_FI_DEV_FB_USED": 1.0,  # dcgm-exporter, MiB
    "nvidia_smi_memory_used_bytes": 1.0 / 2**20,  # nvidia_gpu_exporter
    "nvidia_gpu_memory_used_bytes": 1.0 / 2**20,
}
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s+(?P<value>[-+0-9.eE]+|NaN)")


@dataclass
class MemoryReading:
    """Peak memory in MiB (None: not measured) and where it came from."""

    mib: float | None
    source: str


def parse_metrics_mib(text: str) -> float | None:
    """The largest GPU memory-in-use value (MiB) in a Prometheus text exposition, or None."""
    values = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] in _METRIC_NAMES and match["value"] != "NaN":
            values.append(float(match["value"]) * _METRIC_NAMES[match["name"]])
    return max(values) if values else None


def parse_nvidia_smi_mib(text: str) -> float | None:
    """The largest ``memory.used`` (MiB) in ``nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits``."""
    values = [float(line.strip()) for line in text.splitlines() if line.strip().replace(".", "", 1).isdigit()]
    return max(values) if values else None


def _nvidia_smi(query: str, timeout_s: float = 10.0) -> str | None:
    """``nvidia-smi --query-gpu=QUERY`` as CSV without header; None when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def read_nvidia_smi() -> float | None:
    """GPU memory in use now according to ``nvidia-smi``; None when it is absent or fails."""
    out = _nvidia_smi("memory.used")
    return None if out is None else parse_nvidia_smi_mib(out)


def gpu_name() -> str | None:
    """The first GPU's name and memory (``NVIDIA L4, 23034 MiB``) from ``nvidia-smi``, or None."""
    out = (_nvidia_smi("name,memory.total") or "").strip()
    if not out:
        return None
    name, _, total = out.splitlines()[0].rpartition(",")
    return f"{name.strip()}, {total.strip()} MiB" if name else out.splitlines()[0]


def read_metrics(url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> float | None:
    """GPU memory in use according to the Prometheus endpoint ``url``; None when it has no such gauge."""
    try:
        response = httpx.get(url, timeout=timeout_s, headers=headers, trust_env=False)
    except httpx.HTTPError:
        return None
    return parse_metrics_mib(response.text) if response.status_code == 200 else None


class PeakSampler:
    """Polls one source in a background thread while a run lasts and keeps the peak."""

    def __init__(self, source: str, metrics_url: str | None, interval_s: float = 0.5) -> None:
        self.source = source
        self.metrics_url = metrics_url
        self.interval_s = interval_s
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-memory", daemon=True)

    def read(self) -> float | None:
        """One reading from the chosen source."""
        if self.source == "nvidia-smi":
            return read_nvidia_smi()
        if self.source == "metrics" and self.metrics_url:
            return read_metrics(self.metrics_url)
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = self.read()
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        if self.source != "none":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def reading(self) -> MemoryReading:
        """The peak seen, or 'not measured'."""
        if self.peak is None:
            return MemoryReading(None, "not measured")
        where = self.metrics_url if self.source == "metrics" else "nvidia-smi (whole GPU)"
        return MemoryReading(self.peak, f"peak of {where}")


def choose_source(requested: str, metrics_url: str | None) -> str:
    """Resolve ``--vram-from auto`` to the first source that answers now: metrics, then nvidia-smi, else none."""
    if requested != "auto":
        return requested
    if metrics_url and read_metrics(metrics_url) is not None:
        return "metrics"
    if read_nvidia_smi() is not None:
        return "nvidia-smi"
    return "none"
