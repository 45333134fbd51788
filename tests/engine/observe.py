"""What a server does with each request the smoke suite's vLLM expectations are about, in a comparable form.

:func:`observe` sends the same requests to any server (real vLLM or the stub in tests/fixtures/openai_stub.py)
and returns plain data: status codes, error bodies (numbers in messages replaced by ``N``), whether the
keep-alive connection survived the answer, how a stream ends, what /v1/models and /health answer. The
engine tests assert the smoke suite's expectations on the real engine's observations and require the stub's
to be identical, so the stub cannot drift from the engine it imitates.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from smoke_tests.servers import VLLM
from smoke_tests.validators import chat_body, image_content, stream_body

SERVED = "gemma-4-e2b-it"
# How long a connection must stay open after an answer to count as kept alive. The stub drops its connection
# after 0.3 s, real vLLM after logging the exception (well under a second on an idle machine).
KEEP_ALIVE_WINDOW_S = 2.5


def _normalise(body: Any) -> Any:
    """Numbers in error messages vary with the prompt and the tokenizer: compare their wording (digits -> N)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return {**body, "error": {**error, "message": re.sub(r"\d+", "N", error["message"])}}
    return body


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def exchange(url: str, method: str, path: str, body: Any = None, key: str | None = None) -> dict[str, Any]:
    """One request on a fresh keep-alive connection: status, body, ``Connection`` header, and whether the
    server closed the connection within :data:`KEEP_ALIVE_WINDOW_S` after answering."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        dropped = conn.sock is None or _closed_by_peer(conn.sock, KEEP_ALIVE_WINDOW_S)
        return {
            "status": response.status,
            "body": _normalise(_json_or_text(raw)) if raw else "",
            "connection_header": response.getheader("connection"),
            "connection_dropped": dropped,
        }
    finally:
        conn.close()


def _closed_by_peer(sock: socket.socket, window_s: float) -> bool:
    """True when the peer closes ``sock`` within ``window_s`` (readable with nothing to read)."""
    readable, _, _ = select.select([sock], [], [], window_s)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def stream_tail(url: str, key: str | None) -> dict[str, Any]:
    """How a streamed completion with usage ends: the last two events and the shape of the last chunk."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(stream_body(SERVED, "Hi")), headers=headers)
        response = conn.getresponse()
        events = [line for line in response.read().decode().split("\n\n") if line.strip()]
    finally:
        conn.close()
    usage_chunk = json.loads(events[-2].removeprefix("data: "))
    return {
        "content_type": response.getheader("content-type", "").split(";")[0],
        "last_event": events[-1],
        "usage_chunk_choices": usage_chunk.get("choices"),
        "usage_keys": sorted(usage_chunk.get("usage") or {}),
        "finish_chunk_has_reason": json.loads(events[-3].removeprefix("data: "))["choices"][0]["finish_reason"]
        is not None,
    }


def observe(url: str, key: str | None, max_model_len: int = 32768) -> dict[str, Any]:
    """Everything the suite's vLLM expectations rest on, as answered by the server at ``url``.

    The exchanges run concurrently, each on its own connection, so the keep-alive windows overlap.
    """
    overlong = " ".join(str(i) for i in range(max_model_len + 64))
    chat = "/v1/chat/completions"
    calls: dict[str, tuple[Any, ...]] = {
        "unknown_model": ("POST", chat, chat_body("no-such-model", "Hi", max_tokens=1), key),
        "prompt_too_long": ("POST", chat, chat_body(SERVED, overlong, max_tokens=1), key),
        "malformed_image_url": ("POST", chat, chat_body(SERVED, image_content("not-a-url"), max_tokens=1), key),
        "health_without_key": ("GET", VLLM.health_path or "/health"),
        "models": ("GET", "/v1/models", None, key),
    }
    if key:
        calls |= {
            "missing_key": ("POST", chat, chat_body(SERVED, "Hi", max_tokens=1)),
            "wrong_key": ("POST", chat, chat_body(SERVED, "Hi", max_tokens=1), "sk-wrong"),
            "models_without_key": ("GET", "/v1/models"),
            "metrics_without_key": ("GET", "/metrics"),
        }
    with ThreadPoolExecutor(max_workers=len(calls) + 1) as pool:
        futures = {name: pool.submit(exchange, url, *args) for name, args in calls.items()}
        stream = pool.submit(stream_tail, url, key)
        seen: dict[str, Any] = {name: future.result() for name, future in futures.items()}
        seen["stream"] = stream.result()
    models = seen.pop("models")["body"]
    card = models["data"][0]
    seen["models"] = {
        "object": models.get("object"),
        "id": card.get("id"),
        "card_object": card.get("object"),
        "max_model_len": card.get("max_model_len"),
    }
    for name in ("models_without_key", "metrics_without_key"):
        if name in seen:
            seen[name] = seen[name]["status"]
    return seen
