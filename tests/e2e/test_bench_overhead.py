"""``python -m deploy bench --client-overhead``: our client and vLLM 0.21.0's ``vllm bench serve`` against the
same zero-latency server in interleaved rounds; every round finishes every request, the table and the JSON
carry the median ratio with its spread and the client-added TTFT. (Timings are printed, never asserted.)"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from deploy.__main__ import main
from deploy.bench.overhead import NullServer, probe_ttft

pytestmark = pytest.mark.slow


def test_client_overhead_runs_both_clients_in_interleaved_rounds(
    vllm_python: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "overhead.json"
    code = main(["bench", "--client-overhead", "--vllm-python", vllm_python, "--concurrency", "1,4",
                 "--requests", "30", "--max-tokens", "16", "--rounds", "2", "--json", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(out.read_text())
    assert doc["vllm"].startswith("0.21.0")
    assert [r["batch"] for r in doc["results"]] == [1, 4]
    for r in doc["results"]:
        assert r["rounds"] == 2 and len(r["ratios"]) == 2
        assert r["ours_completed"] == [30, 30] and r["vllm_completed"] == [30, 30]
        assert r["ours_failed"] == r["vllm_failed"] == 0
        assert r["ratio"]["min"] <= r["ratio"]["median"] <= r["ratio"]["max"]
        assert r["ours_req_s"] > 0 and r["vllm_req_s"] > 0 and r["ours_cpu_ms_per_request"] > 0
    floor = doc["ttft_floor"]
    assert floor["rounds"] == 2 and floor["probe_ms"] > 0
    assert "| 1 | 2 | 30 x 16 |" in captured.out and "| 4 | 2 | 30 x 16 |" in captured.out
    assert "Client-added TTFT at batch 1" in captured.out


def test_an_interpreter_without_vllm_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--client-overhead", "--vllm-python", sys.executable, "--concurrency", "1",
                 "--requests", "4", "--max-tokens", "4"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "has no vLLM" in err and "--vllm-python" in err


def test_the_null_server_streams_what_was_asked_and_the_probe_reads_it() -> None:
    with NullServer() as server:
        ttfts = probe_ttft(server.port, 3, 8)
        assert len(ttfts) == 3 and all(0 < t < 5 for t in ttfts)
        body = json.dumps({"model": "null-model", "messages": [], "max_tokens": 3, "stream": True,
                           "stream_options": {"include_usage": True}}).encode()  # fmt: skip
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                data += sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in data
    assert data.count(b'"content":"tok "') == 3 and b'"completion_tokens":3' in data and b"data: [DONE]" in data
