"""/metrics exposes the series operators alert on (queue depth, running requests, cache use, TTFT)."""

from __future__ import annotations

import re
from collections.abc import Callable

from smoke_tests.client import CheckError, SmokeClient, excerpt
from smoke_tests.servers import Engine


def exposed(text: str, name: str) -> bool:
    """True when Prometheus text ``text`` has a sample or a TYPE line for metric ``name``."""
    escaped = re.escape(name)
    return bool(re.search(rf"^(# TYPE {escaped} |{escaped}(_bucket|_sum|_count|_total)?[{{ ])", text, re.MULTILINE))


def test_metrics_exposed(client: SmokeClient, server: Engine, model: str, detail: Callable[[str], None]) -> None:
    """Every metric the engine documents for alerting is on /metrics."""
    names = server.require("metrics")
    response = client.request("GET", "/metrics")
    if response.status_code != 200:
        raise CheckError(f"GET /metrics answered {response.status_code} ({excerpt(response)}); {server.metrics_hint}")
    missing = [name for name in names if not exposed(response.text, name)]
    if missing:
        raise CheckError(f"/metrics lacks {', '.join(missing)}; {server.metrics_hint}")
    detail(f"{len(names)} series present")
