"""--level full only: the answers make sense (arithmetic; the colour of a solid-colour image)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.media import COLOURS, data_url
from smoke_tests.validators import chat_body, image_content, message_content

pytestmark = pytest.mark.full


def test_arithmetic(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """'What is 17 + 25?' is answered with 42."""
    answer = client.chat(chat_body(model, "What is 17 + 25? Answer with the number only.", max_tokens=32))
    content = message_content(answer).strip()
    if not re.search(r"(?<!\d)42(?!\d)", content):
        raise CheckError(f"asked 17 + 25, the model answered {content[:80]!r} (expected 42)")
    detail(repr(content[:60]))


@pytest.mark.parametrize("colour", ["red", "blue"])
def test_image_colour(client: SmokeClient, model: str, colour: str, detail: Callable[[str], None]) -> None:
    """A solid-colour image is named by its colour, and by no other test colour."""
    question = "What colour is this image? Answer with one word."
    answer = client.chat(chat_body(model, image_content(data_url(colour, "PNG"), question), max_tokens=32))
    content = message_content(answer).strip()
    named = {name for name in COLOURS if re.search(rf"\b{name}\b", content.lower())}
    if named != {colour}:
        raise CheckError(f"shown a solid {colour} image, the model answered {content[:80]!r}")
    detail(repr(content[:60]))
