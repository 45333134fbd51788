"""Every metric the bundle queries exists in real vLLM 0.21.0's /metrics output, with the labels it filters on.

The queries are parsed as PromQL (promql-parser, Rust's parser) and every vector selector's metric name and
matcher labels are collected from: the Grafana dashboard (panels and template variables), the
PrometheusRule and the KEDA ScaledObject as Helm renders them, the HPA's prometheus-adapter metric, the smoke
suite's vLLM metrics and the drain command's gauges. Each name must be a series in the /metrics text of the
real engine after it served traffic; each label must be on that series or be one Prometheus adds when it
scrapes (target labels). tests/contract/test_helm_metrics.py checks the same names against the metric
declarations in vLLM's source; this is the running engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import promql_parser
import pytest

from deploy.launcher.drain import IN_FLIGHT_METRICS
from smoke_tests.servers import VLLM
from tests.contract.helm_chart import CHART, template
from tests.fixtures.vllm_plugin import TEST_API_KEY
from tests.fixtures.vllm_server import LauncherServer

# A test's first use of a server includes its start (up to 240 s on a busy machine).
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.timeout(900)]

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
# Labels Prometheus attaches when it scrapes (target and Kubernetes service-discovery labels), not vLLM's.
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "container", "service", "endpoint", "node"})
# Series the queries use that come from another exporter, never from vLLM (a deliberate, reviewed list).
OTHER_EXPORTERS = {
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
}
# Grafana's own variables in the dashboard's queries, given a value that parses as PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+\S+", re.MULTILINE)
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def selectors(expr: promql_parser.Expr) -> Iterator[tuple[str, frozenset[str]]]:
    """(metric name, matcher label names) of every vector selector in a parsed PromQL expression."""
    if isinstance(expr, promql_parser.VectorSelector):
        labels = frozenset(m.name for m in expr.matchers.matchers if m.name != "__name__")
        names = [m.value for m in expr.matchers.matchers if m.name == "__name__"]
        yield (expr.name or names[0]), labels
    elif isinstance(expr, promql_parser.MatrixSelector):
        yield from selectors(expr.vector_selector)
    elif isinstance(expr, promql_parser.BinaryExpr):
        yield from selectors(expr.lhs)
        yield from selectors(expr.rhs)
    elif isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            yield from selectors(arg)
    elif isinstance(expr, promql_parser.AggregateExpr):
        yield from selectors(expr.expr)
        if expr.param is not None:
            yield from selectors(expr.param)
    elif isinstance(expr, (promql_parser.ParenExpr, promql_parser.SubqueryExpr, promql_parser.UnaryExpr)):
        yield from selectors(expr.expr)


def parse(query: str) -> list[tuple[str, frozenset[str]]]:
    """The selectors of ``query``; a query that is not valid PromQL fails the test with the query quoted."""
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    try:
        return list(selectors(promql_parser.parse(query)))
    except Exception as exc:  # the parser raises its own error types
        pytest.fail(f"not valid PromQL: {query!r} ({exc})")


def dashboard_queries() -> dict[str, str]:
    """Where -> PromQL of each dashboard panel target and template variable (`label_values(METRIC, label)`)."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {
        f"dashboard panel {panel['title']!r} target {target.get('refId', i)}": target["expr"]
        for panel in dashboard["panels"]
        for i, target in enumerate(panel.get("targets", []))
    }
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((?P<metric>.+),\s*(?P<label>\w+)\)", variable.get("definition", ""))
        if match:
            queries[f"dashboard variable ${variable['name']}"] = match["metric"] + "{" + match["label"] + '!=""}'
    return queries


def chart_queries() -> dict[str, str]:
    """Where -> PromQL of every alert and KEDA trigger the chart renders (monitoring and KEDA ci values)."""
    queries = {}
    for values in ("monitoring", "autoscaling-keda"):
        rendered = template(CHART / "ci" / f"{values}-values.yaml")
        assert rendered.ok, rendered.stderr
        for doc in rendered.docs:
            if doc["kind"] == "PrometheusRule":
                for group in doc["spec"]["groups"]:
                    for rule in group["rules"]:
                        queries[f"PrometheusRule {rule.get('alert') or rule.get('record')}"] = rule["expr"]
            if doc["kind"] == "ScaledObject":
                for trigger in doc["spec"]["triggers"]:
                    queries[f"ScaledObject trigger {trigger['type']}"] = trigger["metadata"]["query"]
    return queries


def hpa_metric() -> str:
    """The series behind the HPA's Pods metric: prometheus-adapter names `vllm:x` as `vllm_x` (chart values)."""
    rendered = template(CHART / "ci" / "autoscaling-hpa-values.yaml")
    assert rendered.ok, rendered.stderr
    [metric] = [m["pods"]["metric"]["name"] for m in rendered.one("HorizontalPodAutoscaler")["spec"]["metrics"]]
    assert metric.startswith("vllm_"), metric
    return "vllm:" + metric.removeprefix("vllm_")


def series(text: str) -> dict[str, set[str]]:
    """Series name -> label names, from a Prometheus text exposition."""
    found: dict[str, set[str]] = {}
    for match in _SAMPLE_RE.finditer(text):
        found.setdefault(match["name"], set()).update(_LABEL_RE.findall(match["labels"] or ""))
    return found


@pytest.fixture
def exposed(vllm_main: LauncherServer) -> dict[str, set[str]]:
    """The main server's series after it has served a text and an image request (histograms then have data)."""
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    body = {"model": "gemma-4-e2b-it", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    response = httpx.post(f"{vllm_main.url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    metrics = httpx.get(f"{vllm_main.url}/metrics", timeout=30)
    assert metrics.status_code == 200
    return series(metrics.text)


def test_the_promql_reader_finds_names_and_labels() -> None:
    """The collector itself: names inside functions, aggregations, ranges, binary operators; labels of matchers."""
    found = parse(
        'histogram_quantile(0.9, sum by (le) (rate(a:b_bucket{instance=~"$i"}[$__rate_interval]))) '
        '> bool 2 and on (pod) max(c{namespace="n", pod=~"p-.*"}) or {__name__="d"}'
    )
    assert found == [
        ("a:b_bucket", frozenset({"instance"})),
        ("c", frozenset({"namespace", "pod"})),
        ("d", frozenset()),
    ]


def test_every_queried_metric_is_in_the_real_metrics_output(exposed: dict[str, set[str]]) -> None:
    queries = {**dashboard_queries(), **chart_queries()}
    assert len(queries) >= 15, f"too few queries collected: {sorted(queries)}"
    missing, unknown_labels = [], []
    checked: set[str] = set()
    for where, query in queries.items():
        for name, labels in parse(query):
            checked.add(name)
            if name in OTHER_EXPORTERS:
                continue
            if name not in exposed:
                missing.append(f"{where}: {name}")
                continue
            extra = labels - exposed[name] - TARGET_LABELS
            if extra:
                unknown_labels.append(f"{where}: {name} has no label {sorted(extra)}")
    named = {hpa_metric(), *IN_FLIGHT_METRICS}
    missing += [f"HPA or drain: {name}" for name in sorted(named) if name not in exposed]
    # The smoke suite checks base names (a histogram passes by its _bucket series): the same rule here.
    suffixes = ("", "_total", "_bucket")
    missing += [f"smoke suite: {n}" for n in VLLM.metrics if not any(n + s in exposed for s in suffixes)]
    assert not missing, "not in real vLLM 0.21.0's /metrics:\n" + "\n".join(missing)
    assert not unknown_labels, "\n".join(unknown_labels)
    assert {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total"} <= checked
    assert set(OTHER_EXPORTERS) <= checked, "an entry of OTHER_EXPORTERS no query uses any more: remove it"


def test_a_renamed_metric_would_be_caught(exposed: dict[str, set[str]]) -> None:
    """The names that changed in vLLM's history are absent, so the comparison above is not vacuous."""
    assert "vllm:gpu_cache_usage_perc" not in exposed  # renamed to kv_cache_usage_perc
    assert "vllm:num_preemptions" not in exposed  # a counter: only _total is exposed
    assert "vllm:time_to_first_token_seconds" not in exposed  # a histogram: only _bucket/_sum/_count
    assert "finished_reason" in exposed["vllm:request_success_total"]
