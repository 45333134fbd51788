"""Every vLLM metric the chart and the shared Grafana dashboard query exists in vLLM 0.21.0, with the right suffix.

The names are read from the installed vLLM 0.21.0 wheel's own source (`vllm/v1/metrics/loggers.py`), so a
renamed metric (as `gpu_cache_usage_perc` became `kv_cache_usage_perc`) fails here, not on a dashboard.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.contract.helm_chart import CHART, template

pytestmark = pytest.mark.contract

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
_METRIC_RE = re.compile(r"vllm:[a-z0-9_]+")
# What each kind of prometheus_client metric exposes, relative to its declared name.
SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


@pytest.fixture(scope="module")
def exposed(vllm_python: str) -> set[str]:
    """Series names vLLM 0.21.0 exposes on /metrics, derived from the metrics it declares."""
    where = subprocess.run(
        [
            vllm_python,
            "-c",
            "import importlib.util; print(importlib.util.find_spec('vllm').submodule_search_locations[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    source = (Path(where) / "v1" / "metrics" / "loggers.py").read_text()
    declared = re.findall(r"_(gauge|counter|histogram)_cls\(\s*name=\"(vllm:[a-z0-9_]+)\"", source)
    assert len(declared) > 20, "could not read vLLM's metric declarations"
    return {name + suffix for kind, name in declared for suffix in SUFFIXES[kind]}


def queried(text: str) -> set[str]:
    return set(_METRIC_RE.findall(text))


def dashboard_queries() -> list[str]:
    """PromQL of every panel target and template variable (descriptions are prose and may name base metrics)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs + [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]


def test_the_dashboard_queries_only_real_metrics(exposed: set[str]) -> None:
    names = queried("\n".join(dashboard_queries()))
    assert names - exposed == set(), f"not exposed by vLLM 0.21.0: {names - exposed}"


def test_the_dashboard_shows_what_operators_need() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    text = "\n".join(exprs)
    for needed in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
    ):
        assert needed in text, needed
    assert "histogram_quantile(0.99" in text and "histogram_quantile(0.5" in text
    # Panels are unique and laid out without overlap.
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(cells) == len(set(cells))


def test_alerts_and_autoscaling_query_only_real_metrics(exposed: set[str]) -> None:
    for values in ("monitoring", "autoscaling-keda"):
        rendered = template(CHART / "ci" / f"{values}-values.yaml")
        assert rendered.ok, rendered.stderr
        exprs = [
            r["expr"] for d in rendered.docs if d["kind"] == "PrometheusRule" for r in d["spec"]["groups"][0]["rules"]
        ]
        exprs += [
            t["metadata"]["query"] for d in rendered.docs if d["kind"] == "ScaledObject" for t in d["spec"]["triggers"]
        ]
        names = queried("\n".join(exprs))
        assert names and names - exposed == set(), f"{values}: not exposed by vLLM 0.21.0: {names - exposed}"


def test_the_check_catches_a_renamed_metric(exposed: set[str]) -> None:
    assert "vllm:gpu_cache_usage_perc" not in exposed
    assert "vllm:num_preemptions" not in exposed  # a counter is exposed with _total only
    assert "vllm:num_preemptions_total" in exposed
