"""``python -m deploy bench --client-overhead``: our client and vLLM 0.21.0's ``vllm bench serve`` against the
same zero-latency server in one run; both finish every request and the table has both rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.__main__ import main

pytestmark = pytest.mark.slow


def test_client_overhead_runs_both_clients(
    vllm_python: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "overhead.json"
    code = main(["bench", "--client-overhead", "--vllm-python", vllm_python, "--concurrency", "4",
                 "--requests", "40", "--max-tokens", "16", "--json", str(out)])  # fmt: skip
    table = capsys.readouterr().out
    assert code == 0, table
    results = json.loads(out.read_text())["results"]
    assert [r["client"] for r in results] == ["deploy bench", "vllm bench serve 0.21.0"]
    for r in results:
        assert r["requests"] == 40 and r["failed"] == 0
        assert r["request_throughput"] > 0 and r["output_throughput"] > 0
    assert results[0]["cpu_ms_per_request"] > 0
    assert "| deploy bench | 4 | 40 | 16 |" in table and "| vllm bench serve 0.21.0 | 4 | 40 | 16 |" in table


def test_an_interpreter_without_vllm_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    code = main(["bench", "--client-overhead", "--vllm-python", sys.executable, "--concurrency", "1",
                 "--requests", "4", "--max-tokens", "4"])  # fmt: skip
    assert code == 1
    captured = capsys.readouterr()
    assert "has no vLLM" in captured.err and "--vllm-python" in captured.err
    assert "| deploy bench | 1 | 4 | 4 |" in captured.out  # what was measured is still printed
