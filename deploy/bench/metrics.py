"""Latency and throughput metrics with the definitions of vLLM 0.21.0's ``vllm bench serve``.

Per request (``vllm/benchmarks/lib/endpoint_request_func.py``, OpenAI chat client):

- TTFT: from sending the request to the first SSE message whose ``choices`` is non-empty.
- ITL: the gap between consecutive SSE messages with ``choices`` (one value per message, so a message that
  carries several tokens counts once).
- E2EL: from sending the request to the last SSE message of the stream (the usage chunk included).
- TPOT: ``(E2EL - TTFT) / (output tokens - 1)``, output tokens from the server's ``usage``; requests with one
  output token have no TPOT (and count as TPOT 0 for goodput).

Per run (``vllm/benchmarks/serve.py`` ``calculate_metrics``): request throughput = completed / wall time,
output throughput = total output tokens / wall time, total token throughput = (prompt + output tokens) /
wall time, goodput = requests meeting every SLO / wall time, percentiles with ``numpy.percentile`` (linear
interpolation), peak output tokens/s in one-second buckets. Failed requests count in ``failed`` only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


@dataclass
class RequestSample:
    """What one request measured; times in seconds, ``start`` on the client's monotonic clock."""

    index: int
    success: bool = False
    start: float = 0.0
    ttft: float = 0.0
    # Time to the first message that carries generated text: equal to TTFT on vLLM, later on servers that send
    # a role-only message before generating (kept in the JSON, not used by any vLLM metric).
    ttfc: float | None = None
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    error: str = ""
    note: str = ""
    # Sent again once because the kept-alive connection it went out on had been closed by the server.
    retries: int = 0

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first, or None with fewer than two output tokens."""
        if self.output_tokens > 1:
            return (self.latency - self.ttft) / (self.output_tokens - 1)
        return None

    def to_json(self) -> dict[str, Any]:
        """Every field, plus the derived TPOT, for the JSON report."""
        return {**asdict(self), "tpot": self.tpot}


@dataclass(frozen=True)
class Slo:
    """Service-level objectives for goodput, in milliseconds; None means not part of the goal."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The objectives that are set, as ``{"ttft_ms": 300.0, ...}``."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def is_set(self) -> bool:
        """Whether any objective is given (goodput is reported only then)."""
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))

    def met_by(self, sample: RequestSample) -> bool:
        """VLLM's rule: every given objective >= the request's value (TPOT 0 for one-token answers)."""
        checks = (
            (self.ttft_ms, sample.ttft),
            (self.tpot_ms, sample.tpot or 0.0),
            (self.e2el_ms, sample.latency),
        )
        return all(limit is None or limit / 1000.0 >= value for limit, value in checks)


SLO_KEYS = ("ttft_ms", "tpot_ms", "e2el_ms")


def parse_slo(items: Iterable[str]) -> Slo:
    """``["ttft_ms=300", "tpot_ms=50"]`` -> :class:`Slo`; ``ValueError`` naming the bad item and the fix.

    Also takes ``ttft:300`` (the older ``--goodput`` spelling, vLLM's ``--goodput ttft:300``).
    """
    values: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            name, sep, text = item.partition(":")
            name = f"{name}_ms" if sep and not name.endswith("_ms") else name
        if not sep or name not in SLO_KEYS:
            raise ValueError(f"SLO {item!r} is not NAME=MILLISECONDS with NAME one of {', '.join(SLO_KEYS)}")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"SLO {item!r}: {text!r} is not a number of milliseconds") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"SLO {item!r}: the limit must be a positive number of milliseconds")
        if name in values:
            raise ValueError(f"SLO {name} is given twice")
        values[name] = value
    return Slo(**values)


def summarize(values: Sequence[float], percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> dict[str, float]:
    """Mean, median, standard deviation and percentiles of ``values`` (seconds) in milliseconds, and ``count``.

    Like vLLM, an empty list summarises as zeros (``np.mean(values or 0)``); ``count`` 0 tells such a zero
    from a measured one (the tables print ``-`` for it). TPOT has no value for one-token answers, so a run
    of them reports a TPOT of 0 in vLLM's output.
    """
    data = np.asarray(values if len(values) else [0.0], dtype=float) * 1000.0
    summary = {
        "count": len(values),
        "mean": float(np.mean(data)),
        "median": float(np.median(data)),
        "std": float(np.std(data)),
    }
    for p in percentiles:
        summary[f"p{_pct_name(p)}"] = float(np.percentile(data, p))
    return summary


def _pct_name(p: float) -> str:
    """50.0 -> '50', 99.9 -> '99.9'."""
    return f"{p:g}"


def peak_output_rate(samples: Sequence[RequestSample]) -> tuple[float, int]:
    """VLLM's peak output tokens/s and peak concurrent requests, counted in one-second buckets.

    Each streamed message with choices counts as one token at its arrival time, as vLLM counts them.
    """
    ok = [s for s in samples if s.success]
    if not ok:
        return 0.0, 0
    t0 = min(s.start for s in ok)
    t1 = max(s.start + s.latency for s in ok)
    buckets = math.ceil(t1 - t0) + 1
    tokens = np.zeros(buckets)
    running = np.zeros(buckets)
    for s in ok:
        t = s.start + s.ttft
        times = [t]
        for gap in s.itl:
            t += gap
            times.append(t)
        for when in times:
            b = int(when - t0)
            if 0 <= b < buckets:
                tokens[b] += 1
        for b in range(int(s.start - t0), int(s.start + s.latency - t0) + 1):
            running[b] += 1
    return float(tokens.max()), int(running.max())


def compute_metrics(
    samples: Sequence[RequestSample],
    duration_s: float,
    *,
    slo: Slo | None = None,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """The run's metrics from its samples and wall time ``duration_s``, as vLLM's ``calculate_metrics``."""
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    percentiles = tuple(percentiles)
    ok = [s for s in samples if s.success]
    total_input = sum(s.prompt_tokens for s in ok)
    total_output = sum(s.output_tokens for s in ok)
    tpots = [s.tpot for s in ok if s.tpot is not None]
    peak_rate, peak_running = peak_output_rate(samples)
    metrics: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(samples) - len(ok),
        "duration_s": duration_s,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(ok) / duration_s,
        "output_throughput": total_output / duration_s,
        "total_token_throughput": (total_input + total_output) / duration_s,
        "ttft_ms": summarize([s.ttft for s in ok], percentiles),
        "tpot_ms": summarize(tpots, percentiles),
        "itl_ms": summarize([gap for s in ok for gap in s.itl], percentiles),
        "e2el_ms": summarize([s.latency for s in ok], percentiles),
        "max_output_tokens_per_s": peak_rate,
        "max_concurrent_requests": peak_running,
        # Requests whose output length the client had to count from messages (no usage from the server).
        "estimated_output_tokens": sum(1 for s in ok if s.note.startswith("no usage")),
        # Output tokens per streamed message: about 1 when the server streams token by token (a little below
        # with separate role and finish chunks, as vLLM sends). Well above 1 it batched tokens into messages
        # (stream interval, or an API server that fell behind its engine): ITL is then per message, and a
        # whole answer in one message gives TTFT = E2EL and a TPOT of 0.
        "tokens_per_message": total_output / messages if (messages := sum(1 + len(s.itl) for s in ok)) else None,
        # Requests whose first token reached the client with (nearly) the last: the stream was held back and
        # delivered in one burst (seen on a CPU-starved server), so their TTFT is their E2EL and TPOT ~0.
        "held_back_requests": sum(1 for s in ok if held_back(s)),
        "request_goodput": None,
        "slo": None,
        "slo_met": None,
        "failures": failure_causes(samples),
    }
    if slo is not None and slo.is_set():
        met = sum(1 for s in ok if slo.met_by(s))
        metrics["request_goodput"] = met / duration_s
        metrics["slo"] = slo.as_dict()
        metrics["slo_met"] = met
    return metrics


def held_back(sample: RequestSample) -> bool:
    """Whether a multi-token answer arrived in one burst: its first token came after 90 % of its E2EL."""
    return sample.success and sample.output_tokens > 1 and sample.ttft >= 0.9 * sample.latency


def failure_causes(samples: Sequence[RequestSample]) -> list[dict[str, Any]]:
    """Failed requests grouped by their error, most frequent first: ``{"cause", "count", "requests"}``."""
    groups: dict[str, list[int]] = {}
    for s in samples:
        if not s.success:
            groups.setdefault(s.error.splitlines()[0][:300] if s.error else "unknown", []).append(s.index)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [{"cause": cause, "count": len(indexes), "requests": indexes} for cause, indexes in ordered]
