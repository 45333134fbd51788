"""Which opt-in features the server runs (tools, reasoning, audio): named by ``--features``, or asked of it.

The feature checks run only for the features the server was started with; the others are skipped with the
reason. ``--features auto`` (the default) asks the server with one small request per feature it can tell:

- tools: a ``tool_choice: required`` request. vLLM answers 400 when it was started without a tool parser.
- audio: a 0.2 s ``input_audio`` clip. vLLM answers 400 when the audio limit is 0 (the tower is not loaded).
- reasoning: cannot be told over the OpenAI API (the ``reasoning`` field is there either way), so it is
  checked only when named: ``--features reasoning`` (compose and the Helm test pod pass the server's list).

Probing relies on vLLM's documented refusals, so it runs with ``--server vllm`` only; on other servers ``auto``
means no feature (name them with ``--features``): transformers serve, for one, answers 200 to a forced tool
choice it ignores. Probe requests go out with ``Connection: close``; a 4xx means off, anything else (a 500, no
answer) fails every feature check with the probe's message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from smoke_tests.client import CheckError, SmokeClient, excerpt
from smoke_tests.media import audio_part, wav_bytes
from smoke_tests.settings import FEATURES, Settings

NOT_DISCOVERABLE = {"reasoning": "a reasoning parser cannot be detected over the API; pass --features reasoning"}


@dataclass(frozen=True)
class Features:
    """The features on, and for each feature off the reason (shown when its checks are skipped)."""

    on: frozenset[str]
    why_off: dict[str, str] = field(default_factory=dict)

    def require(self, name: str) -> None:
        """Skip the calling check unless feature ``name`` is on."""
        if name not in self.on:
            pytest.skip(f"feature {name} is off: {self.why_off.get(name, 'not in --features')}")


def _probe(client: SmokeClient, body: dict, what: str) -> tuple[bool, str]:
    """(on, why) from one probe request: 200 = on, 400-499 = off, anything else = CheckError."""
    response = client.request("POST", "/v1/chat/completions", json=body, headers={"Connection": "close"})
    if response.status_code == 200:
        return True, f"{what}: answered 200"
    if 400 <= response.status_code < 500:
        return False, f"the server refused a {what} ({response.status_code}: {excerpt(response, 120)})"
    raise CheckError(
        f"asking the server whether it runs a feature, a {what} answered {response.status_code}: {excerpt(response)}"
    )


def discover(client: SmokeClient, settings: Settings, model: str) -> Features:
    """The features named by ``--features``, or found by probing the server (see the module docstring)."""
    named = settings.feature_list
    if named is not None:
        off = {name: f"not in --features {settings.features}" for name in FEATURES if name not in named}
        return Features(frozenset(named), off)
    if settings.server != "vllm":
        why = f"--features auto asks vLLM only (--server {settings.server}): name the server's features with --features"
        return Features(frozenset(), dict.fromkeys(FEATURES, why))
    from smoke_tests.validators import TOOL_PROMPT, WEATHER_TOOL

    base = {"model": model, "max_tokens": 1, "temperature": 0}
    tools_on, tools_why = _probe(
        client,
        {
            **base,
            "messages": [{"role": "user", "content": TOOL_PROMPT}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
        },
        "tool_choice=required request",
    )
    clip = [audio_part(wav_bytes(0.2)), {"type": "text", "text": "What is this sound?"}]
    audio = {**base, "messages": [{"role": "user", "content": clip}]}
    audio_on, audio_why = _probe(client, audio, "0.2 s audio clip")
    on = {name for name, is_on in (("tools", tools_on), ("audio", audio_on)) if is_on}
    off = {name: why for name, why in (("tools", tools_why), ("audio", audio_why)) if name not in on}
    return Features(frozenset(on), {**off, **NOT_DISCOVERABLE})
