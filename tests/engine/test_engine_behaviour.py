"""The smoke suite's vLLM expectations, asserted on the real engine, and the stub held to what the engine does.

tests/e2e/test_smoke_faults.py proves each check catches its fault against tests/fixtures/openai_stub.py; that
is only worth something while the stub behaves like vLLM 0.21.0. Here the same requests go to real vLLM
(through the launcher) and to the stub, and their answers must be identical: status codes, error bodies
(wording, type, param, code), whether the keep-alive connection survives an error, how a stream ends, what
/v1/models, /health and the API key guard answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from smoke_tests.servers import VLLM, error_shape_problem
from tests.engine.observe import observe
from tests.fixtures.openai_stub import Stub, build_app
from tests.fixtures.servers import run_asgi
from tests.fixtures.vllm_plugin import MAIN, TEST_API_KEY
from tests.fixtures.vllm_server import EnginePool, LauncherServer

# A test's first use of a server includes its start (up to 240 s on a busy machine).
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def engine_seen(vllm_engines: EnginePool) -> dict[str, Any]:
    """The main server's observations, taken once (each waits a few seconds to see connections survive)."""
    return observe(vllm_engines.get(MAIN).url, TEST_API_KEY)


@pytest.fixture
def stub_url() -> Iterator[str]:
    stub = Stub("vllm", api_key=TEST_API_KEY)
    with run_asgi(build_app(stub)) as url:
        yield url
    stub.stopped.set()


# Each test names `vllm_main` too, so it runs among the main server's tests (one start per session).


def test_the_engine_meets_the_suites_vllm_expectations(vllm_main: LauncherServer, engine_seen: dict[str, Any]) -> None:
    assert engine_seen["unknown_model"]["status"] == VLLM.unknown_model_status
    assert engine_seen["prompt_too_long"]["status"] == VLLM.overflow_status
    low, high = VLLM.bad_image_statuses or (0, 0)
    assert low <= engine_seen["malformed_image_url"]["status"] <= high
    for name in ("unknown_model", "prompt_too_long", "malformed_image_url"):
        assert error_shape_problem(VLLM.error_shape or "", engine_seen[name]["body"]) is None, engine_seen[name]
    assert engine_seen["health_without_key"]["status"] == 200
    assert engine_seen["stream"]["last_event"] == "data: [DONE]"  # done_required
    assert engine_seen["stream"]["usage_chunk_choices"] == []  # usage_own_chunk
    assert engine_seen["models"]["max_model_len"] == 32768  # models_max_model_len
    assert (engine_seen["missing_key"]["status"], engine_seen["wrong_key"]["status"]) == (401, 401)
    assert engine_seen["models_without_key"] == 401  # models_need_key
    assert engine_seen["metrics_without_key"] == 200


def test_the_engine_drops_keep_alive_after_errors_it_raises(
    vllm_main: LauncherServer, engine_seen: dict[str, Any]
) -> None:
    """The reason the suite sends its error requests with `Connection: close` (a vLLM/uvicorn quirk)."""
    for name in ("prompt_too_long", "malformed_image_url"):
        assert engine_seen[name]["connection_dropped"] and engine_seen[name]["connection_header"] is None, name
    for name in ("unknown_model", "missing_key", "health_without_key"):
        assert not engine_seen[name]["connection_dropped"], name


def test_the_stub_answers_as_the_engine_does(
    vllm_main: LauncherServer, engine_seen: dict[str, Any], stub_url: str
) -> None:
    assert observe(stub_url, TEST_API_KEY) == engine_seen
