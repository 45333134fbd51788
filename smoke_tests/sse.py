"""Reading an OpenAI chat stream strictly: what arrived, in order, and every framing problem found.

:func:`parse_lines` is pure (lines in, :class:`Stream` out) so the rules are unit-tested without a server;
the client feeds it the lines of a live response.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DONE = "[DONE]"


@dataclass
class Stream:
    """One streamed chat completion as received."""

    chunks: list[dict[str, Any]] = field(default_factory=list)  # parsed `data:` payloads before [DONE]
    done: bool = False  # `data: [DONE]` arrived
    after_done: list[str] = field(default_factory=list)  # anything that came after [DONE]
    problems: list[str] = field(default_factory=list)  # framing violations, in order
    ttft_s: float | None = None  # seconds to the first chunk with content
    elapsed_s: float = 0.0

    @property
    def text(self) -> str:
        """The streamed assistant text, all content deltas joined."""
        return "".join(
            str(choice.get("delta", {}).get("content") or "")
            for chunk in self.chunks
            for choice in chunk.get("choices") or []
            if isinstance(choice, dict) and isinstance(choice.get("delta"), dict)
        )

    @property
    def finish_reasons(self) -> list[str]:
        """Every non-null finish_reason, in order (exactly one is expected)."""
        return [
            choice["finish_reason"]
            for chunk in self.chunks
            for choice in chunk.get("choices") or []
            if isinstance(choice, dict) and choice.get("finish_reason") is not None
        ]

    @property
    def usage_chunks(self) -> list[int]:
        """Indexes of the chunks that carry a non-null usage object."""
        return [i for i, chunk in enumerate(self.chunks) if isinstance(chunk.get("usage"), dict)]


def parse_lines(lines: Iterable[str], stream: Stream | None = None) -> Stream:
    """Feed raw SSE ``lines`` (without line ends) into ``stream``; returns it.

    Rules: events are separated by blank lines; every event is exactly one ``data: `` line holding JSON or
    ``[DONE]``; SSE comments (``:`` lines, keep-alives) are allowed; nothing may follow ``[DONE]``.
    """
    stream = stream if stream is not None else Stream()
    for number, line in enumerate(lines, start=1):
        if line == "" or line.startswith(":"):
            continue
        if stream.done:
            stream.after_done.append(line)
            continue
        if not line.startswith("data: "):
            stream.problems.append(f"line {number} is not a `data: ` line: {line[:120]!r}")
            continue
        payload = line[len("data: ") :]
        if payload == DONE:
            stream.done = True
            continue
        try:
            chunk = json.loads(payload)
        except ValueError:
            stream.problems.append(f"line {number} is not JSON: {payload[:120]!r}")
            continue
        if not isinstance(chunk, dict):
            stream.problems.append(f"line {number} is JSON but not an object: {payload[:120]!r}")
            continue
        stream.chunks.append(chunk)
    return stream
