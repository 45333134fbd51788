"""`python -m deploy probe` against a real HTTP server on loopback that can be healthy or broken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy.__main__ import main
from tests.conftest import REPO

MODEL = "gemma-4-e2b-it"
KEY = "sk-probe-test-key-0123456789"


@dataclass
class Behaviour:
    """How the stub answers; tests change it before probing."""

    health_status: int = 200
    api_key: str | None = None  # when set, /v1/* wants `Authorization: Bearer <api_key>` (as vLLM does)
    models: dict = field(default_factory=lambda: {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
    completion_delay_s: float = 0.0
    completion_status: int = 200
    requests: list[tuple[str, str, dict, dict | None]] = field(default_factory=list)


def _handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: object | None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            behaviour.requests.append((self.command, self.path, dict(self.headers), body))
            if self.path == "/health":
                return self._send(behaviour.health_status, None)
            if behaviour.api_key and self.headers.get("Authorization") != f"Bearer {behaviour.api_key}":
                return self._send(401, {"error": "Unauthorized"})
            if self.path == "/v1/models":
                return self._send(200, behaviour.models)
            if self.path == "/v1/chat/completions":
                time.sleep(behaviour.completion_delay_s)
                if behaviour.completion_status != 200:
                    error = {"message": "engine crashed", "type": "InternalServerError", "code": 500}
                    return self._send(behaviour.completion_status, {"error": error})
                message = {"role": "assistant", "content": "OK"}
                return self._send(200, {"choices": [{"index": 0, "message": message, "finish_reason": "length"}]})
            return self._send(404, {"error": {"message": "not found"}})

        do_GET = _handle  # noqa: N815 - http.server's naming
        do_POST = _handle  # noqa: N815

    return Handler


@pytest.fixture
def stub() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start without keys; monkeypatch also restores whatever main() loads into os.environ."""
    for name in ("VLLM_API_KEY", "VLLM_API_KEY_FILE", "HF_TOKEN", "HF_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


def probe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["probe", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_healthy_server_passes_with_one_request(stub: tuple[str, Behaviour], capsys: pytest.CaptureFixture) -> None:
    url, behaviour = stub
    code, out, _ = probe(capsys, "--url", url)
    assert code == 0
    assert out.strip() == f"healthy: {url}/health answered 200"
    assert [(m, p) for m, p, *_ in behaviour.requests] == [("GET", "/health")]


def test_ready_sends_a_one_token_completion_with_the_key(
    stub: tuple[str, Behaviour], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, behaviour = stub
    behaviour.api_key = KEY
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    code, out, err = probe(capsys, "--url", url + "/", "--ready")
    assert code == 0, err
    assert f"ready: {MODEL} answered" in out
    assert [(m, p) for m, p, *_ in behaviour.requests] == [
        ("GET", "/health"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ]
    _, _, headers, body = behaviour.requests[-1]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == MODEL and body["max_tokens"] == 1
    assert KEY not in out + err


def test_dead_engine_503_fails(stub: tuple[str, Behaviour], capsys: pytest.CaptureFixture) -> None:
    url, behaviour = stub
    behaviour.health_status = 503
    code, out, err = probe(capsys, "--url", url)
    assert code == 1 and out == ""
    assert "answered 503" in err and "engine is not running" in err and "logs" in err


def test_model_not_answering_fails_within_the_timeout(
    stub: tuple[str, Behaviour], capsys: pytest.CaptureFixture
) -> None:
    url, behaviour = stub
    behaviour.completion_delay_s = 5
    started = time.monotonic()
    code, _, err = probe(capsys, "--url", url, "--ready", "--timeout", "1")
    elapsed = time.monotonic() - started
    assert code == 1
    assert "POST" in err and "/v1/chat/completions" in err and "no answer within" in err
    assert elapsed < 3, f"the probe took {elapsed:.1f} s with --timeout 1"


def test_model_erroring_fails_with_the_servers_message(
    stub: tuple[str, Behaviour], capsys: pytest.CaptureFixture
) -> None:
    url, behaviour = stub
    behaviour.completion_status = 500
    code, _, err = probe(capsys, "--url", url, "--ready")
    assert code == 1 and "answered 500: engine crashed" in err


def test_no_model_listed_fails(stub: tuple[str, Behaviour], capsys: pytest.CaptureFixture) -> None:
    url, behaviour = stub
    behaviour.models = {"object": "list", "data": []}
    code, _, err = probe(capsys, "--url", url, "--ready")
    assert code == 1 and "lists no model" in err


@pytest.mark.parametrize("client_key", ["wrong-key-value-987", None])
def test_wrong_or_missing_key_fails_naming_the_variable(
    stub: tuple[str, Behaviour], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, client_key: str | None
) -> None:
    url, behaviour = stub
    behaviour.api_key = KEY
    if client_key:
        monkeypatch.setenv("VLLM_API_KEY", client_key)
    code, out, err = probe(capsys, "--url", url, "--ready")
    assert code == 1
    assert "401 Unauthorized" in err and "VLLM_API_KEY" in err
    assert KEY not in out + err and (client_key or KEY) not in out + err
    # Health alone needs no key, as with vLLM.
    assert probe(capsys, "--url", url)[0] == 0


def test_connection_refused_fails_fast(capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    code, _, err = probe(capsys, "--url", f"http://127.0.0.1:{port}", "--timeout", "5")
    assert code == 1
    assert "cannot connect" in err and "still loading" in err
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("args", [["--url", "127.0.0.1:8000"], ["--timeout", "0"]])
def test_bad_options_exit_2(capsys: pytest.CaptureFixture, args: list[str]) -> None:
    code, _, err = probe(capsys, *args)
    assert code == 2 and err.startswith("error: ")


def test_cli_reads_the_key_from_a_file(stub: tuple[str, Behaviour], tmp_path: Path) -> None:
    """`python -m deploy probe` as the healthcheck runs it, with the key mounted as a compose secret."""
    url, behaviour = stub
    behaviour.api_key = KEY
    key_file = tmp_path / "vllm_api_key"
    key_file.write_text(KEY + "\n")
    env = {k: v for k, v in os.environ.items() if k not in {"VLLM_API_KEY", "VLLM_API_KEY_FILE"}}
    env["PYTHONPATH"] = str(REPO)

    def run(file: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deploy", "probe", "--url", url, "--ready", "--timeout", "5"],
            env={**env, "VLLM_API_KEY_FILE": str(file)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = run(key_file)
    assert ok.returncode == 0, ok.stderr
    blank = tmp_path / "none"
    blank.write_text("\n")
    refused = run(blank)
    assert refused.returncode == 1 and "401" in refused.stderr
