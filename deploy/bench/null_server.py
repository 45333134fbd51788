"""A zero-latency OpenAI-compatible server: it streams ``max_tokens`` one-word chunks as fast as it can.

Used by ``python -m deploy bench --client-overhead`` to measure benchmark clients, not models: every delay
seen against it is the client's (plus this server's fixed cost, equal for all clients). It must be much
faster than the clients it measures, or it measures itself; so it is a plain ``asyncio.Protocol`` speaking
just enough HTTP/1.1 (keep-alive, ``Content-Length`` request bodies, chunked responses), with every stream
message encoded once in advance. It still writes each message separately and lets other connections run
between messages, as a real server that streams token by token does. It runs as its own process
(``python -m deploy.bench.null_server --port N``), so it never shares a GIL with a client.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(streamed with SSE, usage last when ``stream_options.include_usage`` asks for it, then ``[DONE]``; or whole).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

MODEL_ID = "null-model"


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked response."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(payload: dict[str, Any]) -> bytes:
    return _chunk(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")


def _response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (
        status,
        reason,
        content_type,
        len(body),
    )
    return head + body


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_DONE = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def prompt_tokens(request: dict[str, Any]) -> int:
    """A rough prompt length (words) so clients that read usage see a number."""
    text = json.dumps(request["messages"]) if "messages" in request else str(request.get("prompt", ""))
    return max(1, len(text.split()))


def stream_messages(request: dict[str, Any], chat: bool) -> list[bytes]:
    """Every chunk of one streamed answer, encoded: ``max_tokens`` tokens, usage when asked, ``[DONE]``."""
    n = int(request.get("max_completion_tokens") or request.get("max_tokens") or 16)
    kind = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": "null", "object": kind, "created": int(time.time()), "model": MODEL_ID}

    def choice(i: int) -> dict[str, Any]:
        finish = "length" if i == n - 1 else None
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": "tok "} if i == 0 else {"content": "tok "}
            return {"index": 0, "delta": delta, "finish_reason": finish}
        return {"index": 0, "text": "tok ", "finish_reason": finish}

    # Tokens 1..n-2 are identical: encode one and repeat it.
    middle = _sse({**base, "choices": [choice(1)]}) if n > 2 else b""
    messages = [_sse({**base, "choices": [choice(i)]}) if i in (0, n - 1) else middle for i in range(n)]
    if (request.get("stream_options") or {}).get("include_usage"):
        pt = prompt_tokens(request)
        usage = {"prompt_tokens": pt, "completion_tokens": n, "total_tokens": pt + n}
        messages.append(_sse({**base, "choices": [], "usage": usage}))
    messages.append(_DONE)
    return messages


def whole_answer(request: dict[str, Any], chat: bool) -> dict[str, Any]:
    """A non-streamed answer of ``max_tokens`` tokens."""
    n = int(request.get("max_completion_tokens") or request.get("max_tokens") or 16)
    pt = prompt_tokens(request)
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    if chat:
        choice["message"] = {"role": "assistant", "content": "tok " * n}
    else:
        choice["text"] = "tok " * n
    return {
        "id": "null",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [choice],
        "usage": {"prompt_tokens": pt, "completion_tokens": n, "total_tokens": pt + n},
    }


_MODELS = json.dumps({"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "null"}]}).encode()


class NullProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: requests are answered in order; streams are written message by message."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        if self.busy is not None:
            self.busy.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self.buffer += data
        if self.busy is None or self.busy.done():
            self.busy = asyncio.get_running_loop().create_task(self.serve())

    def _next_request(self) -> tuple[str, str, bytes] | None:
        """(method, path, body) of the first complete request in the buffer, taken out of it; None if partial."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.buffer) < end + 4 + length:
            return None
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        return method, path.split("?", 1)[0], body

    async def serve(self) -> None:
        """Answer every complete request in the buffer, in order."""
        while self.transport is not None and (request := self._next_request()) is not None:
            method, path, body = request
            write = self.transport.write
            if method == "GET" and path in ("/health", "/ping"):
                write(_response(200, b""))
            elif method == "GET" and path == "/v1/models":
                write(_response(200, _MODELS))
            elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
                chat = path.endswith("chat/completions")
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    write(_response(400, b'{"error":{"message":"the body is not JSON"}}'))
                    continue
                if not payload.get("stream"):
                    write(_response(200, json.dumps(whole_answer(payload, chat)).encode()))
                    continue
                write(_STREAM_HEAD)
                for message in stream_messages(payload, chat):
                    if self.transport is None:
                        return
                    self.transport.write(message)
                    await asyncio.sleep(0)  # one message per write, other streams in between
            else:
                write(_response(404, json.dumps({"error": {"message": f"no route {method} {path}"}}).encode()))


async def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve on ``host:port`` until cancelled."""
    server = await asyncio.get_running_loop().create_server(NullProtocol, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve on 127.0.0.1 (``--port``) until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
