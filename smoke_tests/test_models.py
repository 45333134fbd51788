"""/v1/models lists the served model, with the context length the deployment promises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.servers import Engine
from smoke_tests.settings import Settings


def _entries(client: SmokeClient) -> list[dict[str, Any]]:
    body = client.json_ok("GET", "/v1/models")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(d, dict) and isinstance(d.get("id"), str) for d in data):
        raise CheckError(f'/v1/models must be {{"object": "list", "data": [{{"id": ...}}, ...]}}, got {body!r:.200}')
    return data


def test_lists_served_model(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """The model under test is in /v1/models, as an OpenAI model object."""
    data = _entries(client)
    ids = [d["id"] for d in data]
    if model not in ids:
        raise CheckError(f"/v1/models lists {ids}, not the model under test {model!r} (--model)")
    entry = next(d for d in data if d["id"] == model)
    if entry.get("object") != "model":
        raise CheckError(f"/v1/models entry {model!r} has object {entry.get('object')!r}, expected 'model'")
    detail(", ".join(ids))


def test_max_model_len(
    client: SmokeClient, server: Engine, settings: Settings, model: str, detail: Callable[[str], None]
) -> None:
    """/v1/models reports the served context length (`max_model_len`), equal to --max-model-len when given."""
    server.require("models_max_model_len")
    entry = next((d for d in _entries(client) if d["id"] == model), None)
    if entry is None:
        raise CheckError(f"/v1/models does not list {model!r}")
    value = entry.get("max_model_len")
    if settings.max_model_len is None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 16:
            raise CheckError(f"/v1/models reports max_model_len {value!r} for {model!r}, not a context length")
        detail(f"{value} (as served; --max-model-len requires a number)")
        return
    if value != settings.max_model_len:
        raise CheckError(
            f"/v1/models says max_model_len {value!r} for {model!r}, expected {settings.max_model_len} "
            "(--max-model-len); the server was started with another context length"
        )
