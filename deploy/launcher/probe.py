"""``python -m deploy probe``: check that the vLLM server is alive and, with ``--ready``, that it answers.

Exit 0 when ``/health`` answers 200; with ``--ready`` a one-token chat completion must succeed too.
Exit 1 otherwise, with one line on stderr naming the problem and what to check; exit 2 on bad options.
The compose healthcheck, the image's HEALTHCHECK and the Helm probes run it, so it is small and quick,
and each request gets only what is left of ``--timeout``: it never hangs. The API key comes from
``VLLM_API_KEY`` (only ``/v1/*`` needs it) and is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx

from deploy.errors import DeployError
from deploy.http_errors import CONNECT, TIMEOUT, describe

# The launcher makes vLLM listen on GEMMA4_LISTEN_PORT when it is set (the image's HEALTHCHECK runs with the
# container's environment, so it follows), else on the profiles' 8000.
DEFAULT_URL = f"http://127.0.0.1:{os.environ.get('GEMMA4_LISTEN_PORT', '').strip() or 8000}"
DEFAULT_TIMEOUT_S = 10.0
# Where a failing probe sends the reader: the server's own log says why it is down.
LOGS_HINT = "check the server's logs (`make logs`, or `kubectl logs`)"


class ProbeError(DeployError):
    """The server is not healthy or not ready; the message says why and what to check."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``probe`` subcommand."""
    p = subparsers.add_parser("probe", help="check that the server is healthy (and, with --ready, answers)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server base URL (default {DEFAULT_URL})")
    p.add_argument("--ready", action="store_true", help="also require a 1-token chat completion to succeed")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds for the whole probe, all requests together (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Probe the server; print what passed (stdout) or why it failed (stderr)."""
    url = args.url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        print(f"error: --url must be an http(s) base URL like {DEFAULT_URL}, not {args.url!r}", file=sys.stderr)
        return 2
    if not args.timeout > 0:
        print(f"error: --timeout must be a positive number of seconds, not {args.timeout:g}", file=sys.stderr)
        return 2
    api_key = os.environ.get("VLLM_API_KEY") or None
    try:
        lines = probe(url, ready=args.ready, timeout=args.timeout, api_key=api_key)
    except ProbeError as exc:
        print(f"not {'ready' if args.ready else 'healthy'}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def probe(
    url: str, *, ready: bool = False, timeout: float = DEFAULT_TIMEOUT_S, api_key: str | None = None
) -> list[str]:
    """Check ``url``'s ``/health`` and, when ``ready``, ``/v1/models`` and a 1-token chat completion.

    Returns one line per passed check; raises :class:`ProbeError` at the first failure. All requests
    together share ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # trust_env=False: a probe talks to the server directly, never through an HTTP(S)_PROXY meant for
    # downloads (containers often carry one, and a proxy would answer for a dead server).
    with httpx.Client(base_url=url, headers=headers, follow_redirects=False, trust_env=False) as client:
        _request(client, "GET", "/health", deadline)
        lines = [f"healthy: {url}/health answered 200"]
        if ready:
            model = _first_model(_json(_request(client, "GET", "/v1/models", deadline)))
            started = time.monotonic()
            body = {
                "model": model,
                "messages": [{"role": "user", "content": "Say OK."}],
                "max_tokens": 1,
                "temperature": 0,
            }
            _check_completion(_json(_request(client, "POST", "/v1/chat/completions", deadline, json=body)))
            lines.append(f"ready: {model} answered a 1-token chat completion in {time.monotonic() - started:.2f} s")
    return lines


def _request(client: httpx.Client, method: str, path: str, deadline: float, **kwargs: Any) -> httpx.Response:
    """One request within the deadline; any failure becomes a :class:`ProbeError` with advice."""
    where = f"{method} {client.base_url.join(path)}"
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProbeError(f"{where}: the --timeout was used up by the earlier checks")
    try:
        response = client.request(method, path, timeout=left, **kwargs)
    except httpx.HTTPError as exc:
        advice = {
            CONNECT: "the server is not running, or still loading the model (vLLM opens its port only when the "
            f"model is ready): {LOGS_HINT}",
            TIMEOUT: f"the server is overloaded or its engine is stuck: {LOGS_HINT}",
        }
        raise ProbeError(describe(exc, where, within=f"the {left:.1f} s left of --timeout", advice=advice)) from exc
    if response.status_code == 401:
        raise ProbeError(
            f"{where} answered 401 Unauthorized: the API key is missing or wrong; "
            "set VLLM_API_KEY (or VLLM_API_KEY_FILE) to the server's key"
        )
    if response.status_code == 503:
        raise ProbeError(
            f"{where} answered 503 ({_error_text(response)}): vLLM says its engine is not running: {LOGS_HINT}"
        )
    if response.status_code != 200:
        raise ProbeError(f"{where} answered {response.status_code}: {_error_text(response)}")
    return response


def _json(response: httpx.Response) -> Any:
    """The response's JSON body, or a failure quoting what came instead."""
    try:
        return response.json()
    except ValueError as exc:
        raise ProbeError(
            f"{response.request.url} answered 200 with a body that is not JSON: {response.text[:200]!r}"
        ) from exc


def _first_model(models: Any) -> str:
    """The first model id in a ``/v1/models`` answer."""
    data = models.get("data") if isinstance(models, dict) else None
    if not data or not isinstance(data[0], dict) or not data[0].get("id"):
        raise ProbeError(f"/v1/models lists no model: {str(models)[:200]!r}")
    return str(data[0]["id"])


def _check_completion(answer: Any) -> None:
    """A chat completion must carry at least one choice with a message."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices or not isinstance(choices[0], dict) or "message" not in choices[0]:
        raise ProbeError(f"/v1/chat/completions returned no choice with a message: {str(answer)[:200]!r}")


def _error_text(response: httpx.Response) -> str:
    """The server's error message (OpenAI error shape or plain text), shortened; or '(empty body)'."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body["error"]))[:200]
    return str(body)[:200]
