"""An async httpx client for OpenAI-compatible servers: streamed chat requests timed the way vLLM times them.

One :class:`ServerClient` per run; it never goes through an HTTP(S) proxy (a benchmark measures the server,
not a proxy) and every phase has a timeout, so a stalled stream fails its request instead of hanging.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from deploy.bench.metrics import RequestSample


class BenchError(Exception):
    """The benchmark cannot run (server unreachable, wrong model, bad answer); the message says what to fix."""


def error_text(response: httpx.Response) -> str:
    """The server's error message in any of the shapes engines use, shortened."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(body)[:300]


def _has_content(choices: list[Any]) -> bool:
    """Whether a chunk's first choice carries generated text (not only a role or a finish reason)."""
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    return isinstance(delta, dict) and any(
        delta.get(k) for k in ("content", "reasoning_content", "reasoning", "tool_calls")
    )


class ServerClient:
    """Talks to one OpenAI-compatible server at ``base_url`` (``/v1/...`` paths below it)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connections: int = 8,
        connect_timeout_s: float = 10.0,
        stall_timeout_s: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # read: the longest silence allowed inside a stream (a prefill of 32k tokens counts as silence).
        timeout = httpx.Timeout(connect=connect_timeout_s, read=stall_timeout_s, write=60.0, pool=None)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.stall_timeout_s = stall_timeout_s
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, limits=limits, trust_env=False
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> ServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def get_json(self, path: str, *, timeout: float = 30.0) -> Any:
        """GET ``path`` and return its JSON; :class:`BenchError` with advice on any failure."""
        response = await self._request("GET", path, timeout=timeout)
        if response.status_code != 200:
            raise BenchError(self._status_message("GET", path, response))
        try:
            return response.json()
        except ValueError as exc:
            raise BenchError(
                f"GET {self.base_url}{path} answered a body that is not JSON: {response.text[:200]!r}"
            ) from exc

    async def try_get(self, path: str, *, timeout: float = 10.0) -> httpx.Response | None:
        """GET ``path``; None when the server does not answer (used for optional endpoints)."""
        try:
            return await self.http.get(path, timeout=timeout)
        except httpx.HTTPError:
            return None

    async def _request(self, method: str, path: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
        where = f"{method} {self.base_url}{path}"
        try:
            return await self.http.request(method, path, timeout=timeout, **kwargs)
        except httpx.ConnectError as exc:
            raise BenchError(
                f"{where}: cannot connect ({exc}). Is the server running and is --base-url right? "
                "(vLLM opens its port only after the model has loaded; `python -m deploy probe --url URL` checks it)"
            ) from exc
        except httpx.TimeoutException as exc:
            raise BenchError(f"{where}: no answer within {timeout:g} s; the server is overloaded or stuck") from exc
        except httpx.HTTPError as exc:
            raise BenchError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def _status_message(self, method: str, path: str, response: httpx.Response) -> str:
        where = f"{method} {self.base_url}{path}"
        if response.status_code == 401:
            return f"{where} answered 401: the API key is missing or wrong; pass --api-key or set VLLM_API_KEY"
        if response.status_code == 404 and path.endswith("/models"):
            return f"{where} answered 404: is --base-url the server's root (without /v1)?"
        return f"{where} answered {response.status_code}: {error_text(response)}"

    async def models(self) -> list[dict[str, Any]]:
        """The model cards of ``/v1/models``."""
        body = await self.get_json("/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BenchError(f"GET {self.base_url}/v1/models did not return a model list: {str(body)[:200]!r}")
        return [m for m in data if isinstance(m, dict)]

    async def chat(self, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """One non-streamed chat completion; :class:`BenchError` unless it answers 200 with JSON."""
        response = await self._request("POST", "/v1/chat/completions", timeout=timeout, json=body)
        if response.status_code != 200:
            raise BenchError(self._status_message("POST", "/v1/chat/completions", response))
        return response.json()

    async def stream_chat(self, index: int, body: dict[str, Any], *, images: int = 0) -> RequestSample:
        """Send one streamed chat request and time it with vLLM's definitions (see :mod:`deploy.bench.metrics`).

        Never raises for a failed request: the sample carries ``success=False`` and the reason.
        """
        sample = RequestSample(index=index, images=images)
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        content_messages = 0
        start = time.perf_counter()
        sample.start = start
        last = start
        try:
            async with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    sample.error = f"HTTP {response.status_code}: {error_text(response)}"
                    return sample
                # Raw bytes split on newlines: much cheaper per message than httpx's text line decoder.
                buffer = b""
                async for data_chunk in response.aiter_bytes():
                    buffer += data_chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue  # blank separators, SSE comments (": ping"), event names
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            continue
                        now = time.perf_counter()
                        data = json.loads(payload)
                        if data.get("error"):
                            sample.error = f"error event in the stream: {str(data['error'])[:300]}"
                            return sample
                        if choices := data.get("choices"):
                            if content_messages == 0:
                                sample.ttft = now - start
                            else:
                                sample.itl.append(now - last)
                            content_messages += 1
                            if sample.ttfc is None and _has_content(choices):
                                sample.ttfc = now - start
                        # vLLM sends usage in a chunk of its own; other servers (transformers serve) put it on
                        # the last chunk with choices. Read it wherever it is: the timing rules stay vLLM's.
                        if usage := data.get("usage"):
                            sample.output_tokens = int(usage.get("completion_tokens") or 0)
                            sample.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        last = now
        except httpx.ReadTimeout:
            sample.error = f"the stream stalled: no data for {self.stall_timeout_s:g} s (--stall-timeout)"
            return sample
        except httpx.HTTPError as exc:
            sample.error = f"{type(exc).__name__}: {exc}"
            return sample
        except json.JSONDecodeError as exc:
            sample.error = f"a stream message is not JSON: {exc}"
            return sample
        if content_messages == 0:
            sample.error = "the stream ended without any message carrying choices"
            return sample
        sample.latency = last - start
        if not sample.output_tokens:
            # No usage chunk: count one token per content message (exact for servers that stream one token
            # per message; the report marks such samples).
            sample.output_tokens = content_messages
            sample.note = "no usage in the stream: output tokens counted from messages"
        sample.success = True
        return sample
