"""The smoke suite, ``--server vllm`` at protocol level, against real vLLM 0.21.0 served through the launcher.

Every check that applies at protocol level must pass on every run, with and without ``--api-key``. Before the
suite sent its error-provoking requests with ``Connection: close``, two error checks failed with ECONNRESET in
8 of 30 runs against this engine; ``make test-engine`` repeats the suite 30 times per server
(``ENGINE_SMOKE_RUNS``), ``make test`` 3 times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.smoke import ANSWER_CHECKS, AUTH_CHECKS, outcomes, run_suite, skipped_beyond_features, smoke_runs
from tests.fixtures.vllm_plugin import TEST_API_KEY
from tests.fixtures.vllm_server import LauncherServer

# A test's first use of a server includes its start (up to 240 s on a busy machine).
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.timeout(900)]


def _repeat(url: str, tmp_path: Path, *args: str) -> list[dict]:
    """Run the suite ``smoke_runs()`` times; every failure of every run is collected, not only the first."""
    reports, failures = [], []
    for run in range(1, smoke_runs() + 1):
        code, report = run_suite(url, tmp_path / f"run-{run}", *args)
        reports.append(report)
        failures += [f"run {run}: {name}: {message}" for name, message in outcomes(report, "failed").items()]
        if code != 0 and not outcomes(report, "failed"):
            failures.append(f"run {run}: exit code {code} without a failed check")
    assert not failures, f"{len(failures)} failure(s) in {smoke_runs()} run(s):\n" + "\n".join(failures)
    return reports


def test_every_check_passes_with_an_api_key_on_every_run(vllm_main: LauncherServer, tmp_path: Path) -> None:
    reports = _repeat(vllm_main.url, tmp_path, "--api-key", TEST_API_KEY)
    for report in reports:
        assert skipped_beyond_features(report) == ANSWER_CHECKS
        passed = set(outcomes(report, "passed"))
        assert AUTH_CHECKS | {"errors.prompt_too_long", "errors.malformed_image_url", "errors.unknown_model"} <= passed
        assert {"metrics.metrics_exposed", "stream.done_is_last", "stream.usage_chunk", "ready.health"} <= passed
        assert report["settings"]["api_key_set"] is True
    assert TEST_API_KEY not in vllm_main.log(), "vLLM logged the API key"


def test_every_check_passes_without_an_api_key_on_every_run(vllm_bf16_fp8kv: LauncherServer, tmp_path: Path) -> None:
    reports = _repeat(vllm_bf16_fp8kv.url, tmp_path)
    for report in reports:
        assert skipped_beyond_features(report) == ANSWER_CHECKS | AUTH_CHECKS
        assert {"errors.prompt_too_long", "errors.malformed_image_url", "vision.image_streamed"} <= set(
            outcomes(report, "passed")
        )


def test_a_keyed_server_refuses_the_suite_without_its_key(vllm_main: LauncherServer, tmp_path: Path) -> None:
    """Exit 3 at once, naming the fix: the engine's 401 is not retried."""
    code, report = run_suite(vllm_main.url, tmp_path)
    assert code == 3
    assert (
        "answered 401: the API key is missing or wrong; pass --api-key"
        in outcomes(report, "failed")["ready.server_ready"]
    )
