"""Bad requests get the engine's documented status and error body, and the server keeps serving after each.

Each bad request goes out with ``Connection: close`` (see :meth:`SmokeClient.request`), so the follow-up
completion runs on a fresh connection: it proves the server still serves, and fails if it died.
"""

from __future__ import annotations

from typing import Any

import httpx

from smoke_tests.client import CheckError, SmokeClient, excerpt
from smoke_tests.servers import Engine, error_shape_problem
from smoke_tests.validators import chat_body, image_content


def _rejected(response: httpx.Response, statuses: tuple[int, int], server: Engine, what: str) -> None:
    low, high = statuses
    expected = str(low) if low == high else f"{low}-{high}"
    if not low <= response.status_code <= high:
        raise CheckError(f"{what} answered {response.status_code}, expected {expected}: {excerpt(response)}")
    if server.error_shape:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:200]
        problem = error_shape_problem(server.error_shape, body)
        if problem:
            raise CheckError(f"{what} answered {response.status_code} but {problem}")


def _still_serves(client: SmokeClient, model: str, after: str) -> None:
    """A 1-token completion right after a rejected request: the error did not break the engine."""
    try:
        client.chat(chat_body(model, "Say OK.", max_tokens=1))
    except CheckError as exc:
        raise CheckError(f"after {after}, the server stopped serving: {exc}") from exc


def test_unknown_model(client: SmokeClient, server: Engine, model: str) -> None:
    """An unknown model name gets 404 in the OpenAI error shape; the server still works."""
    status = server.require("unknown_model_status")
    body = chat_body("no-such-model-smoke", "Hi", max_tokens=1)
    response = client.request("POST", "/v1/chat/completions", json=body, close=True)
    _rejected(response, (status, status), server, "a request for model 'no-such-model-smoke'")
    _still_serves(client, model, f"the {response.status_code} for an unknown model")


def test_prompt_too_long(client: SmokeClient, server: Engine, model: str, context_length: int) -> None:
    """A prompt longer than the served context gets 400; the server still works."""
    status = server.require("overflow_status")
    # Digits tokenize at least one token each, so this is well over the context length in tokens.
    prompt = " ".join(str(i) for i in range(context_length + 64))
    body = chat_body(model, prompt, max_tokens=1)
    response = client.request("POST", "/v1/chat/completions", json=body, close=True)
    _rejected(response, (status, status), server, f"a prompt over {context_length} tokens")
    _still_serves(client, model, f"the {response.status_code} for a too-long prompt")


def test_malformed_image_url(client: SmokeClient, server: Engine, model: str) -> None:
    """An image_url that is not a URL gets a client error (4xx on vLLM); the server still works."""
    statuses = server.require("bad_image_statuses")
    body = chat_body(model, image_content("not-a-url-or-data"), max_tokens=1)
    response = client.request("POST", "/v1/chat/completions", json=body, close=True)
    _rejected(response, statuses, server, "a malformed image URL")
    _still_serves(client, model, f"the {response.status_code} for a malformed image URL")
