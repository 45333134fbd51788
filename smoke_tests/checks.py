"""Shared request bodies and response validators: each returns the first problem or raises CheckError."""

from __future__ import annotations

from typing import Any

from smoke_tests.client import CheckError
from smoke_tests.engines import FINISH_REASONS
from smoke_tests.sse import Stream

SEED = 1234
MAX_TOKENS = 24
# One prompt for the text, stream and burst checks, so streamed and non-streamed answers can be compared.
TEXT_PROMPT = "Name three colours of the rainbow."
IMAGE_PROMPT = "Describe this image in one sentence."


def chat_body(model: str, content: Any, *, max_tokens: int = MAX_TOKENS, **extra: Any) -> dict[str, Any]:
    """A deterministic chat request: temperature 0, fixed seed, always a max_tokens bound."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": SEED,
        **extra,
    }


def image_content(url: str, text: str = IMAGE_PROMPT) -> list[dict[str, Any]]:
    """An OpenAI content list: one image_url part, then the text."""
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]


def stream_body(model: str, content: Any, **extra: Any) -> dict[str, Any]:
    """A streamed request that asks for the usage chunk."""
    return chat_body(model, content, stream=True, stream_options={"include_usage": True}, **extra)


def message_content(answer: dict[str, Any]) -> str:
    """The assistant text of a non-streamed completion; CheckError naming the missing field otherwise."""
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise CheckError(f"`choices` must be a non-empty list, got {choices!r}")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise CheckError(f"`choices[0].message` must be an object, got {message!r}")
    content = message.get("content")
    if not isinstance(content, str):
        raise CheckError(f"`choices[0].message.content` must be a string, got {content!r}")
    return content


def check_usage(usage: Any, max_tokens: int, where: str) -> dict[str, int]:
    """Usage must be integers with prompt + completion = total and completion <= max_tokens."""
    if not isinstance(usage, dict):
        raise CheckError(f"{where}: `usage` must be an object, got {usage!r}")
    numbers = {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckError(f"{where}: `usage.{key}` must be a non-negative integer, got {value!r}")
        numbers[key] = value
    if numbers["prompt_tokens"] == 0:
        raise CheckError(f"{where}: `usage.prompt_tokens` is 0 for a non-empty prompt")
    if numbers["prompt_tokens"] + numbers["completion_tokens"] != numbers["total_tokens"]:
        raise CheckError(
            f"{where}: usage is inconsistent: prompt_tokens {numbers['prompt_tokens']} + completion_tokens "
            f"{numbers['completion_tokens']} != total_tokens {numbers['total_tokens']}"
        )
    if numbers["completion_tokens"] > max_tokens:
        raise CheckError(
            f"{where}: `usage.completion_tokens` {numbers['completion_tokens']} exceeds max_tokens {max_tokens}"
        )
    return numbers


def check_finish_reason(value: Any, where: str) -> None:
    """finish_reason must be one the OpenAI API defines."""
    if value not in FINISH_REASONS:
        raise CheckError(f"{where}: finish_reason {value!r} is not one of {', '.join(sorted(FINISH_REASONS))}")


def stream_usage(stream: Stream, max_tokens: int, own_chunk: bool) -> dict[str, int]:
    """The usage a stream reported when asked (stream_options.include_usage), checked like a completion's."""
    where = "stream usage"
    if not stream.usage_chunks:
        raise CheckError("stream_options.include_usage was set but no chunk carried `usage`")
    last = stream.usage_chunks[-1]
    chunk = stream.chunks[last]
    if own_chunk:
        if chunk.get("choices") != []:
            raise CheckError(
                f"the usage must come in its own chunk with `choices: []`, got choices {chunk.get('choices')!r}"
            )
        if last != len(stream.chunks) - 1:
            raise CheckError(f"the usage chunk is chunk {last + 1} of {len(stream.chunks)}; it must be the last")
    return check_usage(chunk["usage"], max_tokens, where)


def stream_problem(stream: Stream) -> None:
    """Framing problems and empty streams fail first, with the first offending line."""
    if stream.problems:
        raise CheckError(f"not a strict SSE stream: {stream.problems[0]}")
    if not stream.chunks:
        raise CheckError("the stream carried no chunk")
