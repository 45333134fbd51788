"""Streaming: strict SSE, one id, role first, exactly one finish_reason, usage when asked, [DONE] last."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smoke_tests.client import CheckError
from smoke_tests.servers import Engine
from smoke_tests.sse import Stream
from smoke_tests.validators import MAX_TOKENS, check_finish_reason, message_content, stream_problem, stream_usage


def test_sse_framing(text_stream: Stream, detail: Callable[[str], None]) -> None:
    """Every event is one `data: ` line of JSON; all chunks share one id and are chat.completion.chunk objects."""
    stream_problem(text_stream)
    ids = {chunk.get("id") for chunk in text_stream.chunks}
    if len(ids) != 1 or not isinstance(next(iter(ids)), str):
        raise CheckError(f"the chunks carry {len(ids)} different ids {sorted(map(str, ids))[:4]}; expected one")
    objects = {chunk.get("object") for chunk in text_stream.chunks}
    if objects != {"chat.completion.chunk"}:
        raise CheckError(f"chunk `object` values {sorted(map(str, objects))}, expected only 'chat.completion.chunk'")
    detail(f"{len(text_stream.chunks)} chunks, TTFT {text_stream.ttft_s or 0:.2f} s")


def test_role_first(text_stream: Stream) -> None:
    """The first chunk with a choice carries `delta.role` = assistant."""
    stream_problem(text_stream)
    first = next((c for c in text_stream.chunks if c.get("choices")), None)
    if first is None:
        raise CheckError("no chunk carried a choice")
    delta = first["choices"][0].get("delta") or {}
    if delta.get("role") != "assistant":
        raise CheckError(f"the first chunk's delta is {delta!r}; it must carry role 'assistant'")


def test_one_finish_reason(text_stream: Stream) -> None:
    """Exactly one chunk carries a finish_reason, and it is a valid one."""
    stream_problem(text_stream)
    reasons = text_stream.finish_reasons
    if len(reasons) != 1:
        raise CheckError(f"{len(reasons)} chunks carry a finish_reason ({reasons}); expected exactly one")
    check_finish_reason(reasons[0], "stream")


def test_usage_chunk(text_stream: Stream, server: Engine, detail: Callable[[str], None]) -> None:
    """With stream_options.include_usage, usage arrives (in its own `choices: []` chunk on vLLM and SGLang)."""
    stream_problem(text_stream)
    usage = stream_usage(text_stream, MAX_TOKENS, server.usage_own_chunk)
    detail(f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens")


def test_done_is_last(text_stream: Stream, server: Engine, detail: Callable[[str], None]) -> None:
    """`data: [DONE]` ends the stream and nothing follows it (optional on generic servers, checked if sent)."""
    stream_problem(text_stream)
    if text_stream.after_done:
        raise CheckError(f"data after `data: [DONE]`: {text_stream.after_done[0][:120]!r}")
    if not text_stream.done:
        if server.done_required:
            raise CheckError("the stream ended without `data: [DONE]`")
        detail("no [DONE] (optional on --server generic)")


def test_matches_non_streamed(text_stream: Stream, text_answer: dict[str, Any]) -> None:
    """At temperature 0 with a fixed seed, the streamed text equals the non-streamed text (ends trimmed)."""
    stream_problem(text_stream)
    streamed, whole = text_stream.text.strip(), message_content(text_answer).strip()
    if streamed != whole:
        raise CheckError(f"streamed text {streamed[:80]!r} differs from the non-streamed {whole[:80]!r}")
