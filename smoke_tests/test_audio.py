"""Audio input (feature `audio`): clips made in code reach the model; too much audio is refused cleanly.

Over the limit means a 4xx, never a 500 or a dropped connection; at --level full a spoken question is answered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from smoke_tests.client import CheckError, SmokeClient, excerpt
from smoke_tests.features import Features
from smoke_tests.media import AUDIO_MAX_SECONDS, audio_part, spoken_wav, wav_bytes
from smoke_tests.servers import Engine, error_shape_problem
from smoke_tests.validators import MAX_TOKENS, chat_body, check_usage, message_content_or_none

AUDIO_PROMPT = "What do you hear in this clip?"
SPOKEN = "What is two plus three?"


@pytest.fixture(autouse=True)
def _audio_on(features: Features) -> None:
    features.require("audio")


def _with_clips(*clips: bytes, text: str = AUDIO_PROMPT) -> list[dict[str, Any]]:
    return [*(audio_part(c) for c in clips), {"type": "text", "text": text}]


def test_clip_reaches_the_model(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """A 2 s WAV clip (`input_audio`) is accepted and raises prompt_tokens over the same prompt without it."""
    without = client.chat(chat_body(model, [{"type": "text", "text": AUDIO_PROMPT}]))
    base = check_usage(without.get("usage"), MAX_TOKENS, "text-only baseline")["prompt_tokens"]
    answer = client.chat(chat_body(model, _with_clips(wav_bytes(2.0))))
    message_content_or_none(answer)
    prompt = check_usage(answer.get("usage"), MAX_TOKENS, "audio completion")["prompt_tokens"]
    if prompt <= base:
        raise CheckError(
            f"prompt_tokens {prompt} with a 2 s clip vs {base} without it: the audio never reached the model"
        )
    detail(f"prompt {base} -> {prompt} tokens")


def test_over_limit_refused(client: SmokeClient, server: Engine, model: str, detail: Callable[[str], None]) -> None:
    """More audio than a prompt may carry gets a 4xx in the engine's error shape, and the server keeps serving."""
    clip = wav_bytes(1.0)
    # One more clip than vLLM's per-prompt limit of the bundle's audio feature (1); a server allowing more
    # still has a cap, and 8 clips is far beyond any sensible one.
    body = chat_body(model, _with_clips(*([clip] * 8)), max_tokens=1)
    response = client.request("POST", "/v1/chat/completions", json=body, headers={"Connection": "close"})
    if not 400 <= response.status_code < 500:
        raise CheckError(
            f"8 audio clips in one prompt answered {response.status_code}, expected a 4xx refusal: {excerpt(response)}"
        )
    if server.error_shape:
        try:
            parsed: object = response.json()
        except ValueError:
            parsed = response.text[:200]
        problem = error_shape_problem(server.error_shape, parsed)
        if problem:
            raise CheckError(f"8 audio clips answered {response.status_code} but {problem}")
    try:
        client.chat(chat_body(model, "Say OK.", max_tokens=1))
    except CheckError as exc:
        raise CheckError(
            f"after the {response.status_code} for too many clips, the server stopped serving: {exc}"
        ) from exc
    detail(f"{response.status_code}: {excerpt(response, 60)}")


@pytest.mark.full
def test_spoken_question(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """A question spoken by espeak-ng ('What is two plus three?') is answered with five."""
    speech = spoken_wav(SPOKEN)
    if speech is None:
        pytest.skip("espeak-ng is not installed here (the smoke image has it): apt-get install espeak-ng")
    prompt = "Answer the question in the audio with a number only."
    answer = client.chat(chat_body(model, _with_clips(speech, text=prompt), max_tokens=16))
    content = (message_content_or_none(answer) or "").strip()
    if not re.search(r"(?<!\d)5(?!\d)|\bfive\b", content.lower()):
        raise CheckError(f"asked {SPOKEN!r} out loud, the model answered {content[:80]!r} (expected 5)")
    detail(repr(content[:60]))


def test_long_clip_not_an_error(client: SmokeClient, model: str, detail: Callable[[str], None]) -> None:
    """A clip longer than the model's 30 s is refused with a 4xx or cut to 30 s; never a 500 or a dropped connection."""
    seconds = AUDIO_MAX_SECONDS + 10
    body = chat_body(model, _with_clips(wav_bytes(seconds)), max_tokens=1)
    response = client.request("POST", "/v1/chat/completions", json=body, headers={"Connection": "close"})
    if response.status_code >= 500:
        raise CheckError(f"a {seconds:g} s clip answered {response.status_code}: {excerpt(response)}")
    detail(f"{seconds:g} s clip: {response.status_code}")
