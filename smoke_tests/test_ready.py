"""Readiness: the server answers a real 1-token completion within --wait; its health endpoint says so too."""

from __future__ import annotations

from collections.abc import Callable

from smoke_tests.client import CheckError, Ready, SmokeClient, excerpt
from smoke_tests.servers import Engine


def test_server_ready(readiness: Ready | CheckError, detail: Callable[[str], None]) -> None:
    """/v1/models and a 1-token chat completion answer within --wait (502/503/504 and refusals retried)."""
    if isinstance(readiness, CheckError):
        raise readiness
    detail(f"{readiness.model} after {readiness.waited_s:.1f} s, {readiness.attempts} attempt(s)")


def test_health(client: SmokeClient, server: Engine, model: str) -> None:
    """The engine's health endpoint answers 200 (with its documented body) once the model is ready."""
    path = server.require("health_path")
    response = client.request("GET", path)
    if response.status_code != 200:
        raise CheckError(f"GET {path} answered {response.status_code} while the server serves: {excerpt(response)}")
    if server.health_body is not None:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if body != server.health_body:
            raise CheckError(f"GET {path} answered {body!r}, expected {server.health_body!r}")
