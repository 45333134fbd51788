"""Fixtures shared by every check: settings, the engine's expectations, one client, one readiness wait.

`python -m smoke_tests` passes its resolved :class:`Settings` through a plugin named ``smoke-settings``;
plain ``pytest --pyargs smoke_tests`` reads them from the SMOKE_* variables instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smoke_tests.client import CheckError, Ready, SmokeClient
from smoke_tests.features import Features, discover
from smoke_tests.servers import Engine, engine
from smoke_tests.settings import DEFAULT_CONTEXT, Settings, resolve

# The order checks run and are reported in: readiness first, the costly burst last.
ORDER = (
    "ready",
    "models",
    "chat",
    "stream",
    "vision",
    "protocol",
    "structured",
    "tools",
    "reasoning",
    "audio",
    "answers",
    "errors",
    "auth",
    "metrics",
    "burst",
)
SETTINGS_PLUGIN = "smoke-settings"


def check_name(item: pytest.Item) -> str:
    """``module.check`` without the test_ prefixes, e.g. ``stream.done_is_last``."""
    module = item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_") if item.module else "?"
    return f"{module}.{item.name.removeprefix('test_')}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run checks in :data:`ORDER`, keeping each module's own order."""
    rank = {name: i for i, name in enumerate(ORDER)}
    items.sort(key=lambda item: rank.get(check_name(item).split(".")[0], len(ORDER)))


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    """The run's settings (from the CLI, or from SMOKE_* variables under plain pytest)."""
    holder = pytestconfig.pluginmanager.get_plugin(SETTINGS_PLUGIN)
    return holder.settings if holder is not None else resolve({})


@pytest.fixture(scope="session")
def server(settings: Settings) -> Engine:
    """What the server under test is documented to do."""
    return engine(settings.server)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[SmokeClient]:
    """The one HTTP client of the run."""
    smoke_client = SmokeClient(settings)
    yield smoke_client
    smoke_client.close()


@pytest.fixture(scope="session")
def readiness(client: SmokeClient, settings: Settings) -> Ready | CheckError:
    """The readiness wait, done once; its failure is kept (not raised) so only `ready.server_ready` fails."""
    try:
        return client.wait_until_ready(settings.model)
    except CheckError as exc:
        return exc


@pytest.fixture(scope="session")
def model(readiness: Ready | CheckError) -> str:
    """The model under test; every check after readiness is skipped when the server never became ready."""
    if isinstance(readiness, CheckError):
        pytest.skip("the server never became ready (see ready.server_ready)")
    return readiness.model


@pytest.fixture(scope="session")
def features(client: SmokeClient, settings: Settings, model: str) -> Features:
    """The opt-in features the server runs (--features, or asked of the server); see smoke_tests.features."""
    return discover(client, settings, model)


@pytest.fixture(scope="session")
def context_length(client: SmokeClient, server: Engine, settings: Settings, model: str) -> int:
    """The context length to hold the server to: --max-model-len, else what /v1/models reports, else 32768.

    The deployment's own value wins over any default, so `--max-model-len 16384` in GEMMA4_EXTRA_ARGS (or a
    smaller profile) needs no second setting for the suite.
    """
    if settings.max_model_len is not None:
        return settings.max_model_len
    if not server.models_max_model_len:
        return DEFAULT_CONTEXT
    body = client.json_ok("GET", "/v1/models")
    entries = body.get("data") if isinstance(body, dict) else None
    entry = next((d for d in entries or [] if isinstance(d, dict) and d.get("id") == model), {})
    value = entry.get("max_model_len")
    if not isinstance(value, int) or isinstance(value, bool) or value < 16:
        pytest.skip(f"/v1/models reports no usable max_model_len for {model!r} (see models.max_model_len)")
    return value


@pytest.fixture
def detail(record_property: Callable[[str, Any], None]) -> Callable[[str], None]:
    """Record a short note for the summary table (TTFTs, token counts)."""
    return lambda text: record_property("detail", text)


@pytest.fixture(autouse=True)
def _level(request: pytest.FixtureRequest, settings: Settings) -> None:
    """Checks marked ``full`` need a real model; ``--level protocol`` skips them."""
    if request.node.get_closest_marker("full") and not settings.full:
        pytest.skip("--level protocol: answer checks need a real model")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the suite's marker (the runner uses --strict-markers)."""
    config.addinivalue_line("markers", "full: needs a real model to answer sensibly (skipped at --level protocol)")


@pytest.fixture(scope="session")
def text_answer(client: SmokeClient, model: str) -> dict[str, Any]:
    """One non-streamed text completion, shared by the chat checks and the stream comparison."""
    from smoke_tests.validators import TEXT_PROMPT, chat_body

    return client.chat(chat_body(model, TEXT_PROMPT))


@pytest.fixture(scope="session")
def text_stream(client: SmokeClient, model: str) -> Any:
    """The same request streamed with usage, shared by the stream checks."""
    from smoke_tests.validators import TEXT_PROMPT, stream_body

    return client.stream(stream_body(model, TEXT_PROMPT))
