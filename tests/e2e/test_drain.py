"""`python -m deploy drain` (the chart's preStop hook) against a stub vLLM /metrics that drains, hangs or breaks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from deploy.__main__ import main
from deploy.launcher.drain import DrainError, in_flight
from tests.fixtures.servers import closed_port_url, run_asgi

# Shaped like vLLM 0.21.0's exposition: HELP/TYPE lines, labels, and a similarly named metric that must not count.
METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="gemma-4-e2b-it"}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="gemma-4-e2b-it"}} {waiting}
vllm:num_requests_waiting_by_reason{{engine="0",model_name="gemma-4-e2b-it",reason="capacity"}} 7.0
vllm:kv_cache_usage_perc{{engine="0",model_name="gemma-4-e2b-it"}} 0.5
"""


@dataclass
class Stub:
    """In-flight counts the stub reports, one poll after another (the last one repeats)."""

    counts: list[tuple[float, float]]
    status: int = 200
    polls: int = 0


def stub_app(stub: Stub) -> Starlette:
    async def metrics(request: Request) -> Response:
        running, waiting = stub.counts[min(stub.polls, len(stub.counts) - 1)]
        stub.polls += 1
        if stub.status != 200:
            return Response(status_code=stub.status)
        return PlainTextResponse(METRICS.format(running=running, waiting=waiting))

    return Starlette(routes=[Route("/metrics", metrics)])


def drain(url: str, *extra: str) -> int:
    return main(["drain", "--url", url, "--delay", "0", "--interval", "0.05", *extra])


def test_in_flight_sums_running_and_waiting_only() -> None:
    assert in_flight(METRICS.format(running=2.0, waiting=3.0)) == 5
    assert in_flight(METRICS.format(running=0.0, waiting=0.0)) == 0
    with pytest.raises(DrainError, match="is this a vLLM server"):
        in_flight("# nothing here\nhttp_requests_total 3\n")


def test_waits_until_the_last_request_finishes(capsys: pytest.CaptureFixture[str]) -> None:
    stub = Stub(counts=[(2, 1), (1, 0), (1, 0), (0, 0)])
    with run_asgi(stub_app(stub)) as url:
        assert drain(url, "--timeout", "10") == 0
    assert stub.polls == 4
    assert "drained" in capsys.readouterr().out


def test_gives_up_at_the_deadline_and_says_how_many_remain(capsys: pytest.CaptureFixture[str]) -> None:
    with run_asgi(stub_app(Stub(counts=[(3, 2)]))) as url:
        started = time.monotonic()
        assert drain(url, "--timeout", "0.5") == 1
        assert time.monotonic() - started < 3
    assert "5 request(s) still in flight after 0.5 s" in capsys.readouterr().err


def test_delay_comes_first() -> None:
    stub = Stub(counts=[(0, 0)])
    with run_asgi(stub_app(stub)) as url:
        started = time.monotonic()
        assert main(["drain", "--url", url, "--delay", "0.4", "--timeout", "5"]) == 0
        assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize("status", [503, 404])
def test_a_broken_metrics_endpoint_stops_the_wait(status: int, capsys: pytest.CaptureFixture[str]) -> None:
    with run_asgi(stub_app(Stub(counts=[(1, 0)], status=status))) as url:
        assert drain(url, "--timeout", "5") == 1
    assert f"cannot read {url}/metrics" in capsys.readouterr().err


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url()
    assert drain(url, "--timeout", "2") == 1
    assert "cannot read" in capsys.readouterr().err


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drain", "--timeout", "-1"]) == 2
    assert "--timeout must be >= 0" in capsys.readouterr().err
