"""Runs one benchmark cell: ``requests`` streamed requests under one load model.

Two load models, both ``vllm bench serve``'s:

- closed loop (``request_rate`` infinite): ``batch`` workers each send their next request as soon as the
  previous one finishes (``--max-concurrency B --request-rate inf``);
- open loop (``request_rate`` R): requests arrive as a Poisson process of rate R per second (exponential
  gaps, seeded), each sent on arrival unless ``batch`` requests are already in flight, in which case it waits
  for a free slot (``--request-rate R [--max-concurrency B]``). As in vLLM, a request's clock starts when it
  is sent, so time spent waiting for a slot is not part of its TTFT.

Request bodies are encoded before the clock starts, so the event loop does nothing but send and read while
the cell runs. A stop event (Ctrl-C) ends the run early: requests in flight are cancelled and counted as
incomplete, and what finished is still reported.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.bench.client import ServerClient, encode_body
from deploy.bench.metrics import RequestSample
from deploy.bench.workload import Prompt


@dataclass
class CellResult:
    """The samples of one cell, its wall time, and how many requests were cut off by a stop."""

    samples: list[RequestSample]
    duration_s: float
    interrupted: bool
    # Requests in flight when the run was stopped (cancelled, not measured) and requests never sent.
    cancelled: int = 0
    not_sent: int = 0


def request_body(model: str, prompt: Prompt, max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
    """The chat request for one prompt: greedy, exactly ``max_tokens`` output tokens when ``ignore_eos``."""
    body: dict[str, Any] = {"model": model, "messages": prompt.messages, "max_tokens": max_tokens, "temperature": 0}
    if ignore_eos:
        # vLLM, SGLang and llama.cpp all read this extension; it keeps every answer max_tokens long.
        body["ignore_eos"] = True
    return body


def arrival_times(count: int, rate: float, seed: int) -> list[float]:
    """Send times (seconds from the start) of ``count`` Poisson arrivals at ``rate`` per second; all 0 for inf."""
    if math.isinf(rate):
        return [0.0] * count
    rng = random.Random(seed)
    times, t = [], 0.0
    for _ in range(count):
        times.append(t)
        t += rng.expovariate(rate)
    return times


async def run_cell(
    client: ServerClient,
    model: str,
    prompts: list[Prompt],
    *,
    batch: int | None,
    max_tokens: int,
    ignore_eos: bool,
    stop: asyncio.Event,
    on_done: Callable[[RequestSample], None] | None = None,
    request_rate: float = math.inf,
    seed: int = 0,
) -> CellResult:
    """Send every prompt under the load model; return the finished samples (in request order).

    ``batch`` is the concurrency limit (None: unlimited, only with a finite ``request_rate``).
    """
    if batch is None and math.isinf(request_rate):
        raise ValueError("a closed loop needs a batch size")
    bodies = [encode_body(request_body(model, p, max_tokens, ignore_eos)) for p in prompts]
    samples: list[RequestSample] = []
    in_flight: set[int] = set()

    async def send(index: int) -> None:
        in_flight.add(index)
        sample = await client.stream_chat(index, bodies[index], images=prompts[index].images)
        in_flight.discard(index)
        if not sample.prompt_tokens and prompts[index].prompt_tokens:
            sample.prompt_tokens = prompts[index].prompt_tokens
        samples.append(sample)
        if on_done is not None:
            on_done(sample)

    started = time.perf_counter()
    if math.isinf(request_rate):
        queue = list(range(len(prompts)))
        queue.reverse()

        async def worker() -> None:
            while queue and not stop.is_set():
                await send(queue.pop())

        assert batch is not None
        tasks = [asyncio.create_task(worker()) for _ in range(min(batch, len(prompts)))]
    else:
        slots = asyncio.Semaphore(batch) if batch else None

        async def arrive(index: int, at: float) -> None:
            delay = started + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if slots is None:
                await send(index)
                return
            async with slots:
                if not stop.is_set():
                    await send(index)

        times = arrival_times(len(prompts), request_rate, seed)
        tasks = [asyncio.create_task(arrive(i, t)) for i, t in enumerate(times)]
    cancelled = await _wait_all(tasks, stop, in_flight)
    duration = time.perf_counter() - started
    samples.sort(key=lambda s: s.index)
    not_sent = len(prompts) - len(samples) - cancelled
    return CellResult(samples, duration, stop.is_set(), cancelled=cancelled, not_sent=not_sent)


async def _wait_all(tasks: list[asyncio.Task[None]], stop: asyncio.Event, in_flight: set[int]) -> int:
    """Wait for ``tasks``; when ``stop`` is set first, cancel them and return how many requests were in flight."""
    stopper = asyncio.create_task(stop.wait())
    pending: set[asyncio.Task[Any]] = set(tasks)
    cancelled = 0
    try:
        while pending:
            done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            if stopper in done:
                cancelled = len(in_flight)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                pending = set()
            for task in done - {stopper}:
                task.result()  # a bug in the worker must surface, not vanish
    finally:
        stopper.cancel()
    return cancelled
