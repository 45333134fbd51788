"""The stream timer: vLLM's timing rules on raw SSE bytes, however the reads split them, fast path included."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from deploy.bench.client import StreamTimer, body_error_text
from deploy.bench.metrics import RequestSample


def message(choices: list[dict[str, Any]], *, usage: dict[str, int] | None = None, spaced: bool = False) -> bytes:
    payload: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": choices}
    if usage is not None:
        payload["usage"] = usage
    separators = (", ", ": ") if spaced else (",", ":")
    return b"data: " + json.dumps(payload, separators=separators).encode() + b"\n\n"


def token(text: str, *, first: bool = False) -> dict[str, Any]:
    delta = {"role": "assistant", "content": text} if first else {"content": text}
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}


def vllm_stream(n: int, *, spaced: bool = False) -> list[bytes]:
    """What vLLM 0.21.0 streams: n token messages, then usage alone (empty choices), then [DONE]."""
    messages = [message([token(f"w{i} ", first=i == 0)], spaced=spaced) for i in range(n)]
    messages.append(message([], usage={"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}))
    messages.append(b"data: [DONE]\n\n")
    return messages


def timed(reads: list[tuple[bytes, float]]) -> RequestSample:
    timer = StreamTimer(RequestSample(index=0), 10.0)
    for data, now in reads:
        assert not timer.feed(data, now)
    return timer.finish()


def test_vllms_stream_gives_vllms_numbers() -> None:
    # message i arrives at 10.5 + 0.1 i; the usage message at 11.0
    stream = vllm_stream(5)
    reads = [(m, 10.5 + 0.1 * i) for i, m in enumerate(stream[:5])] + [(stream[5], 11.0), (stream[6], 11.0)]
    s = timed(reads)
    assert s.success and s.ttft == pytest.approx(0.5) and s.ttfc == pytest.approx(0.5)
    assert s.itl == pytest.approx([0.1] * 4)
    assert s.latency == pytest.approx(1.0)  # E2EL runs to the usage message, as in vLLM
    assert (s.output_tokens, s.prompt_tokens) == (5, 7) and not s.note
    assert s.tpot == pytest.approx((1.0 - 0.5) / 4)


@pytest.mark.parametrize("spaced", [False, True])
def test_any_split_of_the_bytes_gives_the_same_sample(spaced: bool) -> None:
    # Reads may end anywhere, even inside a message; the messages are stamped with the read that completes them.
    stream = vllm_stream(20, spaced=spaced)
    data = b"".join(stream)
    # where the first message's line and the usage message's line end (a message counts once its line is whole)
    first_end = data.index(b"\n")
    usage_end = len(data) - len(stream[-1]) - 2
    rng = random.Random(3)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), 15))
        starts = [0, *cuts]
        pieces = [data[a:b] for a, b in zip(starts, [*cuts, len(data)], strict=True)]
        s = timed([(piece, 11.0 + i) for i, piece in enumerate(pieces)])

        def arrival(byte: int, starts: list[int] = starts) -> float:
            return 11.0 + max(i for i, start in enumerate(starts) if start <= byte) - 10.0

        assert s.success and s.output_tokens == 20 and len(s.itl) == 19
        assert s.ttft == arrival(first_end) and s.latency == arrival(usage_end)
        assert s.ttft + sum(s.itl) <= s.latency


def test_messages_that_arrive_in_one_read_share_its_time() -> None:
    stream = vllm_stream(4)
    s = timed([(stream[0], 10.2), (b"".join(stream[1:]), 10.9)])
    assert s.ttft == pytest.approx(0.2) and s.itl == pytest.approx([0.7, 0.0, 0.0])
    assert s.latency == pytest.approx(0.9)


def test_role_only_first_message_counts_for_ttft_not_for_ttfc() -> None:
    # Servers such as transformers serve send the role alone first; vLLM's TTFT counts it, ttfc does not.
    role = message([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
    s = timed([(role, 10.1), (message([token("a")]), 10.4), (message([token("b")]), 10.5)])
    assert s.ttft == pytest.approx(0.1) and s.ttfc == pytest.approx(0.4)


def test_usage_on_the_last_chunk_with_choices_is_read() -> None:
    # transformers serve puts usage on the last chunk that still has choices
    last = message([token("b")], usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    s = timed([(message([token("a", first=True)]), 10.1), (last, 10.2), (b"data: [DONE]\n\n", 10.2)])
    assert (s.output_tokens, s.prompt_tokens) == (2, 3) and not s.note


def test_without_usage_tokens_are_counted_from_messages_and_marked() -> None:
    s = timed([(message([token("a", first=True)]), 10.1), (message([token("b")]), 10.2), (b"data: [DONE]\n\n", 10.2)])
    assert s.success and s.output_tokens == 2 and "counted from messages" in s.note


def test_comments_and_empty_lines_are_ignored() -> None:
    stream = vllm_stream(2)
    s = timed([(b": ping\n\n", 10.05), (stream[0], 10.1), (b"\r\n", 10.15), (b"".join(stream[1:]), 10.2)])
    assert s.ttft == pytest.approx(0.1) and s.output_tokens == 2


def test_an_error_event_fails_the_request() -> None:
    timer = StreamTimer(RequestSample(index=0), 0.0)
    assert not timer.feed(message([token("a", first=True)]), 0.1)
    assert timer.feed(b'data: {"error": {"message": "KV cache full", "code": 500}}\n\n', 0.2)
    assert not timer.sample.success and "KV cache full" in timer.sample.error


def test_a_message_that_is_not_json_fails_the_request() -> None:
    timer = StreamTimer(RequestSample(index=0), 0.0)
    assert timer.feed(b"data: {not json\n\n", 0.1)
    assert "not a JSON object" in timer.sample.error


def test_a_stream_without_choices_fails() -> None:
    s = timed([(b"data: [DONE]\n\n", 10.1)])
    assert not s.success and "without any message carrying choices" in s.error


def test_error_bodies_in_every_engines_shape() -> None:
    assert body_error_text(b'{"error": {"message": "bad model"}}') == "bad model"
    assert body_error_text(b'{"detail": "Not Found"}') == "Not Found"
    assert body_error_text(b"plain text") == "plain text"
    assert body_error_text(b"") == "(empty body)"
