"""Runs one benchmark cell: warm-up, then ``requests`` streamed requests ``batch`` at a time.

Closed loop like ``vllm bench serve --max-concurrency B`` with ``--request-rate inf``: B workers each send
their next request as soon as the previous one finishes. A stop event (Ctrl-C) ends the run early: requests
in flight are cancelled and left out, and what finished is still reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.bench.client import ServerClient
from deploy.bench.metrics import RequestSample
from deploy.bench.workload import Prompt


@dataclass
class CellResult:
    """The samples of one cell, its wall time and whether it was cut short."""

    samples: list[RequestSample]
    duration_s: float
    interrupted: bool


def request_body(model: str, prompt: Prompt, max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
    """The chat request for one prompt: greedy, exactly ``max_tokens`` output tokens when ``ignore_eos``."""
    body: dict[str, Any] = {"model": model, "messages": prompt.messages, "max_tokens": max_tokens, "temperature": 0}
    if ignore_eos:
        # vLLM, SGLang and llama.cpp all read this extension; it keeps every answer max_tokens long.
        body["ignore_eos"] = True
    return body


async def run_cell(
    client: ServerClient,
    model: str,
    prompts: list[Prompt],
    *,
    batch: int,
    max_tokens: int,
    ignore_eos: bool,
    stop: asyncio.Event,
    on_done: Callable[[RequestSample], None] | None = None,
) -> CellResult:
    """Send every prompt, ``batch`` at a time; return the finished samples (in request order)."""
    queue: asyncio.Queue[tuple[int, Prompt]] = asyncio.Queue()
    for item in enumerate(prompts):
        queue.put_nowait(item)
    samples: list[RequestSample] = []

    async def worker() -> None:
        while not stop.is_set():
            try:
                index, prompt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = request_body(model, prompt, max_tokens, ignore_eos)
            sample = await client.stream_chat(index, body, images=prompt.images)
            if not sample.prompt_tokens and prompt.prompt_tokens:
                sample.prompt_tokens = prompt.prompt_tokens
            samples.append(sample)
            if on_done is not None:
                on_done(sample)

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(min(batch, len(prompts)))]
    stopper = asyncio.create_task(stop.wait())
    pending = set(workers)
    while pending:
        done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
        pending.discard(stopper)
        if stopper in done:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            pending = set()
        for task in done - {stopper}:
            task.result()  # a bug in the worker must surface, not vanish
    stopper.cancel()
    duration = time.perf_counter() - started
    samples.sort(key=lambda s: s.index)
    return CellResult(samples, duration, stop.is_set())
