"""``python -m deploy drain``: before the server is stopped, wait until its in-flight requests have finished.

vLLM 0.21.0 aborts every unfinished request on SIGTERM unless ``--shutdown-timeout`` is set (its default is 0:
``vllm/v1/engine/core.py``, ``_handle_shutdown``). Kubernetes runs a container's preStop hook before it sends
SIGTERM, so the Helm chart's preStop runs this command: it first waits ``--delay`` seconds, long enough for the
pod's removal from the Service endpoints to reach every proxy so that no new request arrives, then polls
``/metrics`` until ``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` are both 0 or ``--timeout``
runs out. ``/metrics`` needs no API key. Exit 0 when drained, 1 when requests were still running at the
deadline or the server could not be read (Kubernetes then records a FailedPreStopHook event and stops the pod
anyway), 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from deploy.errors import DeployError
from deploy.prometheus_text import sample_sums

DEFAULT_URL = "http://127.0.0.1:8000"
# The two gauges that count a server's unfinished requests (one sample per model_name/engine label set).
IN_FLIGHT_METRICS = ("vllm:num_requests_running", "vllm:num_requests_waiting")


class DrainError(DeployError):
    """The server could not be read, or did not drain in time; the message says which."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``drain`` subcommand."""
    p = subparsers.add_parser("drain", help="wait until the server has no running or waiting requests (preStop)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server base URL (default {DEFAULT_URL})")
    p.add_argument("--delay", type=float, default=5.0, help="seconds to wait before polling (default 5)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for requests to finish (default 60)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    p.set_defaults(handler=run)


def in_flight(metrics_text: str) -> int:
    """Running plus waiting requests in a Prometheus text exposition, summed over label sets."""
    found = sample_sums(metrics_text, IN_FLIGHT_METRICS)
    if not found:
        raise DrainError(f"/metrics has none of {', '.join(IN_FLIGHT_METRICS)}: is this a vLLM server?")
    return int(sum(found.values()))


def drain(url: str, *, delay: float, timeout: float, interval: float) -> str:
    """Wait ``delay`` seconds, then until ``url`` has no in-flight request; returns a line saying so."""
    time.sleep(delay)
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, trust_env=False, follow_redirects=False) as client:
        while True:
            left = deadline - time.monotonic()
            try:
                response = client.get("/metrics", timeout=max(min(left, 5.0), 0.5))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise DrainError(f"cannot read {url}/metrics ({exc}); stopping without waiting") from exc
            count = in_flight(response.text)
            if count == 0:
                return f"drained: no request in flight at {url}"
            if time.monotonic() + interval > deadline:
                raise DrainError(f"{count} request(s) still in flight after {timeout:g} s; they will be aborted")
            time.sleep(interval)


def run(args: argparse.Namespace) -> int:
    """Drain the server; print the outcome."""
    if args.delay < 0 or args.timeout < 0 or args.interval <= 0:
        print("error: --delay and --timeout must be >= 0 seconds, --interval > 0", file=sys.stderr)
        return 2
    try:
        print(drain(args.url.rstrip("/"), delay=args.delay, timeout=args.timeout, interval=args.interval))
    except DrainError as exc:
        print(f"drain: {exc}", file=sys.stderr)
        return 1
    return 0
