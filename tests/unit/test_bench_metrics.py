"""The benchmark's metric math against hand-computed examples (vLLM 0.21.0's definitions)."""

from __future__ import annotations

import pytest

from deploy.bench.metrics import (
    RequestSample,
    Slo,
    compute_metrics,
    failure_causes,
    parse_slo,
    peak_output_rate,
    summarize,
)


def sample(index: int, *, start: float, ttft: float, itl: list[float], out: int, prompt: int = 10) -> RequestSample:
    return RequestSample(
        index=index,
        success=True,
        start=start,
        ttft=ttft,
        itl=itl,
        latency=ttft + sum(itl),
        prompt_tokens=prompt,
        output_tokens=out,
    )


def test_tpot_excludes_the_first_token() -> None:
    s = sample(0, start=0.0, ttft=0.5, itl=[0.1, 0.1, 0.2], out=4)
    assert s.latency == pytest.approx(0.9)
    assert s.tpot == pytest.approx((0.9 - 0.5) / 3)


def test_one_token_answers_have_no_tpot() -> None:
    assert sample(0, start=0, ttft=0.2, itl=[], out=1).tpot is None


def test_run_metrics_by_hand() -> None:
    a = sample(0, start=0.0, ttft=0.2, itl=[0.1, 0.1, 0.1], out=4, prompt=100)  # latency 0.5
    b = sample(1, start=0.5, ttft=0.4, itl=[0.3], out=2, prompt=50)  # latency 0.7
    failed = RequestSample(index=2, success=False, error="HTTP 500")
    m = compute_metrics([a, b, failed], duration_s=2.0)
    assert m["completed"] == 2 and m["failed"] == 1
    assert m["total_input_tokens"] == 150 and m["total_output_tokens"] == 6
    assert m["request_throughput"] == pytest.approx(1.0)
    assert m["output_throughput"] == pytest.approx(3.0)
    assert m["total_token_throughput"] == pytest.approx(78.0)
    assert m["ttft_ms"]["mean"] == pytest.approx(300.0)
    assert m["ttft_ms"]["median"] == pytest.approx(300.0)
    # numpy's linear percentile of [200, 400]: p90 = 200 + 0.9 * 200
    assert m["ttft_ms"]["p90"] == pytest.approx(380.0)
    # TPOT: a = 0.3/3 = 100 ms, b = 0.3/1 = 300 ms
    assert m["tpot_ms"]["mean"] == pytest.approx(200.0)
    # ITL pools every gap of every request: [100, 100, 100, 300]
    assert m["itl_ms"]["mean"] == pytest.approx(150.0)
    assert m["itl_ms"]["median"] == pytest.approx(100.0)
    assert m["e2el_ms"]["mean"] == pytest.approx(600.0)
    assert m["request_goodput"] is None


def test_goodput_counts_requests_meeting_every_slo() -> None:
    a = sample(0, start=0.0, ttft=0.2, itl=[0.1, 0.1, 0.1], out=4)  # TPOT 100 ms, E2EL 500 ms
    b = sample(1, start=0.0, ttft=0.4, itl=[0.3], out=2)  # TPOT 300 ms
    c = sample(2, start=0.0, ttft=0.1, itl=[], out=1)  # no TPOT: counts as 0 for goodput
    m = compute_metrics([a, b, c], 4.0, slo=Slo(ttft_ms=300, tpot_ms=150))
    assert m["request_goodput"] == pytest.approx(2 / 4.0)  # a and c
    m = compute_metrics([a, b, c], 4.0, slo=Slo(e2el_ms=500))
    assert m["request_goodput"] == pytest.approx(2 / 4.0)  # a (exactly 500) and c


def test_empty_summary_is_zeros_like_vllm_with_a_count_of_zero() -> None:
    empty = {"count": 0, "mean": 0.0, "median": 0.0, "std": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
    assert summarize([]) == empty
    assert summarize([0.001, 0.003])["count"] == 2


def test_one_token_answers_report_no_tpot_not_a_measured_zero() -> None:
    # TPOT p50 "0.0" used to look like a measurement; the count says nothing was measured
    m = compute_metrics([sample(i, start=0.0, ttft=0.2, itl=[], out=1) for i in range(3)], 1.0)
    assert m["tpot_ms"]["count"] == 0 and m["tpot_ms"]["p50"] == 0.0
    assert m["ttft_ms"]["count"] == 3


def test_goodput_reports_the_slo_and_how_many_met_it() -> None:
    a = sample(0, start=0.0, ttft=0.2, itl=[0.1, 0.1, 0.1], out=4)
    b = sample(1, start=0.0, ttft=0.4, itl=[0.3], out=2)
    m = compute_metrics([a, b], 2.0, slo=Slo(ttft_ms=300))
    assert m["slo"] == {"ttft_ms": 300} and m["slo_met"] == 1 and m["request_goodput"] == pytest.approx(0.5)
    assert compute_metrics([a, b], 2.0)["request_goodput"] is None


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["ttft_ms=300", "tpot_ms=50"], Slo(ttft_ms=300, tpot_ms=50)),
        (["e2el_ms=2000.5"], Slo(e2el_ms=2000.5)),
        (["ttft:300"], Slo(ttft_ms=300)),  # vLLM's --goodput spelling
        ([], Slo()),
    ],
)
def test_slos_parse(items: list[str], expected: Slo) -> None:
    assert parse_slo(items) == expected


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["ttft=300"], "NAME=MILLISECONDS"),
        (["ttft_ms"], "NAME=MILLISECONDS"),
        (["itl_ms=5"], "one of ttft_ms, tpot_ms, e2el_ms"),
        (["ttft_ms=fast"], "'fast' is not a number"),
        (["ttft_ms=-1"], "positive"),
        (["ttft_ms=nan"], "positive"),
        (["ttft_ms=1", "ttft_ms=2"], "twice"),
    ],
)
def test_slos_that_do_not_parse_say_why(items: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slo(items)


def test_failures_are_grouped_by_cause_most_frequent_first() -> None:
    ok = sample(0, start=0.0, ttft=0.1, itl=[], out=1)
    bad = [
        RequestSample(index=1, error="HTTP 500: boom"),
        RequestSample(index=2, error="the stream stalled: no data for 1 s (--stall-timeout)"),
        RequestSample(index=3, error="HTTP 500: boom"),
    ]
    assert failure_causes([ok, *bad]) == [
        {"cause": "HTTP 500: boom", "count": 2, "requests": [1, 3]},
        {"cause": "the stream stalled: no data for 1 s (--stall-timeout)", "count": 1, "requests": [2]},
    ]
    assert compute_metrics([ok, *bad], 1.0)["failures"][0]["count"] == 2


def test_estimated_output_tokens_are_counted() -> None:
    measured = sample(0, start=0.0, ttft=0.1, itl=[0.1], out=2)
    estimated = sample(1, start=0.0, ttft=0.1, itl=[0.1], out=2)
    estimated.note = "no usage in the stream: output tokens counted from messages"
    assert compute_metrics([measured, estimated], 1.0)["estimated_output_tokens"] == 1


def test_peak_output_rate_counts_messages_per_second() -> None:
    # a: messages at 0.2, 0.3, 0.4, 0.5; b: messages at 1.1, 1.4 -> 4 in second 0, 2 in second 1
    a = sample(0, start=0.0, ttft=0.2, itl=[0.1, 0.1, 0.1], out=4)
    b = sample(1, start=0.7, ttft=0.4, itl=[0.3], out=2)
    peak, running = peak_output_rate([a, b])
    assert peak == 4.0
    assert running == 2  # both active during second 0


def test_duration_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        compute_metrics([], 0.0)


def test_tokens_per_message_shows_a_server_that_batched_tokens() -> None:
    streamed = sample(0, start=0.0, ttft=0.1, itl=[0.1, 0.1, 0.1], out=4)  # 4 messages, 4 tokens
    assert compute_metrics([streamed], 1.0)["tokens_per_message"] == pytest.approx(1.0)
    lumped = sample(1, start=0.0, ttft=0.5, itl=[], out=256)  # the whole answer in one message
    assert lumped.tpot == 0.0
    assert compute_metrics([lumped], 1.0)["tokens_per_message"] == pytest.approx(256.0)
    assert compute_metrics([], 1.0)["tokens_per_message"] is None


def test_answers_delivered_in_one_burst_are_counted_as_held_back() -> None:
    streamed = sample(0, start=0.0, ttft=0.05, itl=[0.01] * 9, out=10)
    # 10 separate messages, all read at the very end: what a CPU-starved server's stream looks like
    burst = sample(1, start=0.0, ttft=0.5, itl=[0.0] * 9, out=10)
    one_token = sample(2, start=0.0, ttft=0.2, itl=[], out=1)  # TTFT = E2EL by definition: not a burst
    m = compute_metrics([streamed, burst, one_token], 1.0)
    assert m["held_back_requests"] == 1
    assert m["tokens_per_message"] == pytest.approx(21 / 21)  # one token per message: not batched by the server
