"""Fault-injecting and timing stubs for the bench and quality tools (plain ASGI apps for ``run_asgi``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

MODEL = "stub-model"


async def read_json(receive: Any) -> dict[str, Any]:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return json.loads(body or b"{}")


async def send_json(send: Any, status: int, payload: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def chunk(content: str | None, *, usage: dict[str, int] | None = None, finish: str | None = None) -> bytes:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    payload: dict[str, Any] = {"id": "x", "object": "chat.completion.chunk", "model": MODEL, "choices": choices}
    if usage:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def word_count(messages: list[dict[str, Any]]) -> int:
    """The stubs' tokenizer: one token per whitespace-separated word of the text, plus 3 for the template."""
    content = messages[0]["content"]
    text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    return len(text.split()) + 3


def streaming_app(
    *,
    ttft_s: float = 0.0,
    gap_s: float = 0.0,
    tokens: int = 5,
    fail_every: int = 0,
    stall_after_first: bool = False,
    tokenize: bool = False,
) -> Callable[..., Any]:
    """An OpenAI-style server that streams ``tokens`` chunks after ``ttft_s`` with ``gap_s`` between them.

    ``fail_every`` N: every N-th chat request answers 500. ``stall_after_first``: the stream sends one
    chunk and then nothing for 60 s. ``tokenize``: serve vLLM's ``POST /tokenize`` (word count).
    """
    state = {"chat": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/v1/models":
            card = {"id": MODEL, "owned_by": "vllm", "max_model_len": 4096}
            await send_json(send, 200, {"object": "list", "data": [card]})
            return
        if path == "/version":
            await send_json(send, 200, {"version": "0.21.0"})
            return
        if path == "/tokenize" and tokenize:
            body = await read_json(receive)
            await send_json(send, 200, {"count": word_count(body["messages"]), "max_model_len": 4096})
            return
        if path != "/v1/chat/completions":
            await send_json(send, 404, {"detail": "Not Found"})
            return
        body = await read_json(receive)
        state["chat"] += 1
        if fail_every and state["chat"] % fail_every == 0:
            await send_json(send, 500, {"error": {"message": "injected failure", "type": "InternalServerError"}})
            return
        usage = {"prompt_tokens": word_count(body["messages"]), "completion_tokens": tokens, "total_tokens": 0}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "x " * tokens}
            await send_json(
                send, 200, {"choices": [{"index": 0, "message": message, "finish_reason": "length"}], "usage": usage}
            )
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await asyncio.sleep(ttft_s)
        for i in range(tokens):
            if i:
                await asyncio.sleep(gap_s)
            await send({"type": "http.response.body", "body": chunk("x "), "more_body": True})
            if stall_after_first:
                await asyncio.sleep(60)
        await send({"type": "http.response.body", "body": chunk(None, usage=usage), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    return app
