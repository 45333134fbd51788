"""`python -m deploy probe` against a real `transformers serve` and a stub server that can be broken."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.__main__ import main
from tests.conftest import REPO
from tests.fixtures.servers import closed_port_url, run_asgi

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


def stub_app(behaviour: Behaviour) -> Starlette:
    """A server shaped like vLLM's OpenAI API (health, auth on /v1 only, error bodies) whose faults tests choose."""

    async def record(request: Request) -> None:
        body = await request.json() if request.method == "POST" else None
        behaviour.requests.append((request.method, request.url.path, dict(request.headers), body))

    def authorised(request: Request) -> bool:
        return not behaviour.api_key or request.headers.get("authorization") == f"Bearer {behaviour.api_key}"

    async def health(request: Request) -> Response:
        await record(request)
        return Response(status_code=behaviour.health_status)

    async def models(request: Request) -> Response:
        await record(request)
        if not authorised(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return JSONResponse(behaviour.models)

    async def chat(request: Request) -> Response:
        await record(request)
        if not authorised(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        await asyncio.sleep(behaviour.completion_delay_s)
        if behaviour.completion_status != 200:
            error = {"message": "engine crashed", "type": "InternalServerError", "code": 500}
            return JSONResponse({"error": error}, status_code=behaviour.completion_status)
        message = {"role": "assistant", "content": "OK"}
        return JSONResponse({"choices": [{"index": 0, "message": message, "finish_reason": "length"}]})

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


@pytest.fixture
def stub() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    with run_asgi(stub_app(behaviour)) as url:
        yield url, behaviour


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
    assert headers["authorization"] == f"Bearer {KEY}"
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
    started = time.monotonic()
    code, _, err = probe(capsys, "--url", closed_port_url(), "--timeout", "5")
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


@pytest.mark.slow
def test_ready_against_a_real_openai_compatible_server(cpu_server: str, capsys: pytest.CaptureFixture) -> None:
    """`transformers serve` with the tiny Gemma 4: the probe's 1-token completion is a real generation."""
    code, out, err = probe(capsys, "--url", cpu_server, "--ready", "--timeout", "60")
    assert code == 0, err
    assert out.splitlines()[0] == f"healthy: {cpu_server}/health answered 200"
    assert out.splitlines()[1].startswith("ready: gemma4-serve/tiny-gemma4 answered a 1-token chat completion")
