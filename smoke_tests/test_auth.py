"""With --api-key: requests without the key or with a wrong one get 401; the health endpoint stays open."""

from __future__ import annotations

import pytest

from smoke_tests.client import CheckError, SmokeClient, excerpt
from smoke_tests.servers import Engine
from smoke_tests.settings import Settings
from smoke_tests.validators import chat_body

WRONG_KEY = "sk-smoke-wrong-key"


@pytest.fixture(autouse=True)
def _needs_key(settings: Settings) -> None:
    if not settings.api_key:
        pytest.skip("no --api-key given: the server is expected to be open")


def _rejects(client: SmokeClient, server: Engine, model: str, key: str | None, label: str) -> None:
    body = chat_body(model, "Hi", max_tokens=1)
    response = client.request("POST", "/v1/chat/completions", key=key, json=body, close=True)
    if response.status_code != 401:
        raise CheckError(
            f"POST /v1/chat/completions {label} answered {response.status_code}, expected 401: "
            f"the API key is not enforced ({excerpt(response)})"
        )
    if server.models_need_key:
        listing = client.request("GET", "/v1/models", key=key, close=True)
        if listing.status_code != 401:
            raise CheckError(f"GET /v1/models {label} answered {listing.status_code}, expected 401")


def test_missing_key_rejected(client: SmokeClient, server: Engine, model: str) -> None:
    """No Authorization header: 401."""
    _rejects(client, server, model, None, "without a key")


def test_wrong_key_rejected(client: SmokeClient, server: Engine, model: str) -> None:
    """A wrong bearer key: 401."""
    _rejects(client, server, model, WRONG_KEY, "with a wrong key")


def test_health_open(client: SmokeClient, server: Engine, model: str) -> None:
    """The health endpoint answers 200 without a key (probes carry none)."""
    path = server.require("health_path")
    response = client.request("GET", path, key=None)
    if response.status_code != 200:
        raise CheckError(f"GET {path} without a key answered {response.status_code}, expected 200 (probes send none)")
