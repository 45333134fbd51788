"""``python -m deploy bench``: benchmark a running OpenAI-compatible server and fill the card's table.

Three modes:

- default: stream requests to ``--base-url`` for every batch size in ``--concurrency`` and image count in
  ``--images``, and print the card's table; ``--json`` keeps every sample, ``--markdown`` writes the tables.
- ``--merge A.json B.json ...``: one table from several runs (engines, formats, GPUs).
- ``--client-overhead``: how fast this client and ``vllm bench serve`` are against a zero-latency local server
  (see :mod:`deploy.bench.overhead`).

Exit status: 0 when every request succeeded, 1 when some failed, the run was interrupted (Ctrl-C) or the
server could not be benchmarked, 2 for bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from deploy.bench import report
from deploy.bench.client import BenchError, ServerClient
from deploy.bench.gpu_memory import PeakSampler, choose_source, gpu_name
from deploy.bench.metrics import Slo, compute_metrics
from deploy.bench.runner import run_cell
from deploy.bench.server_info import detect_engine, detect_format, pick_model
from deploy.bench.workload import PromptBuilder

T = TypeVar("T")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8, not {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers like 1,8, not {text!r}")
    return values


def _goodput(text: str) -> tuple[str, float]:
    name, _, value = text.partition(":")
    if name not in ("ttft", "tpot", "e2el"):
        raise argparse.ArgumentTypeError(f"--goodput takes ttft:MS, tpot:MS or e2el:MS, not {text!r}")
    try:
        return name, float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--goodput {text!r}: {value!r} is not a number of milliseconds") from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark a running server (vLLM metric definitions); fill the card's table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--base-url", help="server root URL, e.g. http://127.0.0.1:8000 (no /v1)")
    p.add_argument("--model", help="served model name (default: the only one /v1/models lists)")
    p.add_argument("--api-key", default=None, help="API key (default: $VLLM_API_KEY; never printed)")
    p.add_argument("--concurrency", type=_int_list, default=[1, 8], help="batch sizes, comma-separated (default 1,8)")
    p.add_argument(
        "--context", type=int, default=32768, help="context length the card's ctx column names (default 32768)"
    )
    p.add_argument("--prompt-tokens", type=int, help="prompt length in tokens (default: --context minus --max-tokens)")
    p.add_argument("--max-tokens", type=int, default=256, help="output tokens per request (default 256)")
    p.add_argument("--requests", type=int, help="measured requests per cell (default: 4 x batch, at least 8)")
    p.add_argument("--images", type=_int_list, default=[0], help="images per request, comma-separated: 0,1 runs both")
    p.add_argument("--image-size", type=int, default=512, help="side of each generated square image in pixels")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured requests before each cell (default 1)")
    p.add_argument(
        "--engine", metavar="LABEL", help="engine label for the table (default: detected, e.g. 'vLLM v0.21.0')"
    )
    p.add_argument(
        "--format", dest="format_label", metavar="LABEL", help="format label (default: from the model id, e.g. W8A16)"
    )
    p.add_argument("--gpu", help="hardware label for the notes (default: nvidia-smi's GPU name when present)")
    p.add_argument(
        "--goodput", type=_goodput, nargs="+", default=[], metavar="NAME:MS", help="SLOs, e.g. ttft:2000 tpot:50"
    )
    p.add_argument(
        "--vram-from", choices=("auto", "metrics", "nvidia-smi", "none"), default="auto", help="GPU memory source"
    )
    p.add_argument("--metrics-url", help="Prometheus endpoint with GPU memory (default: BASE_URL/metrics)")
    p.add_argument("--stall-timeout", type=float, default=600.0, help="seconds a stream may stay silent (default 600)")
    p.add_argument("--no-ignore-eos", action="store_true", help="let answers stop early at end-of-sequence")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt text and images")
    p.add_argument("--json", type=Path, help="write the full result (every sample) here")
    p.add_argument("--markdown", type=Path, help="write the card's table and the full table here")
    p.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON", help="only merge earlier --json results into one table"
    )
    p.add_argument(
        "--client-overhead", action="store_true", help="measure this client and `vllm bench serve` on a null server"
    )
    p.add_argument("--vllm-python", help="--client-overhead: interpreter with vLLM 0.21.0 (default: $VLLM_PYTHON)")
    p.add_argument("--tokenizer", help="--client-overhead: tokenizer folder or id for `vllm bench serve`")
    p.set_defaults(handler=run)


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen mode."""
    if args.merge:
        return _merge(args)
    if args.client_overhead:
        from deploy.bench.overhead import run_overhead

        return run_overhead(args)
    problem = _check_options(args)
    if problem:
        return _fail(problem)
    try:
        runs, interrupted, failed = asyncio.run(_bench(args))
    except BenchError as exc:
        return _fail(str(exc), 1)
    if not runs:
        print("nothing was measured", file=sys.stderr)
        return 1
    report.write(runs, json_path=args.json, markdown_path=args.markdown, interrupted=interrupted)
    print(report.card_table(runs))
    for path in (args.json, args.markdown):
        if path is not None:
            print(f"wrote {path}", file=sys.stderr)
    if interrupted:
        print("interrupted: the report covers only the requests that finished", file=sys.stderr)
    if failed:
        print(f"{failed} request(s) failed; their errors are in the JSON samples", file=sys.stderr)
    return 1 if interrupted or failed else 0


def _check_options(args: argparse.Namespace) -> str | None:
    """A message for the first bad option, or None."""
    if not args.base_url:
        return "--base-url is required, e.g. --base-url http://127.0.0.1:8000"
    if not args.base_url.startswith(("http://", "https://")):
        return f"--base-url must be an http(s) URL like http://127.0.0.1:8000, not {args.base_url!r}"
    if args.base_url.rstrip("/").endswith("/v1"):
        return f"--base-url is the server root, without /v1: {args.base_url.rstrip('/')[:-3]!r}"
    if args.max_tokens < 1:
        return "--max-tokens must be at least 1"
    if args.prompt_tokens is None:
        args.prompt_tokens = args.context - args.max_tokens
    if args.prompt_tokens < 0 or args.prompt_tokens + args.max_tokens > args.context:
        return (
            f"--prompt-tokens {args.prompt_tokens} + --max-tokens {args.max_tokens} must fit in --context "
            f"{args.context} (the server rejects longer requests)"
        )
    if 0 in args.concurrency:
        return "--concurrency values must be at least 1"
    if args.requests is not None and args.requests < 1:
        return "--requests must be at least 1"
    if args.stall_timeout <= 0:
        return "--stall-timeout must be positive"
    return None


def _merge(args: argparse.Namespace) -> int:
    try:
        runs = report.load(args.merge)
    except report.ReportError as exc:
        return _fail(str(exc))
    report.write(runs, json_path=args.json, markdown_path=args.markdown, interrupted=False)
    print(report.card_table(runs))
    return 0


async def _until_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await ``awaitable`` unless ``stop`` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, BenchError):
        await task
    return None


async def _bench(args: argparse.Namespace) -> tuple[list[dict[str, Any]], bool, int]:
    """Every cell of the run; returns the runs, whether it was interrupted and how many requests failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # First Ctrl-C: stop cleanly and report; a second one falls through to Python's KeyboardInterrupt.
    with contextlib.suppress(NotImplementedError, RuntimeError):

        def _on_sigint() -> None:
            print("\nCtrl-C: stopping, writing what was measured (Ctrl-C again to abort)", file=sys.stderr)
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        loop.add_signal_handler(signal.SIGINT, _on_sigint)
    api_key = args.api_key or os.environ.get("VLLM_API_KEY") or None
    base_url = args.base_url.rstrip("/")
    runs: list[dict[str, Any]] = []
    failed = 0
    connections = max(args.concurrency)
    async with ServerClient(
        base_url, api_key=api_key, connections=connections, stall_timeout_s=args.stall_timeout
    ) as client:
        card = pick_model(await client.models(), args.model, base_url)
        model = str(card["id"])
        limit = card.get("max_model_len")
        if isinstance(limit, int) and args.context > limit:
            raise BenchError(
                f"--context {args.context} is longer than the server's max_model_len {limit} (from /v1/models): "
                f"pass --context {limit} or less"
            )
        engine = args.engine or await detect_engine(client, card)
        fmt = args.format_label or await detect_format(client, card)
        metrics_url = args.metrics_url or f"{base_url}/metrics"
        vram_source = await asyncio.to_thread(choose_source, args.vram_from, metrics_url)
        gpu = args.gpu or await asyncio.to_thread(gpu_name)
        builder = PromptBuilder(client, model, count_timeout_s=args.stall_timeout)
        print(f"benchmarking {model} on {engine} ({fmt}) at {base_url}", file=sys.stderr)
        for images in args.images:
            for batch in args.concurrency:
                if stop.is_set():
                    break
                requests = args.requests or max(8, 4 * batch)
                prompts = await _until_stopped(
                    builder.build(
                        requests + args.warmup, args.prompt_tokens, images, image_size=args.image_size, seed=args.seed
                    ),
                    stop,
                )
                if prompts is None:
                    break
                warmup, measured = prompts[: args.warmup], prompts[args.warmup :]
                if warmup:
                    await _warm_up(args, client, model, warmup, stop)
                if stop.is_set():
                    break
                run = await _measure(args, client, model, measured, batch, images, stop, vram_source, metrics_url)
                failed += run["metrics"]["failed"]
                m = run["metrics"]
                print(
                    f"batch {batch}{f', {images} img' if images else ''}: {m['completed']}/{len(measured)} ok, "
                    f"{m['output_throughput']:.1f} output tok/s, TTFT p50 {m['ttft_ms']['p50']:.0f} ms, "
                    f"TPOT p50 {m['tpot_ms']['p50']:.1f} ms",
                    file=sys.stderr,
                )
                run.update(
                    engine=engine,
                    format=fmt,
                    model=model,
                    base_url=base_url,
                    gpu=gpu,
                    prompt_tokens_method=builder.method if args.prompt_tokens else "not measured (--prompt-tokens 0)",
                )
                runs.append(run)
    return runs, stop.is_set(), failed


async def _warm_up(
    args: argparse.Namespace, client: ServerClient, model: str, prompts: list[Any], stop: asyncio.Event
) -> None:
    """Send the unmeasured warm-up requests one at a time; a failure stops the run before it measures junk."""
    result = await run_cell(
        client, model, prompts, batch=1, max_tokens=args.max_tokens, ignore_eos=not args.no_ignore_eos, stop=stop
    )
    for sample in result.samples:
        if not sample.success:
            hint = ""
            if "ignore_eos" in sample.error:
                hint = " (this server does not take the ignore_eos extension: add --no-ignore-eos)"
            raise BenchError(f"the warm-up request failed: {sample.error}{hint}")


async def _measure(
    args: argparse.Namespace,
    client: ServerClient,
    model: str,
    prompts: list[Any],
    batch: int,
    images: int,
    stop: asyncio.Event,
    vram_source: str,
    metrics_url: str,
) -> dict[str, Any]:
    """One measured cell, with a progress bar and the GPU memory sampler running."""
    from tqdm import tqdm

    label = f"batch {batch}" + (f", {images} img" if images else "")
    with (
        tqdm(total=len(prompts), desc=label, unit="req", file=sys.stderr, disable=args.no_progress) as bar,
        PeakSampler(vram_source, metrics_url) as sampler,
    ):
        result = await run_cell(
            client,
            model,
            prompts,
            batch=batch,
            max_tokens=args.max_tokens,
            ignore_eos=not args.no_ignore_eos,
            stop=stop,
            on_done=lambda _: bar.update(1),
        )
    slo = Slo(**{f"{name}_ms": value for name, value in args.goodput})
    measured = sorted({s.prompt_tokens for s in result.samples if s.success})
    if not measured:
        tokens_label = str(args.prompt_tokens)
    elif len(measured) == 1:
        tokens_label = str(measured[0])
    else:
        tokens_label = f"{measured[0]}-{measured[-1]}"
    vram = sampler.reading()
    return {
        "batch": batch,
        "ctx": args.context,
        "images": images,
        "image_size": args.image_size if images else None,
        "prompt_tokens": args.prompt_tokens,
        "prompt_tokens_label": tokens_label,
        "max_tokens": args.max_tokens,
        "ignore_eos": not args.no_ignore_eos,
        "requests": len(prompts),
        "warmup": args.warmup,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "interrupted": result.interrupted,
        "vram": {"mib": vram.mib, "source": vram.source},
        "metrics": compute_metrics(result.samples, max(result.duration_s, 1e-9), slo=slo),
        "samples": [s.to_json() for s in result.samples],
    }
