"""Pure parts of the smoke suite: settings resolution, the strict SSE reader, engine error shapes, metric
detection, and the CLI's usage errors (exit 2) — no server needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smoke_tests.__main__ import EXIT_USAGE, main
from smoke_tests.report import CheckResult, RunReport, markdown
from smoke_tests.servers import ENGINES, error_shape_problem
from smoke_tests.settings import Settings, UsageError, resolve
from smoke_tests.sse import parse_lines
from smoke_tests.test_metrics import exposed

REPO = Path(__file__).resolve().parents[2]


def test_command_line_wins_over_environment_then_defaults() -> None:
    env = {"SMOKE_BASE_URL": "http://env:1", "SMOKE_WAIT": "5", "SMOKE_LEVEL": "protocol", "SMOKE_MODEL": ""}
    s = resolve({"base_url": "http://cli:2/v1/", "level": None, "wait_s": None}, env)
    assert (s.base_url, s.wait_s, s.level, s.model, s.server) == ("http://cli:2", 5.0, "protocol", None, "vllm")


@pytest.mark.parametrize(
    ("cli", "env", "message"),
    [
        ({}, {}, "pass --base-url http://HOST:PORT or set SMOKE_BASE_URL"),
        ({"base_url": "localhost:8000"}, {}, "--base-url must be an http(s) URL"),
        ({"base_url": "http://h:1"}, {"SMOKE_WAIT": "soon"}, "SMOKE_WAIT='soon' is not a valid float"),
        ({"base_url": "http://h:1", "server": "tgi"}, {}, "--server must be one of vllm, sglang, llamacpp, generic"),
        ({"base_url": "http://h:1"}, {"SMOKE_LEVEL": "deep"}, "--level must be one of protocol, full"),
        ({"base_url": "http://h:1", "timeout_s": 0}, {}, "--timeout must be a positive number"),
        ({"base_url": "http://h:1", "burst": 0}, {}, "--burst must be between 1 and 64"),
        ({"base_url": "http://h:1"}, {"SMOKE_API_KEY_FILE": "/nonexistent/key"}, "cannot be read"),
    ],
)
def test_bad_settings_name_the_option_and_the_fix(cli: dict, env: dict, message: str) -> None:
    with pytest.raises(UsageError, match=None) as info:
        resolve(cli, env)
    assert message in str(info.value)


def test_api_key_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk-from-file\n")
    s = resolve({"base_url": "http://h:1"}, {"SMOKE_API_KEY_FILE": str(tmp_path / "key")})
    assert s.api_key == "sk-from-file"
    assert resolve({"base_url": "http://h:1", "api_key": "cli"}, {"SMOKE_API_KEY_FILE": "/x"}).api_key == "cli"


def test_sse_reader_keeps_chunks_and_flags_every_violation() -> None:
    lines = [
        'data: {"id": "a", "choices": [{"delta": {"role": "assistant"}}]}',
        "",
        ": keep-alive comment",
        'data: {"id": "a", "choices": [{"delta": {"content": "Hi"}, "finish_reason": "stop"}]}',
        "event: ping",
        "data: {not json",
        "data: [DONE]",
        'data: {"late": true}',
    ]
    stream = parse_lines(lines)
    assert stream.text == "Hi" and stream.finish_reasons == ["stop"] and stream.done
    assert stream.problems == ["line 5 is not a `data: ` line: 'event: ping'", "line 6 is not JSON: '{not json'"]
    assert stream.after_done == ['data: {"late": true}']


def test_error_shapes() -> None:
    nested = {"error": {"message": "no", "type": "NotFoundError", "param": "model", "code": 404}}
    flat = {"object": "error", "message": "no", "type": "BadRequestError", "param": None, "code": 400}
    assert error_shape_problem("nested", nested) is None
    assert error_shape_problem("flat", flat) is None
    assert "expected an OpenAI error body" in error_shape_problem("nested", flat)
    assert 'expected an error body {"object": "error"' in error_shape_problem("flat", {"detail": "x"})


def test_metric_detection_needs_the_exact_series() -> None:
    text = '# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name="m"} 0.1\n'
    text += 'vllm:time_to_first_token_seconds_bucket{le="0.1"} 3\n'
    assert exposed(text, "vllm:kv_cache_usage_perc")
    assert exposed(text, "vllm:time_to_first_token_seconds")
    assert not exposed(text, "vllm:gpu_cache_usage_perc")  # the name removed before 0.21.0
    assert not exposed(text, "vllm:kv_cache")


def test_every_engine_explains_what_it_does_not_check() -> None:
    # The expectations a check skips on (Engine.require): a skip must say why, from the engine's docs.
    gates = ("health_path", "models_max_model_len", "unknown_model_status", "overflow_status", "bad_image_statuses")
    for engine in ENGINES.values():
        for name in (*gates, "metrics"):
            if getattr(engine, name) in (None, (), False):
                assert name in engine.not_checked, f"{engine.name}.{name} has no reason"
    assert not ENGINES["vllm"].not_checked  # vLLM is the reference: everything is checked


def test_markdown_and_json_never_carry_the_key() -> None:
    run = RunReport(Settings(base_url="http://h:1", api_key="sk-secret"), exit_code=1)
    run.checks = [CheckResult("chat.usage", "", "failed", 0.1, "a | b"), CheckResult("ready.health", "", "passed", 0)]
    text = markdown(run)
    assert "FAILED" in text and "| `chat.usage` | **FAIL** | 0.10 s | a \\| b |" in text
    dumped = json.dumps(run.to_dict())
    assert "sk-secret" not in dumped and run.to_dict()["settings"]["api_key_set"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--base-url", "http://h:1", "--server", "tgi"], "invalid choice: 'tgi'"),
        (["--base-url", "http://h:1", "--wait", "x"], "invalid float value: 'x'"),
        (["--base-url", "ftp://h"], "--base-url must be an http(s) URL"),
        (["--base-url", "http://127.0.0.1:9", "--select", "no_such_check"], "matched no check"),
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_an_unwritable_report_path_is_an_error_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--base-url", "http://127.0.0.1:9", "--select", "no_such_check", "--json", str(tmp_path / "x/y.json")])
    assert code == EXIT_USAGE  # nothing selected: usage error wins, and the report path is still tried
    assert "cannot write a report" in capsys.readouterr().err


def test_plain_pytest_runs_the_suite_from_the_environment(tmp_path: Path) -> None:
    """README's third entry point: `pytest --pyargs smoke_tests`, settings from SMOKE_* (a closed port here)."""
    env = {**os.environ, "SMOKE_BASE_URL": "http://127.0.0.1:9", "SMOKE_WAIT": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "smoke_tests", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED test_ready.py::test_server_ready" in proc.stdout and "did not become ready" in proc.stdout
