"""A non-streamed text chat completion: OpenAI shape, real content, a valid finish, consistent usage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smoke_tests.client import CheckError
from smoke_tests.servers import Engine
from smoke_tests.validators import MAX_TOKENS, check_finish_reason, check_usage, message_content


def test_response_shape(text_answer: dict[str, Any], server: Engine, model: str) -> None:
    """`object`, `id`, `model`, one assistant choice with non-empty content and a valid finish_reason."""
    if text_answer.get("object") != "chat.completion":
        raise CheckError(f"`object` is {text_answer.get('object')!r}, expected 'chat.completion'")
    if not isinstance(text_answer.get("id"), str) or not text_answer["id"]:
        raise CheckError(f"`id` must be a non-empty string, got {text_answer.get('id')!r}")
    if server.echoes_model and text_answer.get("model") != model:
        raise CheckError(f"`model` is {text_answer.get('model')!r}, expected the requested {model!r}")
    content = message_content(text_answer)
    choice = text_answer["choices"][0]
    if choice["message"].get("role") != "assistant":
        raise CheckError(f"`choices[0].message.role` is {choice['message'].get('role')!r}, expected 'assistant'")
    if not content.strip():
        raise CheckError("`choices[0].message.content` is empty: the model produced no text")
    check_finish_reason(choice.get("finish_reason"), "choices[0]")


def test_usage(text_answer: dict[str, Any], detail: Callable[[str], None]) -> None:
    """usage: prompt_tokens + completion_tokens = total_tokens, completion_tokens <= max_tokens."""
    usage = check_usage(text_answer.get("usage"), MAX_TOKENS, "completion")
    detail(f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens")
