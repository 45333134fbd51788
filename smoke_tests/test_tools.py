"""Tool calling (feature `tools`): forced calls carry valid arguments, streamed or not; tool results are accepted.

At --level full, the model also calls the tool on its own when asked, and text that merely looks like a call
does not swallow its answer.

A named `tool_choice` and `tool_choice: required` are decoded against the function's JSON schema by vLLM, so
they hold for any weights; `auto` depends on the model and runs at full level only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.features import Features
from smoke_tests.validators import (
    REASONING_BUG,
    REASONING_STREAM_BUG,
    REQUIRED_STREAM_BUG,
    STRUCTURED_MAX_TOKENS,
    TOOL_PROMPT,
    WEATHER_SCHEMA,
    WEATHER_TOOL,
    chat_body,
    message_content_or_none,
    parse_json,
    schema_problem,
    stream_problem,
    stream_tool_calls,
    tool_calls_of,
)

NAME = WEATHER_TOOL["function"]["name"]
CHOICES: dict[str, Any] = {"named": {"type": "function", "function": {"name": NAME}}, "required": "required"}


@pytest.fixture(autouse=True)
def _tools_on(features: Features) -> None:
    features.require("tools")


def tool_body(model: str, choice: Any, **extra: Any) -> dict[str, Any]:
    """The weather question with the weather tool and ``choice``; room for a padded JSON argument."""
    return chat_body(
        model, TOOL_PROMPT, max_tokens=STRUCTURED_MAX_TOKENS, tools=[WEATHER_TOOL], tool_choice=choice, **extra
    )


def check_arguments(name: str, arguments: str, where: str, hint: str = "") -> dict[str, Any]:
    """The arguments of a call to ``name``: JSON that validates against the weather tool's parameters."""
    if name != NAME:
        raise CheckError(f"{where}: called {name!r}, expected {NAME!r}")
    try:
        value = parse_json(arguments, f"{where}: the arguments")
    except CheckError as exc:
        raise CheckError(f"{exc}.{hint}") from exc
    problem = schema_problem(value, WEATHER_SCHEMA)
    if problem:
        raise CheckError(f"{where}: the arguments do not validate against the tool's parameters {problem}.{hint}")
    return value


def forced_call(client: SmokeClient, model: str, choice: str, features: Features) -> tuple[dict[str, Any], dict]:
    """(the first call of a forced tool choice, its parsed arguments), each checked."""
    answer = client.chat(tool_body(model, CHOICES[choice]))
    calls = tool_calls_of(answer)
    finish = answer["choices"][0].get("finish_reason")
    hint = f" {REASONING_BUG}" if "reasoning" in features.on else ""
    if not calls:
        raise CheckError(
            f"tool_choice {choice}: no tool call (finish_reason {finish!r}, content "
            f"{(message_content_or_none(answer) or '')[:100]!r}).{hint}"
        )
    for i, call in enumerate(calls):
        check_arguments(
            call["function"]["name"], call["function"]["arguments"], f"tool_choice {choice}, call {i}", hint
        )
    return calls[0], json.loads(calls[0]["function"]["arguments"])


@pytest.mark.parametrize("choice", list(CHOICES))
def test_forced_call(
    client: SmokeClient, model: str, features: Features, choice: str, detail: Callable[[str], None]
) -> None:
    """A named tool_choice and tool_choice `required` each give a call whose arguments validate."""
    _, arguments = forced_call(client, model, choice, features)
    detail(json.dumps(arguments)[:80])


@pytest.mark.parametrize("choice", list(CHOICES))
def test_arguments_streamed(
    client: SmokeClient, model: str, features: Features, choice: str, detail: Callable[[str], None]
) -> None:
    """Streamed, the argument deltas of each call join into JSON that validates, equal to the non-streamed call."""
    _, expected = forced_call(client, model, choice, features)
    stream = client.stream({**tool_body(model, CHOICES[choice]), "stream": True})
    stream_problem(stream)
    calls = stream_tool_calls(stream)
    if not calls:
        hint = f" {REASONING_STREAM_BUG}" if "reasoning" in features.on and stream.text.strip() else ""
        raise CheckError(
            f"tool_choice {choice}, streamed: no tool_calls delta in {len(stream.chunks)} chunk(s); the content was "
            f"{stream.text[:80]!r}.{hint}"
        )
    for index, call in sorted(calls.items()):
        if not call["id"]:
            raise CheckError(f"tool_choice {choice}, streamed call {index}: no delta carried its id")
        lost_start = choice == "required" and not call["arguments"].lstrip().startswith("{")
        hint = f" {REQUIRED_STREAM_BUG}" if lost_start else ""
        check_arguments(
            call["name"], call["arguments"], f"tool_choice {choice}, streamed call {index} (joined deltas)", hint
        )
    first = json.loads(calls[min(calls)]["arguments"])
    if first != expected:
        raise CheckError(
            f"tool_choice {choice}: the streamed arguments {first} differ from the non-streamed {expected} for the "
            "same greedy request"
        )
    detail(f"{len(calls)} call(s), {sum(len(c['arguments']) for c in calls.values())} argument characters")


def test_tool_result_turn(client: SmokeClient, model: str, features: Features, detail: Callable[[str], None]) -> None:
    """A second turn carrying the assistant's tool call and the tool's result is accepted and answered."""
    call, _ = forced_call(client, model, "named", features)
    messages = [
        {"role": "user", "content": TOOL_PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"raining": False, "celsius": 21})},
    ]
    body = {**chat_body(model, TOOL_PROMPT), "messages": messages, "tools": [WEATHER_TOOL]}
    answer = client.chat(body)
    content = message_content_or_none(answer)
    if not (content or "").strip() and not tool_calls_of(answer):
        raise CheckError("the turn after the tool result answered 200 with empty content and no tool call")
    detail(repr((content or "")[:60]))


@pytest.mark.full
def test_auto_calls_the_tool(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """With tool_choice `auto`, a question that needs the tool gets a call to it with valid arguments."""
    answer = client.chat(tool_body(model, "auto"))
    calls = tool_calls_of(answer)
    if not calls:
        content = message_content_or_none(answer) or ""
        raise CheckError(f"asked {TOOL_PROMPT!r} with the weather tool on auto, the model answered {content[:100]!r}")
    value = check_arguments(calls[0]["function"]["name"], calls[0]["function"]["arguments"], "tool_choice auto")
    if value.get("city") != "Paris":
        raise CheckError(f"tool_choice auto: asked about Paris, the model called {NAME} with {value}")
    detail(json.dumps(value))


CALL_TEXT = "To check the weather, a program writes call:get_weather(city=Paris) and then reads the result."


@pytest.mark.full
def test_call_text_kept(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """Text that only looks like a call (`call:name(...)`) is answered as text: the turn is not swallowed."""
    prompt = f"Repeat this sentence exactly, and nothing else: {CALL_TEXT}"
    for streamed in (False, True):
        body = chat_body(model, prompt, max_tokens=64, tools=[WEATHER_TOOL], tool_choice="auto")
        if streamed:
            stream = client.stream({**body, "stream": True})
            stream_problem(stream)
            content = stream.text
        else:
            content = message_content_or_none(client.chat(body)) or ""
        if "reads the result" not in content:
            raise CheckError(
                f"asked to repeat a sentence containing `call:get_weather(...)`{' (streamed)' if streamed else ''}, "
                f"the answer was {content[:120]!r}: the text after the call-like part was swallowed"
            )
    detail(repr(content[:60]))
