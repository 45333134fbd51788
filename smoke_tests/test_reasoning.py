"""Reasoning (feature `reasoning`): the thought comes in `reasoning`, never as markers in `content`.

With thinking off no reasoning appears, and JSON-schema output is still enforced with the parser on.

Thinking is asked for per request with ``chat_template_kwargs: {"enable_thinking": true}`` (Gemma 4's switch).
That a model really thinks is a --level full expectation; the field discipline holds at every level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.features import Features
from smoke_tests.settings import Settings
from smoke_tests.sse import Stream
from smoke_tests.validators import REASONING_BUG, chat_body, message_content_or_none, stream_problem, structured_answer

# Gemma 4's thinking delimiters: a parser that works never lets them reach `content`.
MARKERS = ("<|channel>", "<channel|>")
THINK = {"chat_template_kwargs": {"enable_thinking": True}}
PROMPT = "A train leaves at 9:40 and arrives at 11:15. How long is the trip? Think it through, then answer."
# vLLM 0.21.0 names the field `reasoning`; older servers and some clients use `reasoning_content`.
FIELDS = ("reasoning", "reasoning_content")


@pytest.fixture(autouse=True)
def _reasoning_on(features: Features) -> None:
    features.require("reasoning")


def reasoning_of(message: dict[str, Any], where: str) -> str:
    """The reasoning text of a message or delta ('' when absent); CheckError when it is not a string."""
    for name in FIELDS:
        value = message.get(name)
        if value is not None and not isinstance(value, str):
            raise CheckError(f"{where}: `{name}` must be a string or null, got {value!r}")
        if value:
            return value
    return ""


def no_markers(content: str, where: str) -> None:
    """``content`` carries no thinking delimiter (the parser moved the thought into the reasoning field)."""
    leaked = [m for m in MARKERS if m in content]
    if leaked:
        raise CheckError(f"{where}: `content` carries the thinking marker(s) {leaked}: {content[:120]!r}")


def streamed_reasoning(stream: Stream) -> str:
    """All reasoning deltas of a stream joined."""
    return "".join(
        reasoning_of(choice.get("delta") or {}, "stream delta")
        for chunk in stream.chunks
        for choice in chunk.get("choices") or []
        if isinstance(choice, dict)
    )


def test_thinking_on(client: SmokeClient, model: str, settings: Settings, detail: Callable[[str], None]) -> None:
    """Thinking on: the thought comes in `reasoning` (at --level full, non-empty), `content` has no markers."""
    max_tokens = 1024 if settings.full else 48
    answer = client.chat(chat_body(model, PROMPT, max_tokens=max_tokens, **THINK))
    content = message_content_or_none(answer) or ""
    no_markers(content, "thinking on")
    thought = reasoning_of(answer["choices"][0]["message"], "thinking on")
    stream = client.stream(chat_body(model, PROMPT, max_tokens=max_tokens, stream=True, **THINK))
    stream_problem(stream)
    no_markers(stream.text, "thinking on, streamed")
    streamed = streamed_reasoning(stream)
    if settings.full:
        if not thought.strip():
            raise CheckError(f"thinking on: no `reasoning` came back; the answer was {content[:100]!r}")
        if not streamed.strip():
            raise CheckError("thinking on, streamed: no delta carried `reasoning`")
        if not content.strip():
            raise CheckError(f"thinking on: the thought ({len(thought)} characters) came with no answer in `content`")
    detail(f"reasoning {len(thought)} / streamed {len(streamed)} characters, content {len(content)}")


def test_thinking_off(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """Thinking off (the default): no reasoning in the answer or the stream, and no markers in `content`."""
    answer = client.chat(chat_body(model, PROMPT, max_tokens=48))
    content = message_content_or_none(answer) or ""
    no_markers(content, "thinking off")
    thought = reasoning_of(answer["choices"][0]["message"], "thinking off")
    if thought:
        raise CheckError(f"thinking off, yet `reasoning` came back: {thought[:100]!r}")
    stream = client.stream(chat_body(model, PROMPT, max_tokens=48, stream=True))
    stream_problem(stream)
    no_markers(stream.text, "thinking off, streamed")
    if streamed_reasoning(stream):
        raise CheckError(f"thinking off, yet the stream carried reasoning: {streamed_reasoning(stream)[:100]!r}")
    detail(f"content {len(content)} characters, no reasoning")


def test_json_schema_enforced(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """With the reasoning parser on (thinking off), a strict json_schema answer still validates."""
    try:
        value, _ = structured_answer(client, model)
    except CheckError as exc:
        raise CheckError(f"{exc}. {REASONING_BUG}") from exc
    detail(repr(value)[:80])
