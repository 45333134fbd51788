"""--level full only: the answers make sense (arithmetic; the colour of a solid-colour image)."""

from __future__ import annotations

import re

import pytest

from smoke_tests.checks import chat_body, image_content, message_content
from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.media import data_url

pytestmark = pytest.mark.full


def test_arithmetic(client: SmokeClient, model: str) -> None:
    """'What is 17 + 25?' is answered with 42."""
    answer = client.chat(chat_body(model, "What is 17 + 25? Answer with the number only.", max_tokens=32))
    content = message_content(answer)
    if not re.search(r"(?<!\d)42(?!\d)", content):
        raise CheckError(f"asked 17 + 25, the model answered {content.strip()[:80]!r} (expected 42)")


@pytest.mark.parametrize("colour", ["red", "blue"])
def test_image_colour(client: SmokeClient, model: str, colour: str) -> None:
    """A solid-colour image is named by its colour."""
    question = "What colour is this image? Answer with one word."
    answer = client.chat(chat_body(model, image_content(data_url(colour, "PNG"), question), max_tokens=32))
    content = message_content(answer)
    if colour not in content.lower():
        raise CheckError(f"shown a solid {colour} image, the model answered {content.strip()[:80]!r}")
