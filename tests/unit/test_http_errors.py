"""The one wording of a failed HTTP request (deploy/http_errors.py), as the probe, the quality client and the
smoke suite use it. Failures come from a real socket (a closed port) and from httpx's mock transport."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from deploy.http_errors import CONNECT, OTHER, TIMEOUT, describe, failure_kind

REPO = Path(__file__).resolve().parents[2]
ADVICE = {CONNECT: "start the server", TIMEOUT: "wait longer"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def failure(exc: Exception) -> httpx.HTTPError:
    """What httpx raises when its transport raises ``exc``."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(httpx.HTTPError) as caught, httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.get("http://127.0.0.1:9/v1/models")
    return caught.value


def test_a_refused_connection_names_the_target_and_the_advice() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(url + "/health", timeout=5, trust_env=False)
    assert failure_kind(caught.value) == CONNECT
    line = describe(caught.value, "GET /health", target=url, advice=ADVICE)
    assert line.startswith(f"GET /health: cannot connect to {url} (") and line.endswith("); start the server")


@pytest.mark.parametrize(
    ("exc", "kind", "line"),
    [
        (httpx.ReadTimeout("slow"), TIMEOUT, "GET x: no answer within 3 s (--timeout); wait longer"),
        (httpx.ConnectTimeout("busy"), TIMEOUT, "GET x: no answer within 3 s (--timeout); wait longer"),
        (httpx.RemoteProtocolError("dropped"), OTHER, "GET x: RemoteProtocolError: dropped"),
    ],
)
def test_each_kind_has_its_wording(exc: Exception, kind: str, line: str) -> None:
    err = failure(exc)
    assert failure_kind(err) == kind
    assert describe(err, "GET x", within="3 s (--timeout)", advice=ADVICE) == line


def test_without_a_limit_or_advice_the_line_stands_alone() -> None:
    assert describe(failure(httpx.ReadTimeout("slow")), "POST y") == "POST y: no answer in time"


@pytest.mark.parametrize("path", ["deploy/launcher/probe.py", "deploy/quality/sources.py", "smoke_tests/client.py"])
def test_the_httpx_clients_word_failures_only_here(path: str) -> None:
    """No client writes its own 'cannot connect' line again: it calls describe()."""
    text = (REPO / path).read_text()
    assert "describe(" in text and "cannot connect" not in text, path
