"""Prompts of an exact token length, with or without images, for the benchmark.

Lengths are measured by the server itself, so they include the chat template and the image tokens:

- ``/tokenize`` (vLLM, SGLang) counts a chat request without running it; used for text-only prompts.
- Otherwise (or with images) a one-token chat completion reports ``usage.prompt_tokens``. That runs a
  prefill per try, so the filler is fitted once and reused, and each request's real length is read back
  from the usage chunk of its own stream.

Every request starts with its own number, so no two prompts share a cached prefix beyond the template, and
each image is different noise, so no image cache hit either.
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from deploy.bench.client import BenchError, ServerClient

# Plain English words: every tokenizer splits them into a token or two, so the length is easy to steer.
_WORD_TEXT = """
time year people way day man thing woman life child world school state family student group country problem hand
part place case week company system program question work government number night point home water room mother area
money story fact month lot right study book eye job word business issue side kind head house service friend father
power hour game line end member law car city community name president team minute idea kid body information back
parent face others level office door health person art war history party result change morning reason research girl
guy moment air teacher force education
"""
_WORDS = tuple(_WORD_TEXT.split())
# How many times the fit may ask the server to count before it settles for the closest length below.
_MAX_COUNTS = 16
# What a count returns for a prompt the server refuses as longer than its context (an overshoot while fitting).
TOO_LONG = 1 << 40


@dataclass
class Prompt:
    """One request's messages and its length as the server counted it (None: not counted)."""

    messages: list[dict[str, Any]]
    prompt_tokens: int | None
    images: int
    exact: bool


def filler(words: int, seed: int) -> str:
    """``words`` words of deterministic pseudo-random text."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def noise_png_data_url(size: int, seed: int) -> str:
    """A ``size`` x ``size`` PNG of random noise as a data URL (a different image for each seed)."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - the bench extra and the vLLM image both have Pillow
        raise BenchError("image workloads need Pillow: pip install 'gemma4-serve[bench]'") from exc
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def make_messages(nonce: int, words: int, images: list[str], seed: int = 0, pad: int = 0) -> list[dict[str, Any]]:
    """A user turn: images first, then 'Request NNNNNN.', ``words`` words of filler and ``pad`` times ' .'.

    Words get the length close; the one-token ' .' pieces close the last gap a whole word cannot.

    The filler is the same for every request of a run and the number has a fixed width, so prompts differ
    in their first words only: no shared cached prefix, and (nearly) the same length without re-counting.
    """
    text = f"Request {nonce:06d}. {filler(words, seed)}" + " ." * pad
    if not images:
        return [{"role": "user", "content": text}]
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in images]
    parts.append({"type": "text", "text": text})
    return [{"role": "user", "content": parts}]


Counter = Callable[[list[dict[str, Any]]], Awaitable[int]]


async def fit_steps(
    count: Counter, build: Callable[[int], list[dict[str, Any]]], target: int, start: int
) -> tuple[int, int]:
    """The step count ``n`` whose prompt ``build(n)`` is ``target`` tokens long (or the closest below), and that length.

    ``count`` asks the server; ``build`` must grow with ``n``. Secant steps from ``start``, then single steps;
    at most ``_MAX_COUNTS`` counts.
    """
    base = await count(build(0))
    if target < base:
        raise BenchError(
            f"--prompt-tokens {target} is shorter than the {base} tokens the chat template, request number and "
            "images already take; ask for more prompt tokens"
        )
    best = (0, base)
    seen: dict[int, int] = {0: base}
    # Half the gap at first: a tokenizer that spends several tokens per step would overshoot the whole gap.
    n = max(start, 1) if start else max((target - base) // 2, 1)
    for _ in range(_MAX_COUNTS):
        if n in seen or best[1] == target:
            break
        tokens = seen[n] = await count(build(n))
        if best[1] < tokens <= target:
            best = (n, tokens)
        if tokens == target:
            break
        below = max((w for w, t in seen.items() if t < target), default=0)
        above = min((w for w, t in seen.items() if t > target), default=None)
        if above is not None and above - below <= 1:
            break  # no step count hits the target exactly: keep the closest below
        if tokens == TOO_LONG:
            n = (below + n) // 2  # longer than the server takes: no slope to follow, halve the step
            continue
        per_step = (tokens - base) / n
        step = round((target - tokens) / max(per_step, 0.1))
        if step == 0:
            step = 1 if tokens < target else -1
        n = max(below + 1, n + step)
        if above is not None:
            n = min(n, above - 1)
    return best


async def fit_prompt(
    count: Counter, build: Callable[[int, int], list[dict[str, Any]]], target: int, start: int
) -> tuple[int, int, int]:
    """Words, then ``' .'`` pieces, so ``build(words, pad)`` is ``target`` tokens; returns (words, pad, tokens)."""
    words, tokens = await fit_steps(count, lambda w: build(w, 0), target, start)
    pad = 0
    if tokens < target:
        pad, tokens = await fit_steps(count, lambda p: build(words, p), target, target - tokens)
    return words, pad, tokens


def _too_long(error: bytes) -> bool:
    """Whether an error body says the prompt exceeds the model's context (vLLM, SGLang, llama.cpp wordings)."""
    text = error.decode(errors="replace").lower()
    return any(k in text for k in ("maximum context length", "context length", "exceeds the available context"))


class PromptBuilder:
    """Builds prompts of exact length against one server, choosing the cheapest way it offers to count."""

    def __init__(self, client: ServerClient, model: str, *, count_timeout_s: float = 600.0) -> None:
        self.client = client
        self.model = model
        self.count_timeout_s = count_timeout_s
        self._tokenize: bool | None = None
        self.method = "not counted"

    async def _tokenize_count(self, messages: list[dict[str, Any]]) -> int | None:
        """VLLM's ``POST /tokenize`` for a chat request; None if the server has no such endpoint."""
        body = {"model": self.model, "messages": messages, "add_generation_prompt": True}
        reply = await self.client.try_post_json("/tokenize", body, timeout=60.0)
        if reply is not None and reply.status == 400 and self._tokenize and _too_long(reply.body):
            return TOO_LONG  # vLLM's /tokenize refuses prompts beyond max_model_len
        if reply is None or reply.status != 200:
            return None
        try:
            count = reply.json().get("count")
        except (ValueError, AttributeError):
            return None
        return int(count) if isinstance(count, int) else None

    async def _usage_count(self, messages: list[dict[str, Any]]) -> int:
        """The prompt length the server reports for a one-token chat completion of ``messages``."""
        try:
            answer = await self.client.chat(
                {"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0},
                timeout=self.count_timeout_s,
            )
        except BenchError as exc:
            if "answered 400" in str(exc) and _too_long(str(exc).encode()):
                return TOO_LONG
            raise
        usage = answer.get("usage") if isinstance(answer, dict) else None
        if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
            raise BenchError(
                "the server has no /tokenize endpoint and its chat completion carries no usage.prompt_tokens, "
                "so prompt lengths cannot be measured; pass --prompt-tokens 0 to send the filler unmeasured"
            )
        return int(usage["prompt_tokens"])

    async def count(self, messages: list[dict[str, Any]], *, images: bool) -> int:
        """Count with ``/tokenize`` when the server has it and there are no images, else through usage."""
        if not images and self._tokenize is not False:
            tokens = await self._tokenize_count(messages)
            if tokens == TOO_LONG:
                return tokens
            self._tokenize = tokens is not None
            if tokens is not None:
                self.method = "/tokenize"
                return tokens
        self.method = "usage.prompt_tokens of a 1-token request"
        return await self._usage_count(messages)

    async def build(
        self,
        requests: int,
        target: int,
        images: int,
        *,
        image_size: int = 512,
        seed: int = 0,
        on_prompt: Callable[[], None] | None = None,
    ) -> list[Prompt]:
        """``requests`` prompts of ``target`` tokens each (``target`` 0: a short unmeasured prompt).

        ``on_prompt`` is called once per prompt made (a progress bar: fitting 32k-token prompts takes a while).
        """
        tick = on_prompt or (lambda: None)
        urls = [
            [noise_png_data_url(image_size, seed * 100_003 + i * 17 + k) for k in range(images)]
            for i in range(requests)
        ]
        nonces = [(seed * 100_003 + i) % 1_000_000 for i in range(requests)]
        if target <= 0:
            for _ in nonces:
                tick()
            return [
                Prompt(make_messages(n, 16, u, seed), None, images, False) for n, u in zip(nonces, urls, strict=True)
            ]

        async def counter(messages: list[dict[str, Any]]) -> int:
            return await self.count(messages, images=images > 0)

        def builder(nonce: int, url: list[str]) -> Callable[[int, int], list[dict[str, Any]]]:
            return lambda w, p: make_messages(nonce, w, url, seed, p)

        words, pad, tokens = await fit_prompt(counter, builder(nonces[0], urls[0]), target, 0)
        prompts = [Prompt(make_messages(nonces[0], words, urls[0], seed, pad), tokens, images, tokens == target)]
        tick()
        per_request = self._tokenize is True
        for nonce, url in zip(nonces[1:], urls[1:], strict=True):
            if per_request:
                w, p, t = await fit_prompt(counter, builder(nonce, url), target, words)
                prompts.append(Prompt(make_messages(nonce, w, url, seed, p), t, images, t == target))
            else:
                # Counting costs a prefill here: reuse the fitted text (the numbers have a fixed width, so the
                # length is the same); each stream's usage chunk reports the real length.
                prompts.append(Prompt(make_messages(nonce, words, url, seed, pad), None, images, False))
            tick()
        return prompts
