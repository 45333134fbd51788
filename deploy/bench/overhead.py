"""``python -m deploy bench --client-overhead`` (``make bench-overhead``): is the client the bottleneck.

Both clients, ours and ``vllm bench serve`` from a vLLM 0.21.0 install, run against the same zero-latency
local server (:mod:`deploy.bench.null_server`, its own process) with the same prompts, request count,
batch and output length. What each sustains there (requests/s) is the most it could ever measure; the
TTFT it sees is client + loopback + that server's fixed cost.

One run of each is noise on a shared machine, so the measurement is repeated in interleaved rounds (ours,
theirs, then theirs, ours, ...: the order alternates so neither always runs first), and each batch size
reports the median of the per-round ratios ours/theirs with their spread (min-max). vLLM's client runs in
a long-lived child process (:mod:`deploy.bench.vllm_bench`), so no round pays its import time.

Client-added TTFT: at batch 1, a bare probe (one blocking socket, a prepared request, no HTTP library)
measures how soon the server's first token can reach Python at all; a client's TTFT minus that floor is
what the client itself adds to every TTFT it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy.bench.client import ServerClient
from deploy.bench.metrics import compute_metrics
from deploy.bench.null_server import MODEL_ID
from deploy.bench.runner import run_cell
from deploy.bench.vllm_bench import (
    VllmBench,
    VllmBenchError,
    bench_args,
    check_vllm_python,
    find_vllm_python,
    write_dataset,
    write_word_tokenizer,
)
from deploy.bench.workload import Prompt

DEFAULT_BATCHES = (1, 8, 32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NullServer:
    """The zero-latency server in a child process, for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NullServer:
        import os

        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, "-m", "deploy.bench.null_server", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"the null server exited: {err[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("the null server did not start within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def prompts_for(requests: int) -> list[Prompt]:
    """Short, distinct text prompts (the null server does not read them)."""
    return [Prompt([{"role": "user", "content": f"request {i}"}], None, 0, False) for i in range(requests)]


async def measure_ours(url: str, prompts: list[Prompt], batch: int, max_tokens: int) -> dict[str, Any]:
    """Our client against ``url``: the vLLM-style metrics plus CPU time per request (after ``batch`` warm-ups)."""
    stop = asyncio.Event()
    async with ServerClient(url, connections=batch) as client:
        await run_cell(
            client, MODEL_ID, prompts[:batch], batch=batch, max_tokens=max_tokens, ignore_eos=True, stop=stop
        )
        cpu = time.process_time()
        result = await run_cell(
            client, MODEL_ID, prompts, batch=batch, max_tokens=max_tokens, ignore_eos=True, stop=stop
        )
        cpu = time.process_time() - cpu
    metrics = compute_metrics(result.samples, result.duration_s)
    metrics["cpu_ms_per_request"] = cpu * 1000 / max(len(result.samples), 1)
    return metrics


def probe_ttft(port: int, requests: int, max_tokens: int) -> list[float]:
    """TTFTs (s) of a bare client: one keep-alive socket, a prepared request, read to the first data message.

    The floor under any client's TTFT against this server: loopback, the server, and one ``recv`` in Python.
    """
    body = json.dumps(
        {
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "probe"}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    ttfts = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(requests):
            start = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"data: {" not in data:
                data += sock.recv(65536)
            ttfts.append(time.perf_counter() - start)
            while not data.endswith(b"0\r\n\r\n"):
                data += sock.recv(65536)
    return ttfts


def _ratio_summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def render(results: list[dict[str, Any]]) -> str:
    """The Markdown table: one row per batch size, medians over the rounds, ratio with its spread."""
    header = [
        "Batch", "Rounds", "Requests x tokens", "ours req/s", "vLLM req/s", "ratio ours/vLLM (min-max)",
        "ours TTFT p50 (ms)", "vLLM TTFT p50 (ms)", "ours CPU ms/req",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in results:
        ratio = r["ratio"]
        cells = [
            str(r["batch"]),
            str(r["rounds"]),
            f"{r['requests']} x {r['max_tokens']}",
            f"{r['ours_req_s']:.0f}",
            f"{r['vllm_req_s']:.0f}",
            f"**{ratio['median']:.2f}x** ({ratio['min']:.2f}-{ratio['max']:.2f})",
            f"{r['ours_ttft_p50_ms']:.2f}",
            f"{r['vllm_ttft_p50_ms']:.2f}",
            f"{r['ours_cpu_ms_per_request']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_ttft(floor: dict[str, Any]) -> str:
    """The client-added TTFT at batch 1: each client's TTFT p50 above the bare probe's."""
    return (
        f"Client-added TTFT at batch 1 (TTFT p50 minus the bare probe's {floor['probe_ms']:.3f} ms, median of "
        f"{floor['rounds']} rounds): deploy bench {floor['ours_ms']:+.3f} ms, "
        f"vllm bench serve {floor['vllm_ms']:+.3f} ms"
    )


def run_overhead(args: argparse.Namespace) -> int:
    """Interleaved rounds of both clients at every batch size on one null server; print and optionally save."""
    from deploy.bench.report import write_atomic

    batches = list(args.concurrency or DEFAULT_BATCHES)
    requests = args.requests or 200
    max_tokens = args.max_tokens
    rounds = args.rounds
    if rounds < 1 or 0 in batches or requests < 1:
        print("error: --rounds, --concurrency and --requests must be at least 1", file=sys.stderr)
        return 2
    vllm_python = find_vllm_python(args.vllm_python)
    try:
        version = check_vllm_python(vllm_python)
    except VllmBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    floor: dict[str, Any] | None = None
    print(
        f"{rounds} interleaved rounds per batch of deploy bench and vllm bench serve {version}, "
        f"{requests} requests x {max_tokens} tokens, zero-latency server",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp, NullServer() as server:
        tokenizer = args.tokenizer or str(write_word_tokenizer(Path(tmp) / "tokenizer"))
        prompts = prompts_for(requests)
        dataset = write_dataset(prompts, Path(tmp) / "prompts.jsonl")
        from tqdm import tqdm

        bar = tqdm(
            total=len(batches) * rounds * 2,
            desc="client overhead",
            unit="run",
            file=sys.stderr,
            disable=args.no_progress or not sys.stderr.isatty(),
            leave=False,
        )
        try:
            with bar, VllmBench(vllm_python, log=Path(tmp) / "vllm-bench.log") as theirs_client:
                for batch in batches:
                    argv = bench_args(
                        base_url=server.url, model=MODEL_ID, tokenizer=tokenizer, dataset=dataset,
                        requests=requests, max_tokens=max_tokens, batch=batch, warmup=batch,
                    )  # fmt: skip
                    ours_runs, theirs_runs, probes = [], [], []
                    for r in range(rounds):
                        order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
                        for who in order:
                            if who == "ours":
                                ours_runs.append(asyncio.run(measure_ours(server.url, prompts, batch, max_tokens)))
                            else:
                                theirs_runs.append(theirs_client.run(argv, timeout_s=600))
                            bar.update(1)
                        if batch == 1:
                            probes.append(statistics.median(probe_ttft(server.port, min(requests, 100), max_tokens)))
                    results.append(_batch_result(batch, rounds, requests, max_tokens, ours_runs, theirs_runs))
                    last = results[-1]
                    print(
                        f"batch {batch}: ratio {last['ratio']['median']:.2f}x "
                        f"({last['ratio']['min']:.2f}-{last['ratio']['max']:.2f})",
                        file=sys.stderr,
                    )
                    if batch == 1:
                        floor = {
                            "rounds": rounds,
                            "probe_ms": 1000 * statistics.median(probes),
                            "ours_ms": statistics.median(
                                o["ttft_ms"]["p50"] - 1000 * p for o, p in zip(ours_runs, probes, strict=True)
                            ),
                            "vllm_ms": statistics.median(
                                t["median_ttft_ms"] - 1000 * p for t, p in zip(theirs_runs, probes, strict=True)
                            ),
                        }
        except VllmBenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if results:
                print(render(results))
            return 1
    table = render(results)
    print(table)
    if floor is not None:
        print()
        print(render_ttft(floor))
    doc = {"tool": "gemma4-serve bench --client-overhead", "vllm": version, "results": results, "ttft_floor": floor}
    if args.json is not None:
        write_atomic(args.json, json.dumps(doc, indent=1) + "\n")
    if args.markdown is not None:
        text = "## Client overhead against a zero-latency server\n\n" + table + "\n"
        if floor is not None:
            text += "\n" + render_ttft(floor) + "\n"
        write_atomic(args.markdown, text)
    failed = any(r["ours_failed"] or r["vllm_failed"] for r in results)
    return 1 if failed else 0


def _batch_result(
    batch: int, rounds: int, requests: int, max_tokens: int, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
) -> dict[str, Any]:
    """One batch size over all rounds: medians, the per-round ratios and their summary."""
    ratios = [o["request_throughput"] / t["request_throughput"] for o, t in zip(ours, theirs, strict=True)]
    return {
        "batch": batch,
        "rounds": rounds,
        "requests": requests,
        "max_tokens": max_tokens,
        "ours_req_s": statistics.median(o["request_throughput"] for o in ours),
        "vllm_req_s": statistics.median(t["request_throughput"] for t in theirs),
        "ratio": _ratio_summary(ratios),
        "ratios": ratios,
        "ours_ttft_p50_ms": statistics.median(o["ttft_ms"]["p50"] for o in ours),
        "vllm_ttft_p50_ms": statistics.median(t["median_ttft_ms"] for t in theirs),
        "ours_itl_p50_ms": statistics.median(o["itl_ms"]["p50"] for o in ours),
        "vllm_itl_p50_ms": statistics.median(t["median_itl_ms"] for t in theirs),
        "ours_cpu_ms_per_request": statistics.median(o["cpu_ms_per_request"] for o in ours),
        "ours_failed": sum(o["failed"] for o in ours),
        "vllm_failed": sum(int(t.get("failed", 0)) for t in theirs),
        "ours_completed": [o["completed"] for o in ours],
        "vllm_completed": [t["completed"] for t in theirs],
    }
