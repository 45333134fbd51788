"""The smoke suite's feature plumbing without a model: --features, the audio and tool helpers, and the client
opening a fresh connection after any error response (against a real keep-alive HTTP server on loopback)."""

from __future__ import annotations

import http.server
import io
import json
import threading
import wave
from collections.abc import Iterator
from typing import ClassVar

import pytest

from smoke_tests.client import SmokeClient
from smoke_tests.media import audio_part, wav_bytes
from smoke_tests.settings import resolve
from smoke_tests.sse import parse_lines
from smoke_tests.validators import REPORT_SCHEMA, schema_problem, stream_tool_calls


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", None), ("none", ()), ("tools, audio", ("tools", "audio")), ("reasoning,reasoning", ("reasoning",))],
)
def test_features_option(value: str, expected: tuple[str, ...] | None) -> None:
    assert resolve({"base_url": "http://h:1", "features": value}, {}).feature_list == expected
    assert resolve({"base_url": "http://h:1"}, {"SMOKE_FEATURES": value}).feature_list == expected
    assert resolve({"base_url": "http://h:1"}, {}).features == "auto"


def test_wav_is_a_mono_16_khz_clip_of_the_asked_length() -> None:
    with wave.open(io.BytesIO(wav_bytes(2.0))) as clip:
        assert (clip.getnchannels(), clip.getframerate(), clip.getnframes()) == (1, 16000, 32000)
    part = audio_part(wav_bytes(0.5))
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"


def test_schema_problems_name_the_path() -> None:
    assert schema_problem({"city": "Paris", "sunny": True, "days": 3}, REPORT_SCHEMA) is None
    assert schema_problem({"city": "Paris", "sunny": True, "days": 9}, REPORT_SCHEMA) == (
        "at days: 9 is greater than the maximum of 7"
    )
    assert "'city' is a required property" in str(schema_problem({"sunny": True, "days": 1}, REPORT_SCHEMA))


def test_streamed_tool_calls_join_by_index() -> None:
    def delta(call: dict) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})

    lines = [
        delta({"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}),
        delta({"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}),
        delta({"index": 0, "function": {"arguments": '{"x"'}}),
        delta({"index": 0, "function": {"arguments": ": 1}"}}),
        delta({"index": 1, "function": {"arguments": "}"}}),
    ]
    calls = stream_tool_calls(parse_lines(lines))
    assert calls == {
        0: {"name": "f", "id": "a", "arguments": '{"x": 1}'},
        1: {"name": "g", "id": "b", "arguments": "{}"},
    }


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: 400 for /bad, 200 otherwise; records the client port of every request."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        self.ports.append(self.client_address[1])
        body = b"{}"
        self.send_response(400 if self.path == "/bad" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keep_alive() -> Iterator[str]:
    _KeepAlive.ports = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_client_opens_a_fresh_connection_after_an_error_response(keep_alive: str) -> None:
    client = SmokeClient(resolve({"base_url": keep_alive}, {}))
    try:
        for path in ("/ok", "/ok", "/bad", "/ok", "/ok"):
            client.request("GET", path)
    finally:
        client.close()
    first, second, bad, after, again = _KeepAlive.ports
    assert first == second == bad  # keep-alive reuses the connection while answers are fine
    assert after != bad  # after the 400 the next request comes on a new connection
    assert again == after
    assert client.connections_reset == 1
