"""``make gpu-check`` (scripts/gpu-check.sh): the planner's predictions against a real GPU, in one JSON file.

For each profile the card can host (by default the one ``deploy launch`` picks for this card, and the tightest
profile of the same GPU generation, ``gpu-8gb``/``gpu-8gb-ampere``, emulated at its class's memory), it:

1. starts vLLM through the launcher (``python -m deploy launch``, the image's entrypoint) on a loopback port,
   with ``VLLM_LOGGING_LEVEL=DEBUG`` so vLLM logs its memory profile, and polls the GPU's used memory;
2. waits for ``/health``, then reads what vLLM logged: model loading, torch peak and non-torch increase, the
   CUDA graph estimate, "Available KV cache memory", "GPU KV cache size" and "Maximum concurrency";
3. runs the smoke suite (``python -m smoke_tests``; image checks left out for a text-only profile) and a short
   bench (``python -m deploy bench``: batch 1 and 4, 2k context, 64 output tokens);
4. stops vLLM and records the planner's prediction next to each measurement.

Emulation: a profile planned for a smaller class runs with ``--gpu-memory-utilization`` scaled so vLLM's budget
(utilization x total) equals the class card's, so its KV cache and peak compare with the class's plan.

Everything stays on this machine: the checkpoint must already be in the Hugging Face cache (``HF_HUB_OFFLINE=1``
is set), and nothing is installed. The whole run is bounded by ``--budget-s`` (default 570 s, under the 10
minutes a GPU slot gives); a profile that would not finish in time is recorded as skipped.

Exit codes: 0 every plan held and every smoke suite passed, 1 a plan or a check failed, 2 bad usage or a missing
prerequisite, 3 no GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.launcher.gpu import GPU, GPUError, class_for, detect, in_wsl, parse_mig_memory
from deploy.planner.args import from_mapping
from deploy.planner.budget import GiB, MiB, Plan, plan
from deploy.planner.gpu_classes import GPUClass, load_classes
from deploy.planner.model import GemmaModel
from deploy.profiles import load_profile

SCHEMA = "gemma4-serve/gpu-check/1"
DEFAULT_OUT = Path("reports/gpu-check")
DEFAULT_BUDGET_S = 570.0
# A profile is started only when this much of the budget is left: load + compile + smoke + bench on a warm
# disk cache. Start-up alone gets what is left minus the time smoke and bench need.
MIN_PROFILE_S = 150.0
SMOKE_AND_BENCH_S = 90.0
STOP_GRACE_S = 30.0
POLL_S = 0.5
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU = 0, 1, 2, 3
REQUIRED_MODULES = ("yaml", "httpx", "pytest", "rich")
INHERITED = ("GEMMA4_MODEL", "GEMMA4_REVISION", "GEMMA4_WSL")

# vLLM 0.21.0's own log lines (v1/worker/gpu_model_runner.py, v1/worker/gpu_worker.py, utils/mem_utils.py,
# v1/core/kv_cache_utils.py). GiB values are printed rounded to 2 decimals.
LOG_PATTERNS: dict[str, re.Pattern[str]] = {
    "model_loading_gib": re.compile(r"Model loading took ([\d.]+) GiB"),
    "non_kv_gib": re.compile(r"Total non KV cache memory: ([\d.]+)GiB"),
    "torch_peak_gib": re.compile(r"torch peak memory increase: ([\d.]+)GiB"),
    "non_torch_gib": re.compile(r"non-torch forward increase memory: ([\d.]+)GiB"),
    "cuda_graph_gib": re.compile(r"Estimated CUDA graph memory: ([\d.]+) GiB total"),
    "available_kv_gib": re.compile(r"Available KV cache memory: ([\d.]+) GiB"),
    "kv_cache_tokens": re.compile(r"GPU KV cache size: ([\d,]+) tokens"),
    "max_concurrency": re.compile(r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x"),
}


class CheckError(DeployError, RuntimeError):
    """The check cannot run here; ``code`` is the exit code, the message says what to fix."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def parse_log(text: str) -> dict[str, float]:
    """The memory figures vLLM logged (first occurrence of each), GiB values as bytes."""
    out: dict[str, float] = {}
    for name, pattern in LOG_PATTERNS.items():
        m = pattern.search(text)
        if not m:
            continue
        value = m.group(1).replace(",", "")
        if name.endswith("_gib"):
            out[name.removesuffix("_gib") + "_bytes"] = round(float(value) * GiB)
        elif name == "kv_cache_tokens":
            out[name] = int(value)
        else:
            out[name] = float(value)
    return out


@dataclass(frozen=True)
class Target:
    """One profile to start, and how: on the card as it is, or emulating a smaller class's budget."""

    profile: str
    utilization: float | None = None  # set when emulating a smaller class
    emulates_mib: int | None = None


def choose_targets(gpu: GPU, classes: list[GPUClass], names: list[str] | None = None) -> list[Target]:
    """The profiles to run: ``names`` if given, else the card's own class profile and the tightest one.

    A class bigger than the card cannot be emulated and is refused; a smaller class is emulated by scaling
    gpu-memory-utilization to the class's budget.
    """
    ampere = gpu.compute_capability < (8, 9)
    by_name = {c.profile_name(v == "ampere"): c for c in classes for v in ("ada", "ampere")}
    if not names:
        own = class_for(gpu, classes)
        if own is None:
            raise CheckError(
                f"{gpu.name} ({gpu.total_bytes / GiB:.2f} GiB) is smaller than every profile's class: there is "
                "no profile to check (deploy launch plans such a card itself, or refuses)",
                EXIT_FAILED,
            )
        names = [own.profile_name(ampere)]
        tightest = classes[0].profile_name(ampere)
        if tightest not in names:
            names.append(tightest)
    targets = []
    for name in names:
        cls = by_name.get(name)
        if cls is None:
            raise CheckError(f"--profiles {name}: not a GPU-class profile (choose from {', '.join(by_name)})")
        if cls.total_bytes > gpu.total_bytes:
            raise CheckError(
                f"--profiles {name}: planned for {cls.memory_mib} MiB, more than this card's "
                f"{gpu.total_bytes // MiB} MiB; it cannot be emulated here"
            )
        if class_for(gpu, classes) is cls:
            targets.append(Target(name))
            continue
        util = float(load_profile(name)["gpu-memory-utilization"])
        scaled = math.floor(util * cls.total_bytes / gpu.total_bytes * 10_000) / 10_000
        targets.append(Target(name, scaled, cls.memory_mib))
    return targets


def predict(model: GemmaModel, gpu: GPU, target: Target) -> Plan:
    """The planner's plan for exactly what is started: the profile, the scaled utilization, this card."""
    config = dict(load_profile(target.profile))
    if target.utilization is not None:
        config["gpu-memory-utilization"] = target.utilization
    if gpu.compute_capability < (8, 9) and str(config.get("kv-cache-dtype", "auto")).startswith("fp8"):
        config["kv-cache-dtype"] = "auto"  # what the launcher does on Ampere
    return plan(model, from_mapping(config), gpu.total_bytes, gpu_name=gpu.name, pcie=gpu.link)


def predicted_figures(p: Plan) -> dict[str, Any]:
    """The plan in the terms vLLM logs (bytes, tokens, concurrency)."""
    o = p.overheads
    return {
        "model_loading_bytes": p.weights_bytes + o["ple_staging"].bytes,
        "torch_peak_bytes": o["activation_peak"].bytes,
        "non_torch_bytes": o["non_torch"].bytes,
        "cuda_graph_bytes": o["cuda_graphs"].bytes,
        "available_kv_bytes": p.kv_cache_budget_bytes,
        "kv_cache_tokens": p.kv_cache_tokens,
        "max_concurrency": round(p.expected_max_concurrency, 2),
        "promised_sequences": p.max_sequences_at_max_model_len,
        "safety_margin_bytes": p.safety_margin_bytes,
        "peak_bytes": p.peak_bytes,
        "requested_bytes": p.requested_bytes,
        "args": dict(p.args),
    }


def compare(predicted: dict[str, Any], measured: dict[str, Any], total_bytes: int) -> list[str]:
    """What in ``measured`` breaks the plan; empty when the plan held.

    The plan holds when vLLM's KV cache holds at least the promised number of full-length sequences, its KV
    budget is no more than the safety margin below the prediction, and the process stayed within the card.
    """
    problems = []
    if "max_concurrency" not in measured or "available_kv_bytes" not in measured:
        return ["vLLM's log has no KV cache figures (did it start?)"]
    if measured["max_concurrency"] < predicted["promised_sequences"]:
        problems.append(
            f"vLLM holds {measured['max_concurrency']:.2f} full-length sequences, the plan promised "
            f"{predicted['promised_sequences']}"
        )
    shortfall = predicted["available_kv_bytes"] - measured["available_kv_bytes"]
    if shortfall > predicted["safety_margin_bytes"]:
        problems.append(
            f"KV budget {measured['available_kv_bytes'] / GiB:.2f} GiB is {shortfall / MiB:.0f} MiB below the "
            f"predicted {predicted['available_kv_bytes'] / GiB:.2f} GiB, more than the "
            f"{predicted['safety_margin_bytes'] // MiB} MiB safety margin"
        )
    if measured.get("peak_bytes", 0) > total_bytes:
        problems.append(f"peak memory {measured['peak_bytes'] / GiB:.2f} GiB exceeds the card")
    return problems


# ---- the GPU, the processes ----------------------------------------------------------------------------------


def _nvidia_smi(args: list[str]) -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise GPUError("nvidia-smi disappeared")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode != 0:
        raise GPUError(proc.stderr.strip() or f"exit {proc.returncode}")
    return proc.stdout


def memory_used(gpu: GPU, run: Callable[[list[str]], str] = _nvidia_smi) -> int | None:
    """Bytes in use on ``gpu`` now (a MIG slice's own use for a slice); None when nvidia-smi cannot say."""
    try:
        if gpu.mig_profile:
            total, free = parse_mig_memory(run(["-q", "-i", str(gpu.index)]))[gpu.mig_index or 0]
            return total - free
        text = run(["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", str(gpu.index)])
        return int(float(text.strip().splitlines()[0])) * MiB
    except (GPUError, KeyError, IndexError, ValueError, subprocess.TimeoutExpired):
        return None


class MemoryPoller:
    """Samples the GPU's used memory in a thread; ``peak`` is the largest sample."""

    def __init__(self, gpu: GPU, interval_s: float = POLL_S) -> None:
        self.gpu, self.interval_s = gpu, interval_s
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-check-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            used = memory_used(self.gpu)
            if used is not None:
                self.peak = used if self.peak is None else max(self.peak, used)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemoryPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether ``url/health`` answers 200 now."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after STOP_GRACE_S."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def launched(target: Target, port: int, log: Path, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m deploy launch`` for ``target`` (it execs vLLM), logging to ``log``; always stopped."""
    extra = ["--host", "127.0.0.1", "--port", str(port)]
    if target.utilization is not None:
        extra += ["--gpu-memory-utilization", str(target.utilization)]
    # The profile as shipped: no inherited features, port or extra arguments; the model, revision and the WSL
    # override still apply.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMMA4_") or k in INHERITED}
    env.update(
        GEMMA4_PROFILE=target.profile,
        GEMMA4_EXTRA_ARGS=" ".join(extra),
        GEMMA4_RESOLVED_DIR=str(workdir / target.profile),
        HF_HUB_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_LOGGING_LEVEL=os.environ.get("VLLM_LOGGING_LEVEL", "DEBUG"),
        PYTHONPATH=os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p),
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy", "launch"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)


def wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> float | None:
    """Seconds until ``/health`` answered 200; None when the process exited or the deadline passed."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if healthy(url):
            return round(time.monotonic() - start, 1)
        time.sleep(1.0)
    return None


def _tool(args: list[str], out: Path, timeout_s: float) -> int:
    """Run a Python tool of this repository, its output to ``out``; the exit code (124 on timeout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p
    )
    with out.open("wb") as sink:
        try:
            return subprocess.run(
                [sys.executable, *args], stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            return 124


def smoke(url: str, p: Plan, out_dir: Path, name: str, timeout_s: float) -> dict[str, Any]:
    """The smoke suite against ``url``; image checks are left out when the plan serves text only."""
    report = out_dir / f"{name}.smoke.json"
    args = ["-m", "smoke_tests", "--base-url", url, "--wait", "30", "--max-model-len", str(p.args["max-model-len"])]
    args += ["--json", str(report)]
    text_only = bool(p.args.get("language-model-only"))
    if text_only:
        args += ["--select", "not image"]
    code = _tool(args, out_dir / f"{name}.smoke.log", timeout_s)
    result: dict[str, Any] = {"exit_code": code, "text_only": text_only}
    with contextlib.suppress(OSError, ValueError):
        result["report"] = json.loads(report.read_text())
    return result


def bench(url: str, p: Plan, out_dir: Path, name: str, timeout_s: float) -> dict[str, Any]:
    """A short bench: batch 1 and 4, a 2k-token context, 64 output tokens, text only."""
    doc = out_dir / f"{name}.bench.json"
    args = ["-m", "deploy", "bench", "--base-url", url, "--concurrency", "1,4", "--requests", "8"]
    args += ["--context", str(min(2048, int(p.args["max-model-len"]))), "--max-tokens", "64", "--images", "0"]
    args += ["--no-progress", "--json", str(doc)]
    code = _tool(args, out_dir / f"{name}.bench.log", timeout_s)
    result: dict[str, Any] = {"exit_code": code, "cells": []}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        for run in json.loads(doc.read_text())["runs"]:
            m = run["metrics"]
            result["cells"].append(
                {
                    "batch": run["batch"],
                    "output_tokens_per_s": m["output_throughput"],
                    "ttft_ms_p50": m["ttft_ms"]["p50"],
                    "vram_mib": run["vram"]["mib"],
                }
            )
    return result


# ---- one run ---------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """The state of one gpu-check run."""

    gpu: GPU
    out_dir: Path
    budget_s: float
    model: GemmaModel = field(default_factory=GemmaModel.load)
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds of the budget left."""
        return self.budget_s - (time.monotonic() - self.started)

    def run_target(self, target: Target) -> dict[str, Any]:
        """Start, measure, smoke, bench and stop one profile; its record for the JSON."""
        p = predict(self.model, self.gpu, target)
        record: dict[str, Any] = {
            "profile": target.profile,
            "emulates_class_mib": target.emulates_mib,
            "gpu_memory_utilization": p.args["gpu-memory-utilization"],
            "predicted": predicted_figures(p),
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = self.out_dir / f"{target.profile}.vllm.log"
        baseline = memory_used(self.gpu)
        with MemoryPoller(self.gpu) as poller, launched(target, port, log, self.out_dir / "resolved") as process:
            ready = wait_ready(url, process, time.monotonic() + max(30.0, self.left() - SMOKE_AND_BENCH_S))
            measured: dict[str, Any] = {"ready_s": ready}
            if ready is not None:
                step = max(20.0, (self.left() - 20) / 2)
                record["smoke"] = smoke(url, p, self.out_dir, target.profile, step)
                record["bench"] = bench(url, p, self.out_dir, target.profile, step)
        text = log.read_text(errors="replace")
        measured.update(parse_log(text))
        if poller.peak is not None:
            measured["peak_bytes"] = poller.peak - (baseline or 0)
            measured["baseline_used_bytes"] = baseline
        record["measured"] = measured
        problems = compare(record["predicted"], measured, self.gpu.total_bytes)
        if ready is None:
            problems.insert(0, "vLLM did not become healthy: " + _last_lines(text))
        elif record["smoke"]["exit_code"] != 0:
            problems.append(f"smoke suite exit {record['smoke']['exit_code']} ({target.profile}.smoke.log)")
        record["problems"] = problems
        record["holds"] = not problems
        return record


def _last_lines(text: str, n: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no output"


def preflight() -> None:
    """Refuse early, naming the fix, when a tool the run needs is missing."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise CheckError(
            f"{sys.executable} lacks {', '.join(missing)}: run gpu-check with an interpreter that has vLLM 0.21.0 "
            "and the smoke suite's packages (GPU_CHECK_PYTHON=/path/to/venv/bin/python; see docs/fit.md)"
        )
    if shutil.which("vllm") is None:
        raise CheckError("no `vllm` command on PATH: install vLLM 0.21.0 (CUDA build) where this runs")


def gpu_slug(gpu: GPU) -> str:
    """A file-name-safe label for the card."""
    return re.sub(r"[^a-z0-9.]+", "-", gpu.name.lower()).strip("-")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m deploy.launcher.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--profiles", help="comma-separated profiles (default: this card's own and the tightest one)")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="wall-clock budget (default 570)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON and the logs")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the check; write ``<out>/gpu-check-<gpu>.json``; exit 0/1/2/3 (module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        gpus = detect()
    except GPUError as exc:
        print(f"gpu-check: no GPU to check: {exc}", file=sys.stderr)
        return EXIT_NO_GPU
    from deploy.launcher.cli import pick_gpu

    gpu = pick_gpu(gpus, os.environ)
    try:
        preflight()
        names = [n.strip() for n in args.profiles.split(",") if n.strip()] if args.profiles else None
        targets = choose_targets(gpu, load_classes(), names)
    except CheckError as exc:
        print(f"gpu-check: {exc}", file=sys.stderr)
        return exc.code
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(gpu, args.out, args.budget_s)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": {
            "name": gpu.name,
            "total_bytes": gpu.total_bytes,
            "compute_capability": gpu.cc,
            "pcie": str(gpu.link) if gpu.pcie else None,
            "mig_profile": gpu.mig_profile or None,
            "wsl": in_wsl(),
        },
        "runs": [],
        "skipped": [],
    }
    path = args.out / f"gpu-check-{gpu_slug(gpu)}.json"
    try:
        for target in targets:
            if check.left() < MIN_PROFILE_S:
                doc["skipped"].append({"profile": target.profile, "reason": f"{check.left():.0f} s of budget left"})
                continue
            print(f"gpu-check: {target.profile} on {gpu.name} ...", flush=True)
            record = check.run_target(target)
            doc["runs"].append(record)
            verdict = "holds" if record["holds"] else "FAILS: " + "; ".join(record["problems"])
            print(f"gpu-check: {target.profile}: {verdict}", flush=True)
    finally:
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"gpu-check: wrote {path}")
    return EXIT_OK if doc["runs"] and all(r["holds"] for r in doc["runs"]) and not doc["skipped"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
