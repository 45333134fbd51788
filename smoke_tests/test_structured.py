"""Structured outputs: a strict `response_format: json_schema` answer is JSON that validates against the schema.

vLLM constrains decoding to the schema itself (no server flag needed), so this holds for any weights, random
ones included: it runs at every level.
"""

from __future__ import annotations

from collections.abc import Callable

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.servers import Engine
from smoke_tests.settings import Settings
from smoke_tests.validators import REASONING_BUG, structured_answer


def test_json_schema(
    client: SmokeClient, server: Engine, settings: Settings, model: str, detail: Callable[[str], None]
) -> None:
    """A strict json_schema answer parses, validates against the schema, and finishes with `stop`."""
    server.require("structured_outputs")
    try:
        value, _ = structured_answer(client, model)
    except CheckError as exc:
        # A reasoning parser cannot be detected over the API: the hint needs --features to name it.
        if "reasoning" in (settings.feature_list or ()):
            raise CheckError(f"{exc}. {REASONING_BUG}") from exc
        raise
    detail(repr(value)[:80])
