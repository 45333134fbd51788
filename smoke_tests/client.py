"""The one HTTP client every check uses: bounded requests, a readiness wait, strict stream reading.

Every failure becomes a :class:`CheckError` whose message names the request, what came back and what was
expected, so the summary line for a failed check is enough to act on.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from deploy.http_errors import CONNECT, TIMEOUT, describe
from smoke_tests.settings import Settings
from smoke_tests.sse import Stream, parse_lines

# A server that is loading, restarting, or behind a proxy whose backend is not up yet.
RETRY_STATUSES = frozenset({502, 503, 504})
LOGS_HINT = "check the server's logs (`make logs`, or `kubectl logs`)"
ADVICE = {CONNECT: LOGS_HINT, TIMEOUT: LOGS_HINT}


class CheckError(AssertionError):
    """A check failed; the message is the one-line reason shown in every report."""


class NotReadyError(CheckError):
    """The server did not become ready (exit code 3)."""


@dataclass(frozen=True)
class Ready:
    """How the server became ready."""

    model: str
    waited_s: float
    attempts: int


def excerpt(response: httpx.Response, limit: int = 200) -> str:
    """The response body shortened for a message; the OpenAI error message when there is one."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return repr(text[:limit]) if text else "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]:
        return repr(str(body["error"]["message"])[:limit])
    text = json.dumps(body)
    return text if len(text) <= limit else text[:limit] + "..."


class SmokeClient:
    """httpx client bound to the server under test, with the API key when one is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.base_url
        self.connections_reset = 0
        self._http = self._new_pool()
        # Pools replaced by fresh_connection(): closed at the end, so streams still running on them (the burst
        # check runs several at once) are not cut off.
        self._retired: list[httpx.Client] = []
        self._lock = threading.Lock()

    def _new_pool(self) -> httpx.Client:
        # trust_env=False: the suite talks to the server directly, never through an HTTP(S)_PROXY meant for
        # downloads (a proxy would answer for a dead server and hide the real status).
        return httpx.Client(
            base_url=self.settings.base_url,
            timeout=self.timeout(),
            trust_env=False,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pools."""
        for pool in (*self._retired, self._http):
            pool.close()

    def fresh_connection(self) -> None:
        """Drop every pooled connection, so the next request opens a new one.

        Done after any error response and any transport error, as HTTP clients do: a server may close a
        keep-alive connection after an error without saying so (uvicorn does after vLLM's 400s), and reusing
        it would fail the next, unrelated check with a connection reset.
        """
        with self._lock:
            self._retired.append(self._http)
            self._http = self._new_pool()
            self.connections_reset += 1

    def _after(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            self.fresh_connection()
        return response

    def timeout(self, total: float | None = None, stream: bool = False) -> httpx.Timeout:
        """Per-phase timeouts: a stream may wait only ``stall_timeout_s`` between two pieces of data."""
        limit = self.settings.timeout_s if total is None else max(0.5, total)
        read = min(limit, self.settings.stall_timeout_s) if stream else limit
        return httpx.Timeout(limit, connect=min(10.0, limit), read=read)

    def headers(self, key: str | bool | None = True) -> dict[str, str]:
        """Authorization for ``key``: True = the configured key, a string = that key, False/None = none."""
        value = self.settings.api_key if key is True else key or None
        return {"Authorization": f"Bearer {value}"} if value else {}

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | bool | None = True,
        timeout: float | None = None,
        close: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One bounded request; transport failures become a :class:`CheckError` with advice.

        ``close`` sends ``Connection: close``, so the connection is not reused afterwards. Requests meant to fail
        use it: vLLM answers some errors (an over-long prompt, a bad image URL) from its catch-all exception
        handler, after which uvicorn drops the keep-alive connection without saying so. A pooled connection
        reused for the next check would then fail with ECONNRESET, a fault of the client, not of the server.
        The next request opens a fresh connection, so a server that really died still fails it.
        """
        where = f"{method} {path}"
        headers = {**self.headers(key), **kwargs.pop("headers", {})}
        if close:
            headers["Connection"] = "close"
        try:
            response = self._http.request(method, path, headers=headers, timeout=self.timeout(timeout), **kwargs)
        except httpx.HTTPError as exc:
            self.fresh_connection()
            within = f"{timeout or self.settings.timeout_s:g} s (--timeout)"
            raise CheckError(self._describe(exc, where, within)) from exc
        return self._after(response)

    def _describe(self, exc: httpx.HTTPError, where: str, within: str = "") -> str:
        """The shared wording of a transport failure (deploy/http_errors.py), with the server logs as advice."""
        return describe(exc, where, target=str(self.base_url), within=within, advice=ADVICE)

    def json_ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a request that must answer 200."""
        response = self.request(method, path, **kwargs)
        if response.status_code != 200:
            advice = "; the API key is missing or wrong (--api-key)" if response.status_code == 401 else ""
            raise CheckError(f"{method} {path} answered {response.status_code}: {excerpt(response)}{advice}")
        try:
            return response.json()
        except ValueError as exc:
            raise CheckError(f"{method} {path} answered 200 with a body that is not JSON: {excerpt(response)}") from exc

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion that must answer 200 with a JSON object."""
        answer = self.json_ok("POST", "/v1/chat/completions", json=body)
        if not isinstance(answer, dict):
            raise CheckError(f"POST /v1/chat/completions answered 200 with {type(answer).__name__}, not an object")
        return answer

    def stream(self, body: dict[str, Any]) -> Stream:
        """A streamed chat completion read line by line; stalls and overruns fail with their own message."""
        body = {**body, "stream": True}
        stream = Stream()
        started = time.monotonic()
        limit = self.settings.timeout_s
        where = "POST /v1/chat/completions (stream)"
        try:
            with self._http.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                headers=self.headers(),
                timeout=self.timeout(stream=True),
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise CheckError(f"{where} answered {response.status_code}: {excerpt(response)}")
                kind = response.headers.get("content-type", "")
                if not kind.startswith("text/event-stream"):
                    raise CheckError(f"{where} answered Content-Type {kind!r}, expected text/event-stream")
                for line in response.iter_lines():
                    parse_lines([line], stream)
                    if stream.ttft_s is None and stream.text:
                        stream.ttft_s = time.monotonic() - started
                    if time.monotonic() - started > limit:
                        raise CheckError(f"{where} still streaming after {limit:g} s (--timeout)")
        except CheckError:
            self.fresh_connection()  # an error status, a wrong content type or an overrun: start afresh
            raise
        except httpx.ReadTimeout as exc:
            self.fresh_connection()
            raise CheckError(
                f"{where} stalled: no data for {self.settings.stall_timeout_s:g} s (--stall-timeout) after "
                f"{len(stream.chunks)} chunk(s)"
            ) from exc
        except httpx.TimeoutException as exc:
            self.fresh_connection()
            raise CheckError(f"{where}: {type(exc).__name__} after {time.monotonic() - started:.1f} s") from exc
        except httpx.HTTPError as exc:
            self.fresh_connection()
            raise CheckError(self._describe(exc, where)) from exc
        stream.elapsed_s = time.monotonic() - started
        return stream

    def wait_until_ready(self, model: str | None) -> Ready:
        """Wait up to ``--wait`` for the model list and a real 1-token completion; :class:`NotReadyError` otherwise.

        Connection failures, timeouts and 502/503/504 are retried with backoff (the server is loading or
        restarting); any other answer fails at once, because waiting longer cannot fix it.
        """
        started = time.monotonic()
        deadline = started + self.settings.wait_s
        delay, attempts, last = 0.5, 0, "no attempt yet"
        while True:
            attempts += 1
            left = max(1.0, min(self.settings.timeout_s, deadline - time.monotonic()))
            try:
                if model is None:
                    model = self._first_model(left)
                self._one_token(model, left)
                return Ready(model=model, waited_s=time.monotonic() - started, attempts=attempts)
            except _RetryError as exc:
                last = str(exc)
            now = time.monotonic()
            if now >= deadline:
                raise NotReadyError(
                    f"{self.base_url} did not become ready within {self.settings.wait_s:g} s (--wait) after "
                    f"{attempts} attempt(s); last: {last}. Is the server running and done loading? {LOGS_HINT}"
                )
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 1.6, 5.0)

    def _ready_request(self, method: str, path: str, timeout: float, **kwargs: Any) -> httpx.Response:
        """A readiness request: retryable failures raise :class:`_RetryError`, others :class:`NotReadyError`."""
        where = f"{method} {path}"
        try:
            response = self._http.request(method, path, headers=self.headers(), timeout=self.timeout(timeout), **kwargs)
        except httpx.HTTPError as exc:
            self.fresh_connection()
            line = describe(exc, where, within=f"{timeout:g} s")
            # A server that is loading or restarting refuses, stalls or drops connections: wait and retry.
            if isinstance(
                exc, (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError)
            ):
                raise _RetryError(line) from exc
            raise NotReadyError(line) from exc
        self._after(response)
        if response.status_code in RETRY_STATUSES:
            raise _RetryError(f"{where} answered {response.status_code} ({excerpt(response)})")
        if response.status_code == 401:
            raise NotReadyError(
                f"{where} answered 401: the API key is missing or wrong; pass --api-key or SMOKE_API_KEY"
            )
        if response.status_code != 200:
            raise NotReadyError(f"{where} answered {response.status_code}: {excerpt(response)}; {LOGS_HINT}")
        return response

    def _first_model(self, timeout: float) -> str:
        response = self._ready_request("GET", "/v1/models", timeout)
        try:
            data = response.json().get("data")
            return str(data[0]["id"])
        except (ValueError, AttributeError, LookupError, TypeError) as exc:
            raise NotReadyError(f"GET /v1/models lists no model: {excerpt(response)}; pass --model NAME") from exc

    def _one_token(self, model: str, timeout: float) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1}
        response = self._ready_request("POST", "/v1/chat/completions", timeout, json=body)
        try:
            choices = response.json()["choices"]
            choices[0]["message"]
        except (ValueError, LookupError, TypeError) as exc:
            raise NotReadyError(f"the 1-token completion came back without a choice: {excerpt(response)}") from exc


class _RetryError(Exception):
    """A readiness attempt failed in a way that waiting can fix."""
