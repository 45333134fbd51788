"""Images reach the model: PNG and JPEG data URLs, streamed and not, grow the prompt versus no image."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.media import data_url
from smoke_tests.servers import Engine
from smoke_tests.validators import (
    IMAGE_PROMPT,
    MAX_TOKENS,
    chat_body,
    check_usage,
    image_content,
    message_content,
    stream_body,
    stream_problem,
    stream_usage,
)


@pytest.fixture(scope="module")
def text_only_prompt_tokens(client: SmokeClient, model: str) -> int:
    """prompt_tokens for the image prompt's text alone: the baseline an image must exceed."""
    answer = client.chat(chat_body(model, [{"type": "text", "text": IMAGE_PROMPT}]))
    return check_usage(answer.get("usage"), MAX_TOKENS, "text-only baseline")["prompt_tokens"]


def _grew(with_image: int, without: int, what: str) -> None:
    if with_image <= without:
        raise CheckError(
            f"prompt_tokens {with_image} with the {what} vs {without} without it: the image never reached the model"
        )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image(
    client: SmokeClient, model: str, text_only_prompt_tokens: int, fmt: str, detail: Callable[[str], None]
) -> None:
    """A base64 image_url part is accepted, answered, and counted in the prompt."""
    answer = client.chat(chat_body(model, image_content(data_url("red", fmt))))
    if not message_content(answer).strip():
        raise CheckError(f"the {fmt} request answered with empty content")
    prompt = check_usage(answer.get("usage"), MAX_TOKENS, f"{fmt} completion")["prompt_tokens"]
    _grew(prompt, text_only_prompt_tokens, fmt)
    detail(f"prompt {text_only_prompt_tokens} -> {prompt} tokens")


def test_image_streamed(
    client: SmokeClient, server: Engine, model: str, text_only_prompt_tokens: int, detail: Callable[[str], None]
) -> None:
    """The same works streamed: a valid stream whose usage counts the image."""
    stream = client.stream(stream_body(model, image_content(data_url("red", "PNG"))))
    stream_problem(stream)
    if not stream.text.strip():
        raise CheckError("the streamed image request produced no text")
    prompt = stream_usage(stream, MAX_TOKENS, server.usage_own_chunk)["prompt_tokens"]
    _grew(prompt, text_only_prompt_tokens, "streamed PNG")
    detail(f"prompt {text_only_prompt_tokens} -> {prompt} tokens")
