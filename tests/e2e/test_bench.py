"""``python -m deploy bench`` against a real CPU server (transformers serve, tiny Gemma 4) and fault stubs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.__main__ import main
from tests.conftest import REPO
from tests.e2e.bench_stubs import streaming_app
from tests.fixtures.servers import TINY_MODEL_ID, run_asgi

pytestmark = pytest.mark.slow


def bench(*args: str) -> int:
    return main(["bench", "--no-progress", *args])


def test_bench_against_a_real_server_writes_json_and_markdown(
    cpu_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    code = bench(
        "--base-url", cpu_server, "--concurrency", "1,2", "--context", "1024", "--prompt-tokens", "200",
        "--max-tokens", "8", "--requests", "3", "--images", "0,1", "--no-ignore-eos",
        "--engine", "transformers serve", "--format", "BF16", "--json", str(out_json), "--markdown", str(out_md),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out_json.read_text())
    assert doc["tool"] == "gemma4-serve bench" and doc["interrupted"] is False
    runs = doc["runs"]
    assert [(r["batch"], r["images"]) for r in runs] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    for r in runs:
        assert r["model"] == TINY_MODEL_ID
        assert r["metrics"]["completed"] == 3 and r["metrics"]["failed"] == 0
        assert len(r["samples"]) == 3
        # the server counted every prompt at exactly the requested length, images included
        assert {s["prompt_tokens"] for s in r["samples"]} == {200}
        assert all(s["output_tokens"] == 8 and len(s["itl"]) >= 1 for s in r["samples"])
        assert r["metrics"]["ttft_ms"]["p50"] > 0 and r["metrics"]["output_throughput"] > 0
        assert r["vram"] == {"mib": None, "source": "not measured"}
    md = out_md.read_text()
    assert "| Engine | Format | Batch | ctx | tok/s | TTFT p50 | TTFT p99 | VRAM |" in md
    assert "| transformers serve | BF16 | 2 | 1k + 1 img |" in md
    assert "not measured" in md
    captured = capsys.readouterr()
    assert "| transformers serve | BF16 | 1 | 1k |" in captured.out
    assert "batch 2, 1 img: 3/3 ok" in captured.err  # one line per cell for logs without a progress bar


def test_results_of_two_runs_merge(cpu_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for engine in ("engine A", "engine B"):
        path = tmp_path / f"{engine}.json"
        common = [
            "--context",
            "512",
            "--prompt-tokens",
            "0",
            "--max-tokens",
            "4",
            "--requests",
            "2",
            "--concurrency",
            "1",
        ]
        assert bench("--base-url", cpu_server, *common, "--no-ignore-eos", "--engine", engine, "--json", str(path)) == 0
        files.append(str(path))
    capsys.readouterr()
    assert main(["bench", "--merge", *files, "--markdown", str(tmp_path / "all.md")]) == 0
    table = capsys.readouterr().out
    assert "| engine A |" in table and "| engine B |" in table


def test_timing_definitions_against_known_delays(tmp_path: Path) -> None:
    # TTFT 0.3 s, then 5 chunks 0.1 s apart: ITL 0.1, E2EL 0.7, TPOT (0.7 - 0.3) / 4 = 0.1.
    out = tmp_path / "r.json"
    with run_asgi(streaming_app(ttft_s=0.3, gap_s=0.1, tokens=5)) as url:
        code = bench("--base-url", url, "--concurrency", "1", "--context", "512", "--prompt-tokens", "0",
                     "--max-tokens", "5", "--requests", "3", "--warmup", "0", "--json", str(out))  # fmt: skip
    assert code == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["engine"] == "vLLM v0.21.0"  # from /version
    tolerance = 0.08  # seconds: loopback + a loaded 2-core CI machine
    for s in run["samples"]:
        assert 0.3 <= s["ttft"] <= 0.3 + tolerance
        assert len(s["itl"]) == 4 and all(0.1 - 0.01 <= gap <= 0.1 + tolerance for gap in s["itl"])
        assert 0.7 <= s["latency"] <= 0.7 + 2 * tolerance
        assert s["tpot"] == pytest.approx((s["latency"] - s["ttft"]) / 4)
    m = run["metrics"]
    assert 300 <= m["ttft_ms"]["p50"] <= 300 + tolerance * 1000
    assert 100 - 10 <= m["tpot_ms"]["p50"] <= 100 + tolerance * 1000


def test_tokenize_endpoint_gives_every_prompt_the_exact_length(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with run_asgi(streaming_app(tokenize=True)) as url:
        code = bench("--base-url", url, "--concurrency", "2", "--context", "4096", "--prompt-tokens", "1000",
                     "--max-tokens", "5", "--requests", "4", "--json", str(out))  # fmt: skip
    assert code == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["prompt_tokens_method"] == "/tokenize"
    assert [s["prompt_tokens"] for s in run["samples"]] == [1000] * 4


def test_a_context_longer_than_the_server_allows_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with run_asgi(streaming_app()) as url:
        assert bench("--base-url", url, "--context", "8192", "--prompt-tokens", "0") == 2
    assert "longer than the server's max_model_len 4096" in capsys.readouterr().err


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--base-url", "http://127.0.0.1:1/v1") == 2
    assert "without /v1" in capsys.readouterr().err
    assert bench("--base-url", "http://x", "--context", "100", "--prompt-tokens", "90", "--max-tokens", "20") == 2
    assert "must fit in --context" in capsys.readouterr().err


def test_failures_mid_run_are_counted_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    with run_asgi(streaming_app(fail_every=3)) as url:
        code = bench("--base-url", url, "--concurrency", "1", "--context", "512", "--prompt-tokens", "0",
                     "--max-tokens", "5", "--requests", "8", "--json", str(out))  # fmt: skip
    assert code == 1
    assert "request(s) failed" in capsys.readouterr().err
    run = json.loads(out.read_text())["runs"][0]
    failed = [s for s in run["samples"] if not s["success"]]
    assert run["metrics"]["failed"] == len(failed) >= 2
    assert all("HTTP 500: injected failure" in s["error"] for s in failed)
    assert run["metrics"]["completed"] == 8 - len(failed)
    # grouped by cause, with the requests that hit it
    assert run["metrics"]["failures"] == [
        {"cause": "HTTP 500: injected failure", "count": len(failed), "requests": [s["index"] for s in failed]}
    ]


def test_a_stalled_stream_fails_its_request_instead_of_hanging(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    started = time.monotonic()
    with run_asgi(streaming_app(stall_after_first=True)) as url:
        code = bench("--base-url", url, "--concurrency", "1", "--context", "512", "--prompt-tokens", "0",
                     "--max-tokens", "5", "--requests", "1", "--warmup", "0", "--stall-timeout", "1",
                     "--json", str(out))  # fmt: skip
    assert code == 1
    assert time.monotonic() - started < 20
    (sample,) = json.loads(out.read_text())["runs"][0]["samples"]
    assert not sample["success"] and "stalled" in sample["error"]


def test_a_failing_warm_up_stops_before_measuring(cpu_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    # transformers serve rejects the ignore_eos extension that vLLM, SGLang and llama.cpp accept
    assert bench("--base-url", cpu_server, "--context", "512", "--prompt-tokens", "0", "--max-tokens", "2") == 2
    assert "--no-ignore-eos" in capsys.readouterr().err


def test_ctrl_c_writes_what_was_measured(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with run_asgi(streaming_app(ttft_s=0.05, gap_s=0.05, tokens=5)) as url:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy", "bench", "--base-url", url, "--concurrency", "1", "--context", "512",
             "--prompt-tokens", "0", "--max-tokens", "5", "--requests", "1000", "--no-progress", "--json", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "benchmarking ...": set up, warming up; each request takes 0.25 s
        time.sleep(2.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        stderr = first + stderr
    assert proc.returncode == 1, stderr
    assert "Ctrl-C" in stderr and "incomplete" in stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["complete"] is False
    run = doc["runs"][0]
    assert run["interrupted"] is True and doc["summary"][0]["incomplete"] is True
    completed = run["metrics"]["completed"]
    assert 0 < completed < 1000 and run["metrics"]["failed"] == 0 and len(run["samples"]) == completed
    # the request in flight (if one was) was cancelled, the rest never sent: all accounted for
    incomplete = run["incomplete"]
    assert incomplete["cancelled_in_flight"] in (0, 1)
    assert incomplete["cancelled_in_flight"] + incomplete["not_sent"] == 1000 - completed
    assert "| vLLM v0.21.0 |" in stdout
