"""``python -m deploy bench``: benchmark a running OpenAI-compatible server and fill the card's table.

Modes:

- default: stream requests to ``--base-url`` for every batch size in ``--concurrency`` (or request rate,
  ``--request-rate``) and image count in ``--images``, and print the card's table; ``--json`` keeps every
  request, ``--markdown`` writes the tables, ``--slo`` adds goodput.
- ``--sweep 1,2,4,8,16``: the same over a series of concurrencies (or ``--sweep-over rate``: request
  rates), plus a PNG of throughput against latency with the Pareto front (``--plot``).
- ``--compare-vllm``: after each cell, vLLM 0.21.0's ``vllm bench serve`` sends the same prompts to the
  same server under the same load; both sets of numbers are printed side by side and kept in the JSON.
- ``--merge A.json B.json ...``: one table from several runs (engines, formats, GPUs); ``--fill-card`` puts
  it into a Markdown file between markers, ``--plot`` draws a sweep from saved results.
- ``--client-overhead``: this client against ``vllm bench serve`` on a zero-latency local server, in
  interleaved rounds (see :mod:`deploy.bench.overhead`).

Exit status: 0 when every request succeeded; 1 when some failed, the run was interrupted (Ctrl-C; what
finished is written, marked incomplete) or the server failed mid-run; 2 for bad input (options, an
unreachable server, a wrong model name, an SLO that does not parse), in which case no file is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

# Imported here, not where used: without the bench extra (numpy), `python -m deploy bench` must answer with the
# extra to install (deploy/__main__.py). aiohttp, matplotlib and tqdm stay lazy: every `python -m deploy`
# (the image's health probe too) builds this parser.
from deploy.bench.metrics import parse_slo

T = TypeVar("T")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8, not {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers like 1,8, not {text!r}")
    return values


def _number_list(text: str) -> list[float]:
    """``--sweep``: comma-separated positive numbers (concurrencies or requests/s); at least one."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1,2,4,8,16, not {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("a sweep needs at least one point, e.g. --sweep 1,2,4,8,16")
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"sweep points must be positive numbers, not {text!r}")
    return values


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected requests per second (a number, or inf), not {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the request rate must be positive, not {text!r}")
    return value


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
    p.add_argument("--api-key", default=None, help="API key (default: $VLLM_API_KEY; never printed or saved)")
    p.add_argument(
        "--concurrency",
        type=_int_list,
        help="batch sizes, comma-separated (default 1,8); with a request rate: the limit in flight (default none)",
    )
    p.add_argument(
        "--request-rate",
        type=_rate,
        default=math.inf,
        metavar="REQ_PER_S",
        help="open loop: Poisson arrivals at this rate, --concurrency the limit in flight (default inf: closed loop)",
    )
    p.add_argument(
        "--context", type=int, default=32768, help="context length the card's ctx column names (default 32768)"
    )
    p.add_argument("--prompt-tokens", type=int, help="prompt length in tokens (default: --context minus --max-tokens)")
    p.add_argument("--max-tokens", type=int, default=256, help="output tokens per request (default 256)")
    p.add_argument(
        "--requests", type=int, help="measured requests per cell (default: 4 x batch, at least 8; rates: 10 s of them)"
    )
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
        "--slo",
        nargs="+",
        default=[],
        metavar="NAME=MS",
        help="SLOs for goodput: ttft_ms=, tpot_ms=, e2el_ms= (e.g. --slo ttft_ms=300 tpot_ms=50)",
    )
    p.add_argument("--goodput", nargs="+", default=[], metavar="NAME:MS", help="the same as --slo in vLLM's spelling")
    p.add_argument(
        "--sweep",
        type=_number_list,
        metavar="POINTS",
        help="run at each of these concurrencies (or rates, --sweep-over rate) and plot them",
    )
    p.add_argument("--sweep-over", choices=("concurrency", "rate"), default="concurrency", help="what --sweep varies")
    p.add_argument("--plot", type=Path, metavar="PNG", help="sweep plot path (default: next to --json, else ./)")
    p.add_argument(
        "--vram-from", choices=("auto", "metrics", "nvidia-smi", "none"), default="auto", help="GPU memory source"
    )
    p.add_argument("--metrics-url", help="Prometheus endpoint with GPU memory (default: BASE_URL/metrics)")
    p.add_argument("--stall-timeout", type=float, default=600.0, help="seconds a stream may stay silent (default 600)")
    p.add_argument("--no-ignore-eos", action="store_true", help="let answers stop early at end-of-sequence")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when not on a TTY)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt text, images and arrival times")
    p.add_argument("--json", type=Path, help="write the full result (every request) here")
    p.add_argument("--markdown", type=Path, help="write the card's table and the full table here")
    p.add_argument(
        "--compare-vllm",
        action="store_true",
        help="also run `vllm bench serve` with the same prompts and load; print both side by side",
    )
    p.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON", help="only merge earlier --json results into one table"
    )
    p.add_argument("--fill-card", type=Path, metavar="MD", help="--merge: put the card's table into this Markdown file")
    p.add_argument(
        "--client-overhead", action="store_true", help="measure this client and `vllm bench serve` on a null server"
    )
    p.add_argument("--rounds", type=int, default=5, help="--client-overhead: interleaved rounds per batch (default 5)")
    p.add_argument("--vllm-python", help="interpreter with vLLM 0.21.0 (default: $VLLM_PYTHON, else this one)")
    p.add_argument("--tokenizer", help="tokenizer folder for `vllm bench serve` (default: a throwaway word tokenizer)")
    p.set_defaults(handler=run)


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen mode."""
    from deploy.bench.client import BenchError

    if args.merge:
        return _merge(args)
    if args.client_overhead:
        from deploy.bench.overhead import run_overhead

        return run_overhead(args)
    problem = _check_options(args) or _check_outputs(args) or _check_tools(args)
    if problem:
        return _fail(problem)
    try:
        outcome = asyncio.run(_bench(args))
    except BenchError as exc:
        return _fail(str(exc))  # nothing was measured: bad input, no file written
    return _finish(args, outcome)


def _check_options(args: argparse.Namespace) -> str | None:
    """A message for the first bad option, or None (options only: no file system, no network)."""
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
    args.concurrency_given = args.concurrency is not None
    if args.concurrency is None:
        args.concurrency = [1, 8]
    if 0 in args.concurrency:
        return "--concurrency values must be at least 1"
    if args.requests is not None and args.requests < 1:
        return "--requests must be at least 1"
    if args.warmup < 0:
        return "--warmup must be 0 or more"
    if args.stall_timeout <= 0:
        return "--stall-timeout must be positive"
    try:
        args.slo_parsed = parse_slo([*args.slo, *args.goodput])
    except ValueError as exc:
        return f"{exc} (e.g. --slo ttft_ms=300 tpot_ms=50)"
    if args.sweep is not None:
        if args.sweep_over == "concurrency" and any(v != int(v) for v in args.sweep):
            return f"--sweep over concurrency takes whole numbers, not {args.sweep}"
        if args.sweep_over == "rate" and len(args.concurrency) > 1 and args.concurrency_given:
            return "--sweep-over rate takes one --concurrency (the limit in flight) or none"
        if args.sweep_over == "concurrency" and args.concurrency_given:
            return "--sweep over concurrency replaces --concurrency: give one of them"
        if args.sweep_over == "concurrency" and not math.isinf(args.request_rate):
            return "--sweep over concurrency is a closed loop: drop --request-rate, or use --sweep-over rate"
    if not math.isinf(args.request_rate) and args.concurrency_given and len(args.concurrency) > 1:
        return "--request-rate takes one --concurrency (the limit in flight) or none; to vary it, use --sweep"
    if args.compare_vllm and any(args.images):
        return "--compare-vllm sends text prompts only (vLLM's custom dataset has no per-request images): --images 0"
    if args.fill_card is not None:
        return "--fill-card goes with --merge: fill the card from saved --json results"
    return None


def _plot_path(args: argparse.Namespace) -> Path | None:
    """Where a sweep's plot goes: --plot, else beside --json or --markdown, else ./bench-sweep.png."""
    if args.sweep is None and args.plot is None:
        return None
    if args.plot is not None:
        return args.plot
    for path in (args.json, args.markdown):
        if path is not None:
            return path.with_name(path.stem + "-sweep.png")
    return Path("bench-sweep.png")


def _check_outputs(args: argparse.Namespace) -> str | None:
    """Refuse output paths that could not be written, before a run that may take an hour."""
    from deploy.bench.report import check_writable

    args.plot_path = _plot_path(args)
    for path in (args.json, args.markdown, args.plot_path):
        if path is not None and (problem := check_writable(path)):
            return problem
    if args.plot_path is not None and args.plot_path.suffix.lower() != ".png":
        return f"the plot is a PNG: name it *.png, not {args.plot_path}"
    return None


def _check_tools(args: argparse.Namespace) -> str | None:
    """Optional tools the chosen options need (matplotlib for plots, vLLM for --compare-vllm)."""
    if args.plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return (
                "sweep plots need matplotlib: pip install 'gemma4-serve[bench]' (or pip install matplotlib), "
                "or run without a plot and draw it later: --merge RESULT.json --plot sweep.png"
            )
    if args.compare_vllm:
        from deploy.bench.vllm_bench import VllmBenchError, check_vllm_python, find_vllm_python

        args.vllm_python = find_vllm_python(args.vllm_python)
        try:
            args.vllm_version = check_vllm_python(args.vllm_python)
        except VllmBenchError as exc:
            return f"--compare-vllm: {exc}"
    return None


def _merge(args: argparse.Namespace) -> int:
    from deploy.bench import report

    if args.plot is not None:
        args.plot_path = args.plot
        if problem := _check_tools(args):
            return _fail(problem)
    try:
        docs = report.load_documents(args.merge)
        runs = [run for doc in docs for run in doc["runs"]]
        card = report.fill_card(args.fill_card.read_text(), runs) if args.fill_card else None
    except report.ReportError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"--fill-card {args.fill_card}: {exc.strerror}")
    sources = [
        {"file": str(path), "server": doc.get("server"), "config": doc.get("config")}
        for path, doc in zip(args.merge, docs, strict=True)
    ]
    report.write(
        runs,
        json_path=args.json,
        markdown_path=args.markdown,
        interrupted=any(not doc.get("complete", True) for doc in docs),
        created=_now(),
        versions=_versions(),
        extra={"merged_from": sources},
    )
    if card is not None and args.fill_card is not None:
        report.write_atomic(args.fill_card, card)
        print(f"filled the card's table in {args.fill_card}", file=sys.stderr)
    if args.plot is not None:
        from deploy.bench.plot import plot_sweep

        plot_sweep(runs, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    print(report.card_table(runs))
    return 0


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _versions() -> dict[str, str]:
    """The version of this tool and of the libraries that shape its numbers."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("gemma4-serve", "aiohttp", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed (run from a checkout)" if dist == "gemma4-serve" else "missing"
    return versions


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """Every option of the run, as given and resolved; the API key is never kept."""
    skip = {"handler", "api_key", "slo_parsed", "merge", "fill_card", "client_overhead", "rounds", "concurrency_given"}
    config: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if key in skip:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, float) and math.isinf(value):
            value = "inf"
        config[key] = value
    config["api_key_set"] = _api_key(args) is not None
    config["slo"] = args.slo_parsed.as_dict()
    return config


async def _until_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await ``awaitable`` unless ``stop`` is set first (then cancel it and return None)."""
    from deploy.bench.client import BenchError

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


def _cells(args: argparse.Namespace) -> list[tuple[int, int | None, float]]:
    """(images, batch, request rate) of every cell, in run order."""
    if args.sweep is not None and args.sweep_over == "concurrency":
        loads = [(int(v), math.inf) for v in args.sweep]
    elif args.sweep is not None:
        limit = args.concurrency[0] if args.concurrency_given else None
        loads = [(limit, float(v)) for v in args.sweep]
    elif math.isinf(args.request_rate):
        loads = [(b, math.inf) for b in args.concurrency]
    else:
        limit = args.concurrency[0] if args.concurrency_given else None
        loads = [(limit, args.request_rate)]
    return [(images, batch, rate) for images in args.images for batch, rate in loads]


def _requests_for(args: argparse.Namespace, batch: int | None, rate: float) -> int:
    if args.requests:
        return int(args.requests)
    if math.isinf(rate):
        return max(8, 4 * (batch or 1))
    return max(16, math.ceil(rate * 10))  # about ten seconds of arrivals


class _Outcome:
    """What a run produced: the stages, why it stopped early (if it did), and its context for the report."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.interrupted = False
        self.stopped_by = ""
        self.server: dict[str, Any] = {}
        self.failed = 0


async def _bench(args: argparse.Namespace) -> _Outcome:
    """Every cell of the run. :class:`BenchError` before the first cell means bad input (nothing measured)."""
    from deploy.bench.client import BenchError, ServerClient
    from deploy.bench.gpu_memory import choose_source, gpu_name
    from deploy.bench.server_info import detect_engine, detect_format, pick_model
    from deploy.bench.workload import PromptBuilder

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # First Ctrl-C: stop cleanly and report; a second one falls through to Python's KeyboardInterrupt.
    with contextlib.suppress(NotImplementedError, RuntimeError):

        def _on_sigint() -> None:
            print("\nCtrl-C: stopping, writing what was measured (Ctrl-C again to abort)", file=sys.stderr)
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        loop.add_signal_handler(signal.SIGINT, _on_sigint)
    outcome = _Outcome()
    api_key = _api_key(args)
    base_url = args.base_url.rstrip("/")
    cells = _cells(args)
    connections = max((b or _requests_for(args, b, r)) for _, b, r in cells)
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
        version = await client.try_get("/version")
        outcome.server = {
            "base_url": base_url,
            "model": model,
            "root": card.get("root"),
            "max_model_len": limit,
            "engine": engine,
            "format": fmt,
            "version": _json_or_none(version),
        }
        metrics_url = args.metrics_url or f"{base_url}/metrics"
        vram_source = await asyncio.to_thread(choose_source, args.vram_from, metrics_url)
        gpu = args.gpu or await asyncio.to_thread(gpu_name)
        builder = PromptBuilder(client, model, count_timeout_s=args.stall_timeout)
        print(f"benchmarking {model} on {engine} ({fmt}) at {base_url}", file=sys.stderr)
        with contextlib.ExitStack() as stack:
            compare = None
            if args.compare_vllm:
                # Its import takes seconds: in a thread, so this loop keeps its connections serviced meanwhile.
                from deploy.bench.vllm_bench import VllmBenchError

                compare = _VllmComparison(args, base_url, model, api_key)
                try:
                    await asyncio.to_thread(compare.__enter__)
                except VllmBenchError as exc:
                    raise BenchError(f"--compare-vllm: {exc}") from exc
                stack.push(compare.__exit__)
            for number, (images, batch, rate) in enumerate(cells):
                if stop.is_set():
                    break
                try:
                    run = await _cell(args, client, builder, model, images, batch, rate, stop, vram_source, metrics_url)
                except BenchError as exc:
                    if number == 0:
                        raise  # the first cell could not start: a setup problem, reported as bad input
                    outcome.stopped_by = str(exc)
                    print(f"error: {exc}; writing the cells measured so far", file=sys.stderr)
                    break
                if run is None:
                    break
                run.update(engine=engine, format=fmt, model=model, base_url=base_url, gpu=gpu)
                if compare is not None and not stop.is_set():
                    await asyncio.to_thread(compare.run, run, stop.is_set)
                outcome.failed += run["metrics"]["failed"]
                outcome.runs.append(run)
    outcome.interrupted = stop.is_set() or bool(outcome.stopped_by)
    return outcome


def _json_or_none(reply: Any) -> Any:
    if reply is None or reply.status != 200:
        return None
    try:
        return reply.json()
    except ValueError:
        return None


async def _cell(
    args: argparse.Namespace,
    client: Any,
    builder: Any,
    model: str,
    images: int,
    batch: int | None,
    rate: float,
    stop: asyncio.Event,
    vram_source: str,
    metrics_url: str,
) -> dict[str, Any] | None:
    """Build the prompts, warm up and measure one cell; None when a stop came before anything was measured."""
    from deploy.bench.server_info import counter_deltas, vllm_counters

    requests = _requests_for(args, batch, rate)
    label = _cell_label(batch, rate, images)
    with _progress(args, requests + args.warmup, f"{label}: prompts", "prompt") as bar:
        prompts = await _until_stopped(
            builder.build(
                requests + args.warmup,
                args.prompt_tokens,
                images,
                image_size=args.image_size,
                seed=args.seed,
                on_prompt=lambda: bar.update(1),
            ),
            stop,
        )
    if prompts is None:
        return None
    warmup, measured = prompts[: args.warmup], prompts[args.warmup :]
    if warmup:
        await _warm_up(args, client, model, warmup, stop)
    if stop.is_set():
        return None
    before = await asyncio.to_thread(vllm_counters, metrics_url, _api_key(args)) if args.compare_vllm else None
    run = await _measure(args, client, model, measured, batch, rate, images, stop, vram_source, metrics_url)
    if args.compare_vllm:  # the server's own TTFT for the same requests, beside vLLM's client's (compare_vllm)
        after = await asyncio.to_thread(vllm_counters, metrics_url, _api_key(args))
        run["server_ttft_mean_ms"] = counter_deltas(before, after)["server_ttft_mean_ms"]
    run["prompt_tokens_method"] = builder.method if args.prompt_tokens else "not measured (--prompt-tokens 0)"
    run["prompts"] = measured  # for --compare-vllm; dropped before the report is written
    m = run["metrics"]
    tpot = f"{m['tpot_ms']['p50']:.1f} ms" if m["tpot_ms"]["count"] else "- (one-token answers)"
    print(
        f"{label}: {m['completed']}/{len(measured)} ok, {m['output_throughput']:.1f} output tok/s, "
        f"TTFT p50 {m['ttft_ms']['p50']:.0f} ms, TPOT p50 {tpot}"
        + (f", goodput {m['request_goodput']:.2f} req/s" if m["request_goodput"] is not None else ""),
        file=sys.stderr,
    )
    if m["held_back_requests"]:
        print(
            f"{label}: warning: {m['held_back_requests']} of {m['completed']} answers arrived in one burst at the end "
            "(TTFT >= 90 % of E2EL): the server held its stream back (on CPU: starved of cores), so TTFT, TPOT and "
            "ITL describe that, not token-by-token streaming",
            file=sys.stderr,
        )
    if (m["tokens_per_message"] or 1.0) > 1.5:
        print(
            f"{label}: note: {m['tokens_per_message']:.1f} output tokens per streamed message: the server batched "
            "tokens, so ITL is per message (TPOT still uses the server's token count)",
            file=sys.stderr,
        )
    return run


def _api_key(args: argparse.Namespace) -> str | None:
    """``--api-key``, else ``$VLLM_API_KEY``, else None."""
    return args.api_key or os.environ.get("VLLM_API_KEY") or None


def _cell_label(batch: int | None, rate: float, images: int) -> str:
    label = f"batch {batch}" if math.isinf(rate) else f"{rate:g} req/s" + (f" (max {batch})" if batch else "")
    return label + (f", {images} img" if images else "")


def _progress(args: argparse.Namespace, total: int, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr, only on a terminal (compose logs, CI and pipes get the one-line summaries)."""
    from tqdm import tqdm

    disable = args.no_progress or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, leave=False)


async def _warm_up(args: argparse.Namespace, client: Any, model: str, prompts: list[Any], stop: asyncio.Event) -> None:
    """Send the unmeasured warm-up requests one at a time; a failure stops the run before it measures junk."""
    from deploy.bench.client import BenchError
    from deploy.bench.runner import run_cell

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
    client: Any,
    model: str,
    prompts: list[Any],
    batch: int | None,
    rate: float,
    images: int,
    stop: asyncio.Event,
    vram_source: str,
    metrics_url: str,
) -> dict[str, Any]:
    """One measured cell, with a progress bar and the GPU memory sampler running."""
    from deploy.bench.gpu_memory import PeakSampler
    from deploy.bench.metrics import compute_metrics
    from deploy.bench.runner import run_cell

    label = _cell_label(batch, rate, images)
    with (
        _progress(args, len(prompts), label, "req") as bar,
        PeakSampler(vram_source, metrics_url) as sampler,
    ):
        result = await run_cell(
            client,
            model,
            prompts,
            batch=batch,
            request_rate=rate,
            seed=args.seed,
            max_tokens=args.max_tokens,
            ignore_eos=not args.no_ignore_eos,
            stop=stop,
            on_done=lambda _: bar.update(1),
        )
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
        "request_rate": None if math.isinf(rate) else rate,
        "load": "closed loop" if math.isinf(rate) else "Poisson arrivals",
        "ctx": args.context,
        "images": images,
        "image_size": args.image_size if images else None,
        "prompt_tokens": args.prompt_tokens,
        "prompt_tokens_label": tokens_label,
        "max_tokens": args.max_tokens,
        "ignore_eos": not args.no_ignore_eos,
        "requests": len(prompts),
        "warmup": args.warmup,
        "created": _now(),
        "interrupted": result.interrupted,
        "incomplete": {"cancelled_in_flight": result.cancelled, "not_sent": result.not_sent}
        if result.interrupted
        else None,
        "vram": {"mib": vram.mib, "source": vram.source},
        "metrics": compute_metrics(result.samples, max(result.duration_s, 1e-9), slo=args.slo_parsed),
        "samples": [s.to_json() for s in result.samples],
    }


class _VllmComparison:
    """``vllm bench serve`` for each measured cell, with our prompts; results go into the run's ``compare_vllm``."""

    def __init__(self, args: argparse.Namespace, base_url: str, model: str, api_key: str | None) -> None:
        self.args = args
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._bench: Any = None
        self.tokenizer = ""

    def __enter__(self) -> _VllmComparison:
        from deploy.bench.vllm_bench import VllmBench, write_word_tokenizer

        self._tmp = tempfile.TemporaryDirectory(prefix="bench-compare-")
        tmp = Path(self._tmp.name)
        try:
            self.tokenizer = self.args.tokenizer or str(write_word_tokenizer(tmp / "tokenizer"))
            self._bench = VllmBench(self.args.vllm_python, log=tmp / "vllm-bench.log", api_key=self.api_key)
            self._bench.__enter__()
        except BaseException:
            self._bench = None
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bench is not None:
            self._bench.__exit__()
        if self._tmp is not None:
            self._tmp.cleanup()

    def run(self, run: dict[str, Any], stopped: Callable[[], bool]) -> None:
        """Run vLLM's client on ``run``'s prompts and load; store its numbers and ours side by side."""
        from deploy.bench.server_info import counter_deltas, vllm_counters
        from deploy.bench.vllm_bench import VllmBenchError, bench_args, headline, request_records, write_dataset

        assert self._tmp is not None
        prompts = run["prompts"]
        dataset = write_dataset(prompts, Path(self._tmp.name) / f"prompts-{len(prompts)}.jsonl")
        argv = bench_args(
            base_url=self.base_url,
            model=self.model,
            tokenizer=self.tokenizer,
            dataset=dataset,
            requests=len(prompts),
            max_tokens=self.args.max_tokens,
            batch=run["batch"],
            request_rate=run["request_rate"] or math.inf,
            warmup=self.args.warmup,
            ignore_eos=run["ignore_eos"],
            seed=self.args.seed,
            slo=self.args.slo_parsed.as_dict() or None,
        )
        print(f"{_cell_label(run['batch'], run['request_rate'] or math.inf, 0)}: vllm bench serve ...", file=sys.stderr)
        before = vllm_counters(f"{self.base_url}/metrics", self.api_key)
        try:
            result = self._bench.run(argv, stopped=stopped)
            theirs, records, error = headline(result), request_records(result), None
        except VllmBenchError as exc:
            theirs, records, error = None, [], str(exc)
            print(f"error: {exc}", file=sys.stderr)
        server = counter_deltas(before, vllm_counters(f"{self.base_url}/metrics", self.api_key))
        cached = server["prefix_cache_hit_share"]
        if cached is not None and cached > 0.05:
            print(
                f"warning: the server found {cached:.0%} of vllm bench serve's prompt tokens in its prefix cache "
                "(our run had just sent the same prompts), so its TTFT counts less prefill than ours; compare "
                "on a server started with --no-enable-prefix-caching, or read only TPOT and ITL",
                file=sys.stderr,
            )
        run["compare_vllm"] = {
            "tool": f"vllm bench serve {self._bench.version}",
            "command": ["vllm", "bench", "serve", *argv],
            "metrics": theirs,
            "error": error,
            # vLLM's own per-request numbers, so that rounds can be pooled (make bench-agreement).
            "samples": records,
            # From vLLM's /metrics around its run (warm-ups included): the share of its prompt tokens found
            # cached, and the mean TTFT the server measured; None where the server exposes neither.
            **server,
        }


def _finish(args: argparse.Namespace, outcome: _Outcome) -> int:
    """Write the reports and print the tables; the exit status."""
    from deploy.bench import report

    if not outcome.runs:
        print("nothing was measured; no report written", file=sys.stderr)
        return 1
    for run in outcome.runs:
        run.pop("prompts", None)
    extra = {"stopped_by": outcome.stopped_by} if outcome.stopped_by else None
    report.write(
        outcome.runs,
        json_path=args.json,
        markdown_path=args.markdown,
        interrupted=outcome.interrupted,
        config=_config(args),
        server=outcome.server,
        versions=_versions(),
        created=_now(),
        extra=extra,
    )
    print(report.card_table(outcome.runs))
    if args.compare_vllm:
        from deploy.bench.compare import comparison_table

        print()
        print(comparison_table(outcome.runs))
    if args.plot_path is not None:
        from deploy.bench.plot import plot_sweep

        plot_sweep(outcome.runs, args.plot_path)
        print(f"wrote {args.plot_path}", file=sys.stderr)
    for path in (args.json, args.markdown):
        if path is not None:
            print(f"wrote {path}", file=sys.stderr)
    if outcome.interrupted:
        print("incomplete: the report covers only the requests that finished, and says so", file=sys.stderr)
    if outcome.failed:
        print(f"{outcome.failed} request(s) failed; their causes are in the JSON and Markdown", file=sys.stderr)
    return 1 if outcome.interrupted or outcome.failed else 0
