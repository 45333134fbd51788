"""The benchmark's HTTP client: streamed chat requests timed the way vLLM times them, on aiohttp.

Why aiohttp and not httpx (which the smoke suite uses): a benchmark client must cost far less per streamed
message than the server it measures. Profiled against a zero-latency server (docs/benchmarks.md), httpx's
async stack (httpx -> httpcore -> h11 -> anyio) spent about 20 microseconds of Python per SSE message and
3 ms per request before the first byte, enough to halve the request rate it could drive and to add 3 ms to
every TTFT it reported. aiohttp parses HTTP in C and hands over whatever bytes arrived in one call; vLLM's
own ``vllm bench serve`` uses it too, so both tools share the same transport.

One :class:`ServerClient` per run, opened with ``async with``. It never goes through an HTTP(S) proxy (a
benchmark measures the server, not a proxy), and every phase has a timeout, so a stalled stream fails its
request instead of hanging.
"""

from __future__ import annotations

import functools
import io
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deploy.bench.metrics import RequestSample
from deploy.errors import DeployError

if TYPE_CHECKING:
    import aiohttp
    import httpx


class BenchError(DeployError):
    """The benchmark cannot run (server unreachable, wrong model, bad answer); the message says what to fix."""


def body_error_text(body: bytes) -> str:
    """The server's error message in any of the shapes engines use, shortened."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:300] or "(empty body)"
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed.get("detail", parsed))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(parsed)[:300]


def error_text(response: httpx.Response) -> str:
    """:func:`body_error_text` for an httpx response (the quality tools stay on httpx)."""
    return body_error_text(response.content)


@dataclass(frozen=True)
class Reply:
    """A whole (non-streamed) answer: status and body."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.body)


# A JSON object whose "choices" list is not empty, on the raw bytes of a stream message. Parsing every token
# message with json.loads was the largest cost left per message (2-3 microseconds of about 10); a key
# spelled like this cannot occur inside a JSON string (quotes there are escaped). Messages that carry
# usage or an error, and every message until the first one with text, are still parsed in full.
_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*[^\s\]]')


def _has_content(choices: list[Any]) -> bool:
    """Whether a chunk's first choice carries generated text (not only a role or a finish reason)."""
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    return isinstance(delta, dict) and any(
        delta.get(k) for k in ("content", "reasoning_content", "reasoning", "tool_calls")
    )


def encode_body(body: dict[str, Any]) -> bytes:
    """A streamed chat request body as bytes, usage requested (encoded before the clock starts)."""
    return json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}).encode()


@functools.cache
def _stale_connection() -> tuple[type[BaseException], ...]:
    """The errors aiohttp raises for a connection that died under a request (imported lazily).

    Before any answer came back they mean the server had closed a kept-alive connection: the request is sent
    again once on a fresh connection (counted in the sample's ``retries``).
    """
    import aiohttp

    return (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


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
        self.connections = max(1, connections)
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open aiohttp session (``async with ServerClient(...)`` opens it)."""
        if self._session is None:
            raise RuntimeError("ServerClient is used outside `async with`")
        return self._session

    async def __aenter__(self) -> ServerClient:
        try:
            import aiohttp
        except ImportError as exc:  # pragma: no cover - the bench extra and the vLLM image both have it
            raise BenchError("the bench client needs aiohttp: pip install 'gemma4-serve[bench]'") from exc
        # One connection per concurrent request, kept alive between requests (like vLLM's TCPConnector), but
        # dropped after 4 s idle: vLLM's server (uvicorn) closes idle connections after 5 s, and a request
        # sent on a connection the server just closed fails before it starts.
        connector = aiohttp.TCPConnector(
            limit=self.connections, limit_per_host=self.connections, keepalive_timeout=4, force_close=False
        )
        # sock_read: the longest silence allowed inside a stream (a prefill of 32k tokens counts as silence).
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout_s, sock_read=self.stall_timeout_s)
        self._session = aiohttp.ClientSession(
            self.base_url, connector=connector, timeout=timeout, headers=self._headers, trust_env=False
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, *, timeout: float, json_body: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        """One whole request; :class:`BenchError` with advice when the server cannot be reached or times out."""
        import aiohttp

        where = f"{method} {self.base_url}{path}"
        try:
            for attempt in (1, 2):
                try:
                    # A file-like body: aiohttp warns (and may block its loop) on a large bytes body, and the
                    # prompt-fitting probes send prompts near the server's whole context.
                    data = None if json_body is None else io.BytesIO(json.dumps(json_body).encode())
                    async with self.session.request(
                        method, path, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
                    ) as response:
                        return Reply(response.status, await response.read())
                except _stale_connection():
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        # aiohttp, not httpx (docs/benchmarks.md), so deploy.http_errors cannot map these; same wording by hand.
        except aiohttp.ClientConnectorError as exc:
            raise BenchError(
                f"{where}: cannot connect ({exc.os_error or exc}); is the server running and is --base-url right? "
                "(vLLM opens its port only after the model has loaded; `python -m deploy probe --url URL` checks it)"
            ) from exc
        except TimeoutError as exc:
            raise BenchError(f"{where}: no answer within {timeout:g} s; the server is overloaded or stuck") from exc
        except aiohttp.ClientError as exc:
            raise BenchError(f"{where}: {type(exc).__name__}: {exc}") from exc

    async def get_json(self, path: str, *, timeout: float = 30.0) -> Any:
        """GET ``path`` and return its JSON; :class:`BenchError` with advice on any failure."""
        reply = await self.request("GET", path, timeout=timeout)
        if reply.status != 200:
            raise BenchError(self._status_message("GET", path, reply))
        try:
            return reply.json()
        except ValueError as exc:
            raise BenchError(
                f"GET {self.base_url}{path} answered a body that is not JSON: {reply.body[:200]!r}"
            ) from exc

    async def try_get(self, path: str, *, timeout: float = 10.0) -> Reply | None:
        """GET ``path``; None when the server does not answer (used for optional endpoints)."""
        try:
            return await self.request("GET", path, timeout=timeout)
        except BenchError:
            return None

    async def try_post_json(self, path: str, body: Any, *, timeout: float = 60.0) -> Reply | None:
        """POST ``body`` as JSON to ``path``; None when the server does not answer (optional endpoints)."""
        try:
            return await self.request("POST", path, timeout=timeout, json_body=body)
        except BenchError:
            return None

    def _status_message(self, method: str, path: str, reply: Reply) -> str:
        where = f"{method} {self.base_url}{path}"
        if reply.status == 401:
            return f"{where} answered 401: the API key is missing or wrong; pass --api-key or set VLLM_API_KEY"
        if reply.status == 404 and path.endswith("/models"):
            return f"{where} answered 404: is --base-url the server's root (without /v1)?"
        return f"{where} answered {reply.status}: {body_error_text(reply.body)}"

    async def models(self) -> list[dict[str, Any]]:
        """The model cards of ``/v1/models``."""
        body = await self.get_json("/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BenchError(f"GET {self.base_url}/v1/models did not return a model list: {str(body)[:200]!r}")
        return [m for m in data if isinstance(m, dict)]

    async def chat(self, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """One non-streamed chat completion; :class:`BenchError` unless it answers 200 with JSON."""
        reply = await self.request("POST", "/v1/chat/completions", timeout=timeout, json_body=body)
        if reply.status != 200:
            raise BenchError(self._status_message("POST", "/v1/chat/completions", reply))
        try:
            return reply.json()
        except ValueError as exc:
            raise BenchError(f"POST /v1/chat/completions answered a body that is not JSON: {reply.body[:200]!r}") from (
                exc
            )

    async def stream_chat(self, index: int, data: bytes, *, images: int = 0) -> RequestSample:
        """Send one streamed chat request (``data``: :func:`encode_body`) and time it with vLLM's definitions.

        The clock starts just before the request is handed to the connection pool, as in vLLM's client; the
        body is encoded beforehand, so its (client-side) serialisation is not part of the server's TTFT.
        Never raises for a failed request: the sample carries ``success=False`` and the reason (a
        cancellation, e.g. Ctrl-C, still propagates).
        """
        import aiohttp

        clock = time.perf_counter
        for attempt in (1, 2):
            timer = StreamTimer(RequestSample(index=index, images=images, retries=attempt - 1), clock())
            answered = False
            try:
                async with self.session.post("/v1/chat/completions", data=io.BytesIO(data)) as response:
                    answered = True
                    if response.status != 200:
                        return timer.fail(f"HTTP {response.status}: {body_error_text(await response.read())}")
                    feed = timer.feed
                    async for chunk in response.content.iter_any():
                        if feed(chunk, clock()):
                            return timer.sample
            except _stale_connection() as exc:
                if attempt == 1 and not answered:
                    continue  # a kept-alive connection the server had closed: the request never reached it
                return timer.fail(f"{type(exc).__name__}: {exc}")
            except TimeoutError:
                return timer.fail(f"the stream stalled: no data for {self.stall_timeout_s:g} s (--stall-timeout)")
            except aiohttp.ClientError as exc:
                return timer.fail(f"{type(exc).__name__}: {exc}")
            return timer.finish()
        raise AssertionError("unreachable")


class StreamTimer:
    """Times one SSE stream of chat completion chunks with vLLM 0.21.0's definitions (see metrics.py).

    :meth:`feed` takes the bytes of each read from the socket with the time they arrived: every message in
    one read is stamped with that read's arrival time (they did arrive together). Only messages whose
    ``choices`` is not empty count for TTFT and ITL; ``usage`` is read wherever it appears.
    """

    def __init__(self, sample: RequestSample, start: float) -> None:
        self.sample = sample
        sample.start = start
        self.start = start
        self.last = start
        self.messages = 0  # messages with choices
        self.buffer = b""

    def fail(self, error: str) -> RequestSample:
        """Mark the request failed with ``error``; the sample."""
        self.sample.error = error
        self.sample.success = False
        return self.sample

    def feed(self, data: bytes, now: float) -> bool:
        """Take one read's bytes, arrived at ``now``; True when the stream failed (an error event, bad JSON)."""
        sample = self.sample
        # Raw bytes split on newlines; a message split across reads waits in the buffer.
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if line[:5] != b"data:":
                continue  # blank separators, SSE comments (": ping"), event names
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            if sample.ttfc is not None and b'"usage"' not in payload and b'"error"' not in payload:
                # The common case, a token: whether it has choices is all that is needed (see _CHOICES).
                if _CHOICES.search(payload):
                    sample.itl.append(now - self.last)
                    self.messages += 1
                self.last = now
                continue
            try:
                message = json.loads(payload)
                choices = message.get("choices")
            except (ValueError, AttributeError) as exc:
                self.fail(f"a stream message is not a JSON object: {exc}: {payload[:200]!r}")
                return True
            if choices:
                if self.messages == 0:
                    sample.ttft = now - self.start
                else:
                    sample.itl.append(now - self.last)
                if sample.ttfc is None and _has_content(choices):
                    sample.ttfc = now - self.start
                self.messages += 1
            elif message.get("error"):
                self.fail(f"error event in the stream: {str(message['error'])[:300]}")
                return True
            # vLLM sends usage in a chunk of its own; other servers (transformers serve) put it on the last
            # chunk with choices. Read it wherever it is: the timing rules stay vLLM's.
            if usage := message.get("usage"):
                sample.output_tokens = int(usage.get("completion_tokens") or 0)
                sample.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.last = now
        return False

    def finish(self) -> RequestSample:
        """The sample once the stream ended: successful when any message carried choices."""
        sample = self.sample
        if self.messages == 0:
            return self.fail("the stream ended without any message carrying choices")
        sample.latency = self.last - self.start
        if not sample.output_tokens:
            # No usage chunk: count one token per content message (exact for servers that stream one token
            # per message; the run counts such samples in `estimated_output_tokens`).
            sample.output_tokens = self.messages
            sample.note = "no usage in the stream: output tokens counted from messages"  # see metrics.py
        sample.success = True
        return sample
