"""Protocol hygiene, on every server and level: finish reasons, stop strings, determinism, no empty 200s.

Each request is greedy (temperature 0, fixed seed), so a second request can be compared with the first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.features import Features
from smoke_tests.validators import (
    TEXT_PROMPT,
    TOOL_PROMPT,
    WEATHER_TOOL,
    chat_body,
    check_usage,
    message_content_or_none,
    tool_calls_of,
)

# A prompt whose answer is long (a count to 100) capped at a handful of tokens.
LONG_PROMPT = "Count from 1 to 100, separated by spaces."
CAP = 6


@pytest.fixture(scope="module")
def greedy(client: SmokeClient, model: str) -> dict[str, Any]:
    """One greedy answer of 24 tokens, the reference the determinism and stop-string checks compare with."""
    return client.chat(chat_body(model, TEXT_PROMPT))


def _choice(answer: dict[str, Any]) -> dict[str, Any]:
    message_content_or_none(answer)
    return answer["choices"][0]


def test_length_finish(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """An answer cut by max_tokens ends with finish_reason `length` and exactly max_tokens completion tokens."""
    answer = client.chat(chat_body(model, LONG_PROMPT, max_tokens=CAP))
    choice = _choice(answer)
    used = check_usage(answer.get("usage"), CAP, "capped completion")["completion_tokens"]
    if used == CAP and choice.get("finish_reason") != "length":
        raise CheckError(
            f"the answer used all {CAP} max_tokens but finish_reason is {choice.get('finish_reason')!r}, not 'length': "
            "clients cannot tell a cut answer from a finished one"
        )
    if used < CAP:
        raise CheckError(
            f"asked to count to 100 with max_tokens {CAP}, the model stopped after {used} token(s) "
            f"(finish_reason {choice.get('finish_reason')!r}): the cap was not exercised"
        )
    detail(f"{used} tokens, finish_reason length")


def _stop_string(full: str) -> str:
    """Two characters from the second half of the reference answer whose first occurrence is not its start.

    Characters, not words: a random-weight test model answers with few or no spaces, and vLLM matches stop
    strings in the detokenized text, inside a token too.
    """
    for start in range(len(full) // 2, len(full) - 1):
        candidate = full[start : start + 2]
        if candidate.strip() == candidate and full.index(candidate) > 0:
            return candidate
    raise CheckError(f"the reference answer {full!r} is too short to pick a stop string from")


def test_stop_excluded(client: SmokeClient, model: str, greedy: dict[str, Any], detail: Callable[[str], None]) -> None:
    """A stop string ends the answer where it first occurs, is not part of the content, and finish_reason is `stop`."""
    full = message_content_or_none(greedy) or ""
    stop = _stop_string(full)
    answer = client.chat(chat_body(model, TEXT_PROMPT, stop=[stop]))
    content = message_content_or_none(answer) or ""
    choice = _choice(answer)
    if stop in content:
        raise CheckError(f"stop string {stop!r} is in the content {content[:120]!r}: it must be cut off")
    expected = full[: full.index(stop)]
    if content.rstrip() != expected.rstrip():
        raise CheckError(
            f"with stop {stop!r} the content is {content[:120]!r}; expected the reference answer up to its first "
            f"occurrence, {expected[:120]!r}"
        )
    if choice.get("finish_reason") != "stop":
        raise CheckError(f"stopped by {stop!r}, finish_reason is {choice.get('finish_reason')!r}, expected 'stop'")
    detail(f"stop {stop!r} after {len(content)} characters")


def test_greedy_deterministic(client: SmokeClient, model: str, greedy: dict[str, Any]) -> None:
    """The same greedy request twice gives the same text."""
    again = message_content_or_none(client.chat(chat_body(model, TEXT_PROMPT)))
    first = message_content_or_none(greedy)
    if again != first:
        raise CheckError(
            f"two identical greedy requests (temperature 0, seed fixed) answered {first!r:.120} and {again!r:.120}"
        )


def test_never_empty(client: SmokeClient, model: str, features: Features, detail: Callable[[str], None]) -> None:
    """A 200 always carries content or a tool call: a plain request, and one with tools offered (`auto`)."""
    bodies = {"plain": chat_body(model, TEXT_PROMPT)}
    if "tools" in features.on:
        bodies["tools offered, auto"] = chat_body(model, TOOL_PROMPT, tools=[WEATHER_TOOL], tool_choice="auto")
    for what, body in bodies.items():
        answer = client.chat(body)
        content = message_content_or_none(answer)
        if not (content or "").strip() and not tool_calls_of(answer):
            choice = answer["choices"][0]
            raise CheckError(
                f"{what}: answered 200 with empty content and no tool call (finish_reason "
                f"{choice.get('finish_reason')!r}); a client gets nothing"
            )
    detail(", ".join(bodies))
