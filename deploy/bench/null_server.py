"""A zero-latency OpenAI-compatible server: it streams ``max_tokens`` one-word chunks as fast as it can.

Used by ``python -m deploy bench --client-overhead`` to measure benchmark clients, not models: every delay
seen against it is the client's (and this server's fixed, equal-for-all cost). Plain ASGI on uvicorn, run as
its own process (``python -m deploy.bench.null_server --port N``) so it never shares a GIL with a client.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

MODEL_ID = "null-model"
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _send_json(send: Any, status: int, payload: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _prompt_tokens(request: dict[str, Any]) -> int:
    """A rough prompt length (words) so clients that read usage see a number."""
    text = json.dumps(request["messages"]) if "messages" in request else str(request.get("prompt", ""))
    return max(1, len(text.split()))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application: /health, /v1/models, /v1/chat/completions and /v1/completions."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path in ("/health", "/ping") and method == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/v1/models" and method == "GET":
        await _send_json(
            send, 200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "null"}]}
        )
        return
    if path not in ("/v1/chat/completions", "/v1/completions") or method != "POST":
        await _send_json(send, 404, {"error": {"message": f"no route {method} {path}", "type": "NotFoundError"}})
        return
    request = json.loads(await _read_body(receive) or b"{}")
    chat = path.endswith("chat/completions")
    n = int(request.get("max_completion_tokens") or request.get("max_tokens") or 16)
    usage = {"prompt_tokens": _prompt_tokens(request), "completion_tokens": n, "total_tokens": 0}
    usage["total_tokens"] = usage["prompt_tokens"] + n
    created = int(time.time())
    kind = "chat.completion" if chat else "text_completion"
    if not request.get("stream"):
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": "tok " * n}
        else:
            choice["text"] = "tok " * n
        await _send_json(
            send,
            200,
            {"id": "null", "object": kind, "created": created, "model": MODEL_ID, "choices": [choice], "usage": usage},
        )
        return
    await send({"type": "http.response.start", "status": 200, "headers": _SSE})

    def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk = {"id": "null", "object": kind + ".chunk", "created": created, "model": MODEL_ID, "choices": choices}
        return {
            "type": "http.response.body",
            "body": b"data: " + json.dumps(chunk | (extra or {})).encode() + b"\n\n",
            "more_body": True,
        }

    for i in range(n):
        if chat:
            delta: dict[str, Any] = {"content": "tok "}
            if i == 0:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta, "finish_reason": "length" if i == n - 1 else None}
        else:
            choice = {"index": 0, "text": "tok ", "finish_reason": "length" if i == n - 1 else None}
        await send(event([choice]))
    if (request.get("stream_options") or {}).get("include_usage"):
        await send(event([], {"usage": usage}))
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def main() -> None:
    """Serve :func:`app` on 127.0.0.1 (``--port``) until killed."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
