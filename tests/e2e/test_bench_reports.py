"""``python -m deploy bench`` reports against stub servers: the JSON's structure, goodput with SLOs, sweeps and
their plot, the progress bar, bad input (exit 2, no file), and ``--compare-vllm`` with vLLM's own client."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.__main__ import main
from tests.e2e.bench_stubs import MODEL, streaming_app
from tests.fixtures.servers import closed_port_url, run_asgi


def bench(*args: str) -> int:
    return main(["bench", "--no-progress", *args])


SHORT = ("--context", "512", "--prompt-tokens", "0", "--max-tokens", "5", "--warmup", "0")


def test_the_json_keeps_config_server_versions_summary_stages_and_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    with run_asgi(streaming_app(ttft_s=0.05, gap_s=0.01, tokens=5)) as url:
        code = bench("--base-url", url, *SHORT, "--concurrency", "1,2", "--requests", "4", "--api-key", "s3cret-key",
                     "--json", str(out))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    assert "s3cret-key" not in text  # the API key is never saved
    doc = json.loads(text)
    assert doc["schema"] == 2 and doc["complete"] is True and doc["created"]
    assert doc["server"]["engine"] == "vLLM v0.21.0" and doc["server"]["version"] == {"version": "0.21.0"}
    assert doc["server"]["model"] == MODEL and doc["server"]["max_model_len"] == 4096
    assert doc["versions"]["aiohttp"] and doc["versions"]["python"]
    config = doc["config"]
    assert config["concurrency"] == [1, 2] and config["requests"] == 4 and config["api_key_set"] is True
    assert config["request_rate"] == "inf" and config["max_tokens"] == 5
    assert [row["batch"] for row in doc["summary"]] == [1, 2]
    for row, run in zip(doc["summary"], doc["runs"], strict=True):
        assert row["completed"] == run["metrics"]["completed"] == 4 and row["failed"] == 0
        assert run["load"] == "closed loop" and run["metrics"]["failures"] == []
        assert run["metrics"]["estimated_output_tokens"] == 0  # the stub sends usage
        assert [s["index"] for s in run["samples"]] == [0, 1, 2, 3]
        assert all(s["output_tokens"] == 5 and len(s["itl"]) == 4 for s in run["samples"])


def test_goodput_counts_the_requests_within_every_slo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # TTFT 0.3 s and TPOT 0.1 s for every request
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    with run_asgi(streaming_app(ttft_s=0.3, gap_s=0.1, tokens=3)) as url:
        code = bench("--base-url", url, *SHORT, "--max-tokens", "3", "--concurrency", "2", "--requests", "4",
                     "--slo", "ttft_ms=1000", "e2el_ms=5000", "--json", str(out), "--markdown", str(md))  # fmt: skip
        assert code == 0
        met = json.loads(out.read_text())["runs"][0]["metrics"]
        assert met["slo"] == {"ttft_ms": 1000, "e2el_ms": 5000} and met["slo_met"] == 4
        assert met["request_goodput"] == pytest.approx(met["request_throughput"])
        assert "goodput" in capsys.readouterr().err
        code = bench("--base-url", url, *SHORT, "--max-tokens", "3", "--concurrency", "2", "--requests", "4",
                     "--slo", "ttft_ms=1000", "tpot_ms=50", "--json", str(out))  # fmt: skip
    assert code == 0
    missed = json.loads(out.read_text())["runs"][0]["metrics"]
    assert missed["slo_met"] == 0 and missed["request_goodput"] == 0.0  # every TPOT is 100 ms > 50 ms
    assert "| 2 (100 % met) |" not in md.read_text() and "(100 % met)" in md.read_text()


def test_a_sweep_runs_every_point_and_plots_the_pareto_front(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    with run_asgi(streaming_app(ttft_s=0.02, gap_s=0.005, tokens=5)) as url:
        code = bench("--base-url", url, *SHORT, "--sweep", "1,2,4", "--requests", "8", "--json", str(out))
        assert code == 0
        runs = json.loads(out.read_text())["runs"]
        assert [(r["batch"], r["request_rate"]) for r in runs] == [(1, None), (2, None), (4, None)]
        png = tmp_path / "sweep-sweep.png"  # beside the JSON
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # the same over request rates, open loop, plot where asked
        rated = tmp_path / "rated.json"
        code = bench("--base-url", url, *SHORT, "--sweep", "20,40", "--sweep-over", "rate", "--requests", "6",
                     "--json", str(rated), "--plot", str(tmp_path / "rates.png"))  # fmt: skip
    assert code == 0
    runs = json.loads(rated.read_text())["runs"]
    assert [(r["batch"], r["request_rate"], r["load"]) for r in runs] == [
        (None, 20.0, "Poisson arrivals"),
        (None, 40.0, "Poisson arrivals"),
    ]
    assert all(r["metrics"]["completed"] == 6 for r in runs)
    assert (tmp_path / "rates.png").stat().st_size > 10_000


def test_the_progress_bar_shows_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_asgi(streaming_app(tokens=5)) as url:
        args = ["bench", "--base-url", url, *SHORT, "--concurrency", "1", "--requests", "3"]
        assert main(args) == 0
        assert "req/s]" not in capsys.readouterr().err  # captured stderr is not a TTY: no bar
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        assert main(args) == 0
        assert "req/s]" in capsys.readouterr().err
        assert main([*args, "--no-progress"]) == 0
        assert "req/s]" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "no-such-model"], "does not serve model 'no-such-model'"),
        (["--slo", "ttft=300"], "NAME=MILLISECONDS"),
        (["--slo", "ttft_ms=soon"], "'soon' is not a number"),
        (["--goodput", "tpot:-5"], "positive"),
        (["--sweep", "1.5,2"], "whole numbers"),
        (["--sweep", "1,2", "--concurrency", "4"], "replaces --concurrency"),
        (["--images", "1", "--compare-vllm"], "text prompts only"),
        (["--plot", "sweep.svg"], "the plot is a PNG"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    outputs = ["--json", str(tmp_path / "out" / "r.json"), "--markdown", str(tmp_path / "out" / "r.md")]
    with run_asgi(streaming_app()) as url:
        code = bench("--base-url", url, *SHORT, "--requests", "2", *outputs, *extra)
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.rglob("*")) == []


def test_an_unreachable_server_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--base-url", closed_port_url(), *SHORT, "--json", str(tmp_path / "r.json")) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and "--base-url" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("points", ["", ",", "0,1", "-2"])
def test_a_sweep_of_no_points_is_a_usage_error(points: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench("--base-url", "http://127.0.0.1:9", "--sweep", points)
    assert exit_info.value.code == 2
    assert "--sweep" in capsys.readouterr().err


def test_an_output_path_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert bench("--base-url", "http://127.0.0.1:9", *SHORT, "--json", str(blocker / "r.json")) == 2
    assert "not a writable folder" in capsys.readouterr().err


def test_merge_fills_the_cards_table_from_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    with run_asgi(streaming_app(ttft_s=0.02, tokens=5)) as url:
        assert bench("--base-url", url, *SHORT, "--concurrency", "1", "--requests", "2", "--format", "W8A16",
                     "--json", str(out)) == 0  # fmt: skip
    card = tmp_path / "card.md"
    card.write_text("# Model card\n\n<!-- gemma4-serve bench: card table -->\npending\n"
                    "<!-- /gemma4-serve bench: card table -->\n")  # fmt: skip
    assert main(["bench", "--merge", str(out), "--fill-card", str(card)]) == 0
    filled = card.read_text()
    assert "pending" not in filled and "| vLLM v0.21.0 | W8A16 | 1 | 512 |" in filled
    capsys.readouterr()
    card.write_text("# no markers\n")
    assert main(["bench", "--merge", str(out), "--fill-card", str(card)]) == 2
    assert "no table markers" in capsys.readouterr().err and card.read_text() == "# no markers\n"


@pytest.mark.slow
def test_compare_vllm_sends_the_same_prompts_with_vllms_client(
    vllm_python: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    with run_asgi(streaming_app(ttft_s=0.05, gap_s=0.01, tokens=6, tokenize=True)) as url:
        code = bench("--base-url", url, "--context", "512", "--prompt-tokens", "40", "--max-tokens", "6",
                     "--concurrency", "2", "--requests", "6", "--compare-vllm", "--vllm-python", vllm_python,
                     "--slo", "ttft_ms=500", "--json", str(out))  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (run,) = json.loads(out.read_text())["runs"]
    compared = run["compare_vllm"]
    assert compared["error"] is None and compared["tool"].startswith("vllm bench serve 0.21.0")
    assert "--dataset-name" in compared["command"] and "--max-concurrency" in compared["command"]
    theirs, ours = compared["metrics"], run["metrics"]
    assert theirs["completed"] == ours["completed"] == 6 and theirs["failed"] == 0
    # the same prompts, counted by the same server: the same token totals
    assert theirs["total_input_tokens"] == ours["total_input_tokens"] == 6 * 40
    assert theirs["total_output_tokens"] == ours["total_output_tokens"] == 36
    assert theirs["request_goodput"] is not None
    # the stub's 50 ms TTFT and 10 ms gaps, seen by both clients
    assert theirs["ttft_ms"]["p50"] == pytest.approx(ours["ttft_ms"]["p50"], abs=40)
    # vLLM's per-request numbers are kept beside ours (rounds are pooled from them: make bench-agreement)
    records = compared["samples"]
    assert len(records) == 6 and all(r["success"] and r["output_tokens"] == 6 for r in records)
    assert all(0.04 <= r["ttft"] < 1.0 and len(r["itl"]) >= 4 for r in records)
    assert "| metric | deploy bench | vllm bench serve | difference |" in captured.out


def test_a_kept_alive_connection_the_server_closed_is_replaced_not_counted_as_a_failure() -> None:
    # uvicorn (vLLM's server) closes idle connections after 5 s, and after an error answer, without saying so
    # (no `Connection: close`). This server does it after every answer: each request after the first goes
    # out on a dead connection first.
    import asyncio

    from deploy.bench.client import ServerClient, encode_body
    from deploy.bench.null_server import stream_messages

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        body = json.loads(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for message in stream_messages(body, chat=True):
            writer.write(message)
        await writer.drain()
        await asyncio.sleep(0.2)  # keep-alive was promised (HTTP/1.1 default), the next request arrives here,
        writer.close()  # and then the connection goes away unanswered

    async def scenario() -> list[Any]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, ServerClient(f"http://127.0.0.1:{port}", connections=1) as client:
            data = encode_body({"model": "m", "messages": [], "max_tokens": 3, "stream_options": {}})
            samples = []
            for i in range(3):
                samples.append(await client.stream_chat(i, data))
            return samples

    samples = asyncio.run(scenario())
    assert [s.success for s in samples] == [True, True, True], [s.error for s in samples]
    assert [s.output_tokens for s in samples] == [3, 3, 3]
    assert [s.retries for s in samples] == [0, 1, 1]
    assert all(s.ttft < 0.2 for s in samples)  # the clock restarted with the retry
