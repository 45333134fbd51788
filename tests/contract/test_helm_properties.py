"""Properties every release of helm/gemma4-serve must have, checked on what Helm renders for every case
(each ci/ values file, each profile forced by name).

Each test states one rule for all rendered objects at once (every selector selects something, every routed
path is behind the API key or public on purpose, the NetworkPolicy admits the documented clients...), so a new
values file or template is held to it without a new assertion. Kubernetes' own semantics are modelled here
(label selectors, NetworkPolicy peers, Ingress and Gateway API path matching); no API server runs.
"""

from __future__ import annotations

import ast
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.helm_chart import NAMESPACE, RELEASE, Rendered, cases, ci_values, container, render_cases

pytestmark = pytest.mark.contract

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def releases() -> dict[str, Rendered]:
    """Every case, rendered once: name (``ingress``, ``profile-gpu-8gb``) -> manifests."""
    return {case.name: r for case, r in render_cases().items()}


def values_of(name: str) -> dict[str, Any]:
    """The values of case ``name`` as written (empty when its file sets nothing)."""
    [case] = [c for c in cases() if c.name == name]
    return case.values()


# ---- label selectors ------------------------------------------------------------------------------------


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics: matchLabels and matchExpressions all hold (empty selects all)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, wanted = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in wanted,
            "NotIn": key not in labels or labels[key] not in wanted,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pods(rendered: Rendered) -> list[Doc]:
    """Every pod the release runs, as {namespace, labels, ports, server}: the Deployment's and the test pods."""
    out = []
    for doc in rendered.docs:
        if doc["kind"] == "Deployment":
            spec, meta = doc["spec"]["template"]["spec"], doc["spec"]["template"]["metadata"]
            out.append(
                {"server": True, "namespace": doc["metadata"]["namespace"], "labels": meta["labels"], "spec": spec}
            )
        elif doc["kind"] == "Pod":
            out.append(
                {
                    "server": False,
                    "namespace": doc["metadata"]["namespace"],
                    "labels": doc["metadata"]["labels"],
                    "spec": doc["spec"],
                }
            )
    return out


def port_names(pod: Doc) -> set[str]:
    return {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", []) if "name" in p}


def of_kind(rendered: Rendered, kind: str) -> list[Doc]:
    return [d for d in rendered.docs if d["kind"] == kind]


def test_every_selector_and_reference_finds_its_object(releases: dict[str, Rendered]) -> None:
    """ServiceMonitor, PodMonitor, NetworkPolicy, PDB, Service and Deployment selectors each select at least
    one rendered object of the right kind, with the named port; HPA, ScaledObject, Ingress and HTTPRoute name
    objects the release renders."""
    problems = []
    for name, rendered in releases.items():
        servers = [p for p in pods(rendered) if p["server"]]
        services = of_kind(rendered, "Service")
        names = {(d["kind"], d["metadata"]["name"]) for d in rendered.docs}

        def want(ok: bool, what: str, name: str = name) -> None:
            if not ok:
                problems.append(f"{name}: {what}")

        for dep in of_kind(rendered, "Deployment"):
            want(
                selects(dep["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]),
                "the Deployment's selector misses its own pods",
            )
            for spread in dep["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
                want(selects(spread["labelSelector"], servers[0]["labels"]), "a topology spread selects no pod")
        for svc in services:
            chosen = [p for p in servers if selects({"matchLabels": svc["spec"]["selector"]}, p["labels"])]
            want(bool(chosen), f"Service {svc['metadata']['name']} selects no server pod")
            for port in svc["spec"]["ports"]:
                want(all(port["targetPort"] in port_names(p) for p in chosen), f"targetPort {port['targetPort']}")
        for monitor in of_kind(rendered, "ServiceMonitor"):
            namespaces = monitor["spec"].get("namespaceSelector", {}).get("matchNames") or [NAMESPACE]
            chosen = [
                s
                for s in services
                if s["metadata"]["namespace"] in namespaces
                and selects(monitor["spec"]["selector"], s["metadata"]["labels"])
            ]
            want(bool(chosen), "the ServiceMonitor selects no Service: Prometheus would scrape nothing")
            for endpoint in monitor["spec"]["endpoints"]:
                want(
                    any(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in chosen),
                    f"ServiceMonitor port {endpoint['port']} is on no selected Service",
                )
        for monitor in of_kind(rendered, "PodMonitor"):
            chosen = [p for p in servers if selects(monitor["spec"]["selector"], p["labels"])]
            want(bool(chosen), "the PodMonitor selects no pod")
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                want(all(endpoint["port"] in port_names(p) for p in chosen), f"PodMonitor port {endpoint['port']}")
        for policy in of_kind(rendered, "NetworkPolicy"):
            chosen = [p for p in pods(rendered) if selects(policy["spec"]["podSelector"], p["labels"])]
            want(bool(chosen), f"NetworkPolicy {policy['metadata']['name']} selects no pod")
            for rule in policy["spec"].get("ingress", []):
                for port in rule.get("ports", []):
                    if isinstance(port["port"], str):
                        want(all(port["port"] in port_names(p) for p in chosen), f"policy port {port['port']}")
        for pdb in of_kind(rendered, "PodDisruptionBudget"):
            want(any(selects(pdb["spec"]["selector"], p["labels"]) for p in servers), "the PDB selects no pod")
        for hpa in of_kind(rendered, "HorizontalPodAutoscaler"):
            ref = hpa["spec"]["scaleTargetRef"]
            want((ref["kind"], ref["name"]) in names, f"the HPA scales {ref}, which is not rendered")
        for scaled in of_kind(rendered, "ScaledObject"):
            ref = scaled["spec"]["scaleTargetRef"]
            want((ref.get("kind", "Deployment"), ref["name"]) in names, f"the ScaledObject scales {ref}")
        for ingress in of_kind(rendered, "Ingress"):
            for rule in ingress["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    [svc] = [s for s in services if s["metadata"]["name"] == backend["name"]] or [None]
                    want(
                        svc is not None and backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]},
                        "ingress backend",
                    )
        for route in of_kind(rendered, "HTTPRoute"):
            for rule in route["spec"]["rules"]:
                for ref in rule["backendRefs"]:
                    [svc] = [s for s in services if s["metadata"]["name"] == ref["name"]] or [None]
                    want(svc is not None and ref["port"] in {p["port"] for p in svc["spec"]["ports"]}, "route backend")
        for pod in pods(rendered):
            for volume in pod["spec"].get("volumes", []):
                claim = volume.get("persistentVolumeClaim", {}).get("claimName")
                if claim and (values_of(name).get("cache") or {}).get("type") != "existingClaim":
                    want(("PersistentVolumeClaim", claim) in names, f"claim {claim} is not rendered")
    assert not problems, "\n".join(problems)


def test_the_selector_check_catches_a_service_without_the_component_label(releases: dict[str, Rendered]) -> None:
    """The check above is not vacuous: the ServiceMonitor fails on a Service that lacks one selector label."""
    rendered = releases["monitoring"]
    [service] = of_kind(rendered, "Service")
    labels = dict(service["metadata"]["labels"])
    labels.pop("app.kubernetes.io/component")
    assert not selects(of_kind(rendered, "ServiceMonitor")[0]["spec"]["selector"], labels)


# ---- NetworkPolicy ----------------------------------------------------------------------------------------

# The clients the docs send to the API port: (label, source). A source is a pod {namespace, labels} or an address.
CLIENTS: dict[str, dict[str, Any]] = {
    "helm test pod": {
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "smoke-test"},
    },
    "client pod in the namespace": {"namespace": NAMESPACE, "labels": {"app": "notebook"}},
    "ingress-nginx controller": {"namespace": "ingress-nginx", "labels": {"app.kubernetes.io/name": "ingress-nginx"}},
    "Gateway (Envoy) pod": {"namespace": "gateway", "labels": {"app": "envoy"}},
    "Prometheus": {"namespace": "monitoring", "labels": {"app.kubernetes.io/name": "prometheus"}},
    "LoadBalancer client": {"ip": "203.0.113.7"},
    "node (SNAT'd LoadBalancer traffic)": {"ip": "10.20.0.5"},
}


def peer_admits(peer: Doc, source: Doc, policy_namespace: str) -> bool:
    """One NetworkPolicy `from` peer, with Kubernetes' semantics (ipBlock applies to addresses, not pods)."""
    if "ipBlock" in peer:
        if "ip" not in source:
            return False
        address = ipaddress.ip_address(source["ip"])
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if "ip" in source:
        return False
    ns_labels = {"kubernetes.io/metadata.name": source["namespace"]}
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], ns_labels)
    else:
        in_namespace = source["namespace"] == policy_namespace
    return in_namespace and selects(peer.get("podSelector"), source["labels"])


def admitted(rendered: Rendered, source: Doc, port: str = "http") -> bool:
    """Whether the server pods accept ``source`` on ``port`` under every NetworkPolicy that selects them."""
    [server] = [p for p in pods(rendered) if p["server"]]
    policies = [
        p
        for p in of_kind(rendered, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], server["labels"])
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") in (None, port) for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(peer_admits(peer, source, policy["metadata"]["namespace"]) for peer in peers):
                return True
    return False


def expected_clients(values: dict[str, Any]) -> set[str]:
    """The clients a values file means to admit: all by default; when narrowed, its namespace and lists only."""
    policy = values.get("networkPolicy") or {}
    if policy.get("enabled", True) is False or policy.get("allowExternal", True):
        return set(CLIENTS)
    namespaces = {NAMESPACE, *policy.get("allowedNamespaces", [])}
    cidrs = [ipaddress.ip_network(p["ipBlock"]["cidr"]) for p in policy.get("extraFrom", []) if "ipBlock" in p]
    return {
        label
        for label, source in CLIENTS.items()
        if source.get("namespace") in namespaces
        or ("ip" in source and any(ipaddress.ip_address(source["ip"]) in c for c in cidrs))
    }


def test_the_network_policy_admits_the_documented_clients(releases: dict[str, Rendered]) -> None:
    """By default an Ingress or Gateway controller, Prometheus and LoadBalancer clients reach the API wherever
    they run; a values file that narrows the policy admits exactly what it lists (and the helm test pod)."""
    narrowed = 0
    for name, rendered in releases.items():
        values = values_of(name)
        wanted = expected_clients(values)
        got = {label for label, source in CLIENTS.items() if admitted(rendered, source)}
        assert got == wanted, f"{name}: admits {sorted(got)}, expected {sorted(wanted)}"
        assert "helm test pod" in got, name
        narrowed += wanted != set(CLIENTS)
    assert narrowed >= 2, "no ci/ values file narrows the policy: the narrowed branch is untested"


def test_offline_pods_can_reach_nothing(releases: dict[str, Rendered]) -> None:
    for name, rendered in releases.items():
        [policy] = [p for p in of_kind(rendered, "NetworkPolicy") if not p["metadata"]["name"].endswith("-smoke")]
        offline = (values_of(name).get("serving") or {}).get("offline", False)
        assert ("Egress" in policy["spec"]["policyTypes"] and not policy["spec"].get("egress")) == offline, name


# ---- what an Ingress or HTTPRoute publishes ----------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_routes(vllm_python: str) -> list[str]:
    """Every HTTP path vLLM 0.21.0's API server serves, read from its source (route decorators and mounts)."""
    [entrypoints] = Path(vllm_python).parents[1].glob("lib/python3*/site-packages/vllm/entrypoints")
    routes = {"/metrics", "/openapi.json", "/docs"}  # mounted, not decorated
    verbs = {"get", "post", "put", "delete", "patch", "api_route", "websocket"}
    for source in entrypoints.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for deco in node.decorator_list:
                    if (
                        isinstance(deco, ast.Call)
                        and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr in verbs
                        and deco.args
                        and isinstance(deco.args[0], ast.Constant)
                        and isinstance(deco.args[0].value, str)
                    ):
                        routes.add(re.sub(r"\{[^}]+\}", "x", deco.args[0].value))
    assert {"/v1/chat/completions", "/invocations", "/tokenize", "/inference/v1/generate"} <= routes
    return sorted(routes)


def path_rules(doc: Doc) -> list[tuple[str, str]]:
    """(match type, path) of every path an Ingress or HTTPRoute sends to the backend."""
    if doc["kind"] == "Ingress":
        return [(p["pathType"], p["path"]) for r in doc["spec"]["rules"] for p in r["http"]["paths"]]
    return [(m["path"]["type"], m["path"]["value"]) for r in doc["spec"]["rules"] for m in r["matches"]]


def routed(rule: tuple[str, str], path: str) -> bool:
    """Whether a request for ``path`` takes this rule (Prefix/PathPrefix match whole path elements)."""
    kind, value = rule
    if kind == "Exact":
        return path == value
    if kind in ("Prefix", "PathPrefix", "ImplementationSpecific"):
        value = value.rstrip("/")
        return not value or path == value or path.startswith(value + "/")
    raise AssertionError(f"unexpected match type {kind}")


def test_ingress_and_httproute_publish_only_the_keyed_api_and_health(
    releases: dict[str, Rendered], vllm_routes: list[str]
) -> None:
    """vLLM 0.21.0 checks --api-key only on paths that start with /v1; no other route of it may be published,
    except /health, and /metrics where the values ask for it."""
    published = 0
    for name, rendered in releases.items():
        for doc in of_kind(rendered, "Ingress") + of_kind(rendered, "HTTPRoute"):
            section = (values_of(name).get("ingress" if doc["kind"] == "Ingress" else "httpRoute")) or {}
            public = {"/health"} | ({"/metrics"} if section.get("exposeMetrics") else set())
            reachable = {p for p in vllm_routes if any(routed(rule, p) for rule in path_rules(doc))}
            unkeyed = {p for p in reachable if not p.startswith("/v1")}
            assert unkeyed == public, f"{name}: {doc['kind']} publishes {sorted(unkeyed)} without the API key"
            assert {"/v1/chat/completions", "/v1/models"} <= reachable, name
            published += 1
    assert published >= 2


def test_the_route_check_would_catch_a_catch_all_path(vllm_routes: list[str]) -> None:
    reachable = {p for p in vllm_routes if routed(("Prefix", "/"), p)}
    assert {"/invocations", "/tokenize", "/inference/v1/generate"} <= reachable


# ---- probes, timeouts, caches, secrets per container ------------------------------------------------------


def test_liveness_and_readiness_ask_health_and_only_startup_runs_a_completion(releases: dict[str, Rendered]) -> None:
    for name, rendered in releases.items():
        server = container(rendered.one("Deployment"))
        for probe in ("livenessProbe", "readinessProbe"):
            assert server[probe].get("httpGet") == {"path": "/health", "port": "http"}, (name, probe)
        startup = server["startupProbe"]
        if server["name"] == "vllm":
            command = startup["exec"]["command"]
            assert command[:4] == ["python3", "-m", "deploy", "probe"] and "--ready" in command, name
            assert float(command[command.index("--timeout") + 1]) < startup["timeoutSeconds"], name
        else:
            assert startup["httpGet"] == {"path": "/health", "port": "http"}, name


def env(ctr: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in ctr.get("env", [])}


def test_vllm_never_gives_up_before_the_startup_probe(releases: dict[str, Rendered]) -> None:
    for name, rendered in releases.items():
        server = container(rendered.one("Deployment"))
        if server["name"] != "vllm":
            continue
        startup = server["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert int(env(server)["VLLM_ENGINE_READY_TIMEOUT_S"]) >= budget, name


# Where vLLM and the libraries it loads write caches, keyed by the variable that moves each (vLLM 0.21.0's
# envs.py for VLLM_*; huggingface_hub, Triton, torch inductor; FlashInfer's jit/env.py reads
# FLASHINFER_WORKSPACE_BASE and otherwise writes under $HOME).
CACHE_VARIABLES = (
    "HOME",
    "HF_HOME",
    "VLLM_CACHE_ROOT",
    "TRITON_CACHE_DIR",
    "XDG_CACHE_HOME",
    "TORCHINDUCTOR_CACHE_DIR",
    "FLASHINFER_WORKSPACE_BASE",
)


def test_every_cache_is_on_a_writable_volume(releases: dict[str, Rendered]) -> None:
    """The root filesystem is read-only: each cache variable of every server and init container points into a
    writable mount, the persistent /cache for everything but HOME."""
    for name, rendered in releases.items():
        spec = rendered.one("Deployment")["spec"]["template"]["spec"]
        for ctr in [*spec.get("initContainers", []), *spec["containers"]]:
            values = env(ctr)
            writable = [m["mountPath"] for m in ctr["volumeMounts"] if not m.get("readOnly")]
            for var in CACHE_VARIABLES:
                assert var in values, f"{name}/{ctr['name']}: {var} is not set"
                assert any(values[var] == w or values[var].startswith(w + "/") for w in writable), (name, var)
                assert var == "HOME" or values[var].startswith("/cache/"), (name, var)


def secret_files(spec: Doc, ctr: Doc) -> set[str]:
    """The secret file names (hf-token, api-key) a container can read through its mounts."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files = set()
    for mount in ctr.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        sources += [volume["secret"]] if "secret" in volume else []
        files |= {item["path"] for source in sources for item in source.get("items", [])}
    return files


@pytest.mark.parametrize(
    "extra", [{}, {"serving": {"offline": True}, "cache": {"type": "existingClaim", "existingClaim": "m"}}]
)
def test_each_container_holds_only_the_secrets_it_uses(
    releases: dict[str, Rendered], extra: dict, tmp_path: Path
) -> None:
    """The HF token reaches only a container that may download (never a server that runs offline), the API key
    only the server and the test pod."""
    from tests.contract.helm_chart import template

    for name in ("secret-values", "api-key", "engine-sglang", "engine-llamacpp"):
        values = tmp_path / "extra.yaml"
        values.write_text(yaml.safe_dump(extra))
        [path] = [p for p in ci_values() if p.name == f"{name}-values.yaml"]
        rendered = template(path, values) if extra else releases[name]
        assert rendered.ok, rendered.stderr
        spec = rendered.one("Deployment")["spec"]["template"]["spec"]
        for ctr in [*spec.get("initContainers", []), *spec["containers"]]:
            files, values_env = secret_files(spec, ctr), env(ctr)
            offline = values_env.get("HF_HUB_OFFLINE") == "1"
            if offline:
                assert "hf-token" not in files and "HF_TOKEN_FILE" not in values_env, (name, ctr["name"], extra)
            if ctr["name"] == "fetch":
                assert "api-key" not in files, name
            if "HF_TOKEN_FILE" in values_env:
                assert "hf-token" in files, name
        hf = (values_of(name).get("secrets") or {}).get("hfToken") or {}
        if (hf.get("secretName") or hf.get("value")) and not extra:
            assert "hf-token" in secret_files(spec, container(rendered.one("Deployment"), "fetch", init=True)), name


def test_a_server_that_downloads_itself_gets_the_token(tmp_path: Path) -> None:
    from tests.contract.helm_chart import template

    [path] = [p for p in ci_values() if p.name == "api-key-values.yaml"]
    values = tmp_path / "no-fetch.yaml"
    values.write_text(yaml.safe_dump({"fetch": {"enabled": False}}))
    rendered = template(path, values)
    assert rendered.ok, rendered.stderr
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    server = container(rendered.one("Deployment"))
    assert secret_files(spec, server) == {"hf-token", "api-key"}
    assert env(server)["HF_TOKEN_FILE"] == "/run/secrets/gemma4/hf-token"


# ---- the download step's network settings -------------------------------------------------------------------


def test_fetch_extra_env_and_mounts_reach_only_the_download_step(releases: dict[str, Rendered]) -> None:
    values = values_of("fetch-network")["fetch"]
    deployment = releases["fetch-network"].one("Deployment")
    fetch, server = container(deployment, "fetch", init=True), container(deployment)
    for item in values["extraEnv"]:
        assert env(fetch)[item["name"]] == item["value"]
        assert item["name"] not in env(server)  # the server runs offline: no proxy, no mirror
    for mount in values["extraVolumeMounts"]:
        assert mount in fetch["volumeMounts"] and mount not in server["volumeMounts"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "corporate-ca", "configMap": {"name": "corporate-ca"}} in volumes


# ---- API key rotation ------------------------------------------------------------------------------------


def test_a_new_chart_created_key_rolls_the_pods(tmp_path: Path) -> None:
    """vLLM reads its key once, at start: a changed chart-created Secret must change the pod template."""
    from tests.contract.helm_chart import template

    def pod_template(key: str) -> Doc:
        values = tmp_path / f"{key}.yaml"
        values.write_text(yaml.safe_dump({"secrets": {"apiKey": {"value": key}}}))
        rendered = template(values)
        assert rendered.ok, rendered.stderr
        return rendered.one("Deployment")["spec"]["template"]

    first, again, rotated = pod_template("key-one"), pod_template("key-one"), pod_template("key-two")
    assert first == again
    assert first["metadata"]["annotations"] != rotated["metadata"]["annotations"]
    assert {**first, "metadata": {}} == {**rotated, "metadata": {}}  # the annotation is the only difference


def test_notes_say_how_to_roll_the_pods_after_rotating_an_existing_secret() -> None:
    """An existing Secret changes outside Helm: the release notes give the one command that applies it."""
    import subprocess

    from tests.conftest import require_tool
    from tests.contract.helm_chart import CHART, FULLNAME

    [path] = [p for p in ci_values() if p.name == "api-key-values.yaml"]
    proc = subprocess.run(
        [require_tool("helm"), "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} rollout restart deployment/{FULLNAME}" in notes
    assert "reads the key only when it starts" in notes
