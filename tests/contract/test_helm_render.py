"""What helm/gemma4-serve renders: structural checks on the manifests Helm 4 produces for the chart's cases.

Each test asserts one property the issue asks for (probes, rollout, shm, GPU, security, secrets, drain,
Service, NetworkPolicy, autoscaling, monitoring, helm test), on parsed YAML rather than on snapshots.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.__main__ import build_parser
from deploy.profiles import list_profiles, load_profile
from tests.conftest import require_tool
from tests.contract import helm_chart
from tests.contract.arg_sources import helm_cases
from tests.contract.helm_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    Case,
    Rendered,
    cases,
    container,
    env_of,
    profile_case,
    rendered_text,
    template,
)
from tests.contract.test_drift import find_copies, serving_flags
from tests.contract.vllm_contract import list_options

pytestmark = pytest.mark.contract

CI = CHART / "ci"
FAKE_SECRETS = ("ci-fake-api-key-not-a-secret", "ci-fake-hf-token-not-a-secret")


@pytest.fixture(scope="module")
def default() -> Rendered:
    rendered = template()
    assert rendered.ok, rendered.stderr
    return rendered


def render(name: str) -> Rendered:
    rendered = template(CI / f"{name}-values.yaml")
    assert rendered.ok, rendered.stderr
    return rendered


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    return rendered.one("Deployment")["spec"]["template"]["spec"]


def all_containers(rendered: Rendered) -> list[dict[str, Any]]:
    """Every container the release runs: vLLM, its init container and the helm test pod."""
    spec = pod_spec(rendered)
    test_pod = rendered.one("Pod")["spec"]
    return [*spec.get("initContainers", []), *spec["containers"], *test_pod["containers"]]


# ---- serving arguments: a profile name and the user's extraArgs, nothing else ---------------------------


def test_vllm_runs_the_images_launcher_with_no_arguments(default: Rendered) -> None:
    vllm = container(default.one("Deployment"))
    assert "command" not in vllm and "args" not in vllm  # the image's entrypoint: python3 -m deploy launch
    env = env_of(vllm)
    assert env["GEMMA4_PROFILE"] == "auto"
    assert env["GEMMA4_EXTRA_ARGS"] == ""


@pytest.mark.parametrize("profile", list_profiles())
def test_a_forced_profile_reaches_the_launcher_by_name(profile: str) -> None:
    """Each profile of deploy/profiles, forced by name, is one of the chart's cases (so every check over the cases
    covers it: lint, Helm 3 and 4, kubernetes-validate, the schema, checkov, vLLM's parser) and reaches the
    launcher by that name, with no serving argument beside it."""
    case = profile_case(profile)
    assert case in cases()
    rendered = helm_chart.render(case)
    assert rendered.ok, rendered.stderr
    env = env_of(container(rendered.one("Deployment")))
    assert env["GEMMA4_PROFILE"] == profile
    assert env["GEMMA4_EXTRA_ARGS"] == ""


def test_extra_args_survive_the_shell_quoting_word_for_word() -> None:
    values = yaml.safe_load((CI / "extra-args-values.yaml").read_text())["serving"]["extraArgs"]
    env = env_of(container(render("extra-args").one("Deployment")))
    assert shlex.split(env["GEMMA4_EXTRA_ARGS"]) == [str(v) for v in values]


def test_extra_args_with_shell_metacharacters_round_trip(tmp_path: Path) -> None:
    tricky = ["--chat-template-kwargs", """{"a": "it's $HOME; `x` \\\\ \\"q\\""}""", "", "a b"]
    values = tmp_path / "tricky-values.yaml"
    values.write_text(yaml.safe_dump({"serving": {"extraArgs": tricky}}))
    rendered = template(values)
    assert rendered.ok, rendered.stderr
    assert shlex.split(env_of(container(rendered.one("Deployment")))["GEMMA4_EXTRA_ARGS"]) == tricky


def test_the_vllm_contract_collects_the_charts_extra_args(repo: Path) -> None:
    [case] = [c for c in helm_cases(repo) if c.source.endswith("extra-args-values.yaml")]
    assert case.argv[0] == "--config"
    resolved = yaml.safe_load(Path(case.argv[1]).read_text())  # the launcher's config: the forced profile
    assert resolved.items() >= {k: v for k, v in load_profile("gpu-16gb").items() if k != "port"}.items()
    assert "--limit-mm-per-prompt" in case.argv and '{"image": 2, "audio": 0}' in case.argv


@pytest.fixture(scope="module")
def flags(vllm_python: str) -> set[str]:
    return serving_flags(list_options(vllm_python))


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_no_rendered_manifest_spells_a_serving_argument(case: Case, flags: set[str], tmp_path: Path) -> None:
    """The drift check over what Helm renders (not only the chart's sources); extraArgs are the user's own."""
    out = tmp_path / "rendered.yaml"
    text = rendered_text(case)
    if case.name == "extra-args":
        text = re.sub(r"(?m)^(\s*- name: GEMMA4_EXTRA_ARGS\n\s*value:).*$", r"\1 (user overrides)", text)
    out.write_text(text)
    assert find_copies(out, flags) == []


# ---- start-up, rollout, shutdown ----------------------------------------------------------------------


def test_probes_survive_a_cold_start_and_startup_needs_an_answer(default: Rendered) -> None:
    deployment = default.one("Deployment")
    vllm = container(deployment)
    startup, liveness, readiness = vllm["startupProbe"], vllm["livenessProbe"], vllm["readinessProbe"]
    assert liveness["httpGet"] == {"path": "/health", "port": "http"}
    assert readiness["httpGet"] == {"path": "/health", "port": "http"}
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= 30 * 60  # load + compile + CUDA graphs on a slow node
    assert deployment["spec"]["progressDeadlineSeconds"] > budget
    assert env_of(vllm)["VLLM_ENGINE_READY_TIMEOUT_S"] == str(budget)
    command = startup["exec"]["command"]
    assert command[:4] == ["python3", "-m", "deploy", "probe"] and "--ready" in command
    # The probe's own deadline ends before the kubelet's, so it reports why instead of being killed.
    args = build_parser().parse_args(command[3:])
    assert args.ready and args.timeout < startup["timeoutSeconds"]
    assert args.url == "http://127.0.0.1:8000"


def test_default_rollout_cannot_deadlock_on_gpus(default: Rendered) -> None:
    assert default.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    rolling = render("rolling-update").one("Deployment")["spec"]["strategy"]
    assert rolling == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def test_prestop_drains_in_flight_requests_within_the_grace_period(default: Rendered) -> None:
    spec = pod_spec(default)
    command = container(default.one("Deployment"))["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:4] == ["python3", "-m", "deploy", "drain"]
    args = build_parser().parse_args(command[3:])  # the real CLI accepts exactly these options
    assert args.url == "http://127.0.0.1:8000"
    assert args.delay > 0 and args.timeout > 0
    assert spec["terminationGracePeriodSeconds"] >= args.delay + args.timeout + 15


# ---- GPU, shm, cache --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_gpu_request_and_memory_backed_shm_in_every_variant(case: Case) -> None:
    rendered = helm_chart.render(case)
    assert rendered.ok, rendered.stderr
    spec = pod_spec(rendered)
    server = container(rendered.one("Deployment"))
    on_cpu = case.values().get("engine", {}).get("device") == "cpu"
    for kind in ("limits", "requests"):
        if on_cpu:  # llama.cpp's CPU image: a GPU request would keep the pod off GPU-less nodes
            assert "nvidia.com/gpu" not in server["resources"][kind]
        else:
            assert server["resources"][kind]["nvidia.com/gpu"] == "1"
    [shm] = [v for v in spec["volumes"] if v["name"] == "shm"]
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in server["volumeMounts"]


def test_caches_live_on_the_cache_volume(default: Rendered) -> None:
    deployment = default.one("Deployment")
    for ctr in (container(deployment), container(deployment, "fetch", init=True)):
        env = env_of(ctr)
        assert {"name": "cache", "mountPath": "/cache"} in ctr["volumeMounts"]
        for var in ("HF_HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
            assert env[var].startswith("/cache/"), var
    claim = default.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    [cache] = [v for v in pod_spec(default)["volumes"] if v["name"] == "cache"]
    assert cache["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_existing_claim_and_size_limited_emptydir() -> None:
    existing = render("existing-pvc")
    assert "PersistentVolumeClaim" not in existing.kinds()
    [cache] = [v for v in pod_spec(existing)["volumes"] if v["name"] == "cache"]
    assert cache == {"name": "cache", "persistentVolumeClaim": {"claimName": "gemma4-model-cache"}}
    [cache] = [v for v in pod_spec(render("emptydir"))["volumes"] if v["name"] == "cache"]
    assert cache == {"name": "cache", "emptyDir": {"sizeLimit": "40Gi"}}


def test_init_container_downloads_online_and_only_verifies_offline(default: Rendered) -> None:
    fetch = container(default.one("Deployment"), "fetch", init=True)
    assert fetch["args"] == ["python3 -m deploy fetch && exec python3 -m deploy verify"]
    assert env_of(fetch)["HF_HUB_OFFLINE"] == "0"
    # vLLM itself never reaches for the Hub: the init container has filled the cache.
    assert env_of(container(default.one("Deployment")))["HF_HUB_OFFLINE"] == "1"
    offline = render("offline").one("Deployment")
    fetch = container(offline, "fetch", init=True)
    assert fetch["args"] == ["exec python3 -m deploy verify"]
    assert env_of(fetch)["HF_HUB_OFFLINE"] == "1"
    assert env_of(container(offline))["HF_HUB_OFFLINE"] == "1"


# ---- security -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "api-key", "monitoring", "engine-sglang", "engine-llamacpp-cpu"])
def test_every_container_is_locked_down(name: str) -> None:
    rendered = render(name)
    for spec in (pod_spec(rendered), rendered.one("Pod")["spec"]):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 10000
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
    for ctr in all_containers(rendered):
        sc = ctr["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, ctr["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, ctr["name"]
        assert sc["readOnlyRootFilesystem"] is True, ctr["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, ctr["name"]
        writable = {m["mountPath"] for m in ctr.get("volumeMounts", []) if not m.get("readOnly")}
        # Only the fetch step writes the engine's command; the server reads it.
        allowed = {"/cache", "/tmp", "/dev/shm"} | ({"/run/gemma4-serve"} if ctr["name"] == "fetch" else set())
        assert writable <= allowed, (ctr["name"], writable)


def test_service_is_not_named_vllm_and_targets_the_pods(default: Rendered) -> None:
    service = default.one("Service")
    assert service["metadata"]["name"] == FULLNAME != "vllm"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    labels = default.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_secrets_given_by_value_appear_only_base64_in_their_secret() -> None:
    text = rendered_text(CI / "secret-values-values.yaml")
    for fake in FAKE_SECRETS:
        assert fake not in text  # not in plain text anywhere: no ConfigMap, arg, env value, annotation
    docs = [d for d in yaml.safe_load_all(text) if d]
    for fake in FAKE_SECRETS:
        encoded = base64.b64encode(fake.encode()).decode()
        holders = [d["kind"] for d in docs if encoded in json.dumps(d)]
        assert holders == ["Secret"], holders


@pytest.mark.parametrize("name", ["api-key", "secret-values"])
def test_secrets_reach_containers_only_as_files(name: str) -> None:
    rendered = render(name)
    for ctr in all_containers(rendered):
        for var in ctr.get("env", []):
            assert "valueFrom" not in var, (ctr["name"], var)  # no secretKeyRef into the environment
            assert var["name"] not in {"HF_TOKEN", "VLLM_API_KEY", "SMOKE_API_KEY"}, ctr["name"]
    deployment = rendered.one("Deployment")
    assert env_of(container(deployment))["VLLM_API_KEY_FILE"] == "/run/secrets/gemma4/api-key"
    assert env_of(container(deployment, "fetch", init=True))["HF_TOKEN_FILE"] == "/run/secrets/gemma4/hf-token"
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    for name, files in (("fetch-secrets", {"hf-token"}), ("server-secrets", {"api-key"})):
        paths = {item["path"] for src in volumes[name]["projected"]["sources"] for item in src["secret"]["items"]}
        assert paths == files, name
    for doc in rendered.docs:
        assert doc["kind"] != "ConfigMap" or "key" not in json.dumps(doc.get("data", {})).lower()


def test_existing_secrets_are_referenced_by_name_and_key() -> None:
    rendered = render("api-key")
    assert "Secret" not in rendered.kinds()
    volumes = [v for v in pod_spec(rendered)["volumes"] if v["name"].endswith("-secrets")]
    refs = {(s["secret"]["name"], s["secret"]["items"][0]["key"]) for v in volumes for s in v["projected"]["sources"]}
    assert refs == {("gemma4-api-key", "key"), ("hf-token", "token")}


def test_no_secret_volume_without_secrets(default: Rendered) -> None:
    assert not {v["name"] for v in pod_spec(default)["volumes"]} & {"fetch-secrets", "server-secrets"}
    assert "VLLM_API_KEY_FILE" not in env_of(container(default.one("Deployment")))


# ---- network ------------------------------------------------------------------------------------------


def test_network_policy_opens_only_the_api_port_and_closes_egress_offline(default: Rendered) -> None:
    [policy] = [d for d in default.docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == FULLNAME]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]  # from anywhere
    offline = render("offline")
    policy = offline.one("NetworkPolicy", FULLNAME)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy["spec"]
    monitoring = render("monitoring").one("NetworkPolicy", FULLNAME)
    assert monitoring["spec"]["ingress"][0]["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"ipBlock": {"cidr": "10.0.0.0/8"}},
    ]


def test_ingress_and_httproute_point_at_the_service() -> None:
    ingress = render("ingress").one("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    route = render("httproute").one("HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": FULLNAME, "port": 8000}]


# ---- helm test ----------------------------------------------------------------------------------------


def test_helm_test_pod_runs_the_smoke_suite_against_the_service(default: Rendered) -> None:
    pod = default.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [smoke] = pod["spec"]["containers"]
    assert smoke["image"] == "ghcr.io/gemma4-serve/smoke:0.1.0"
    assert "command" not in smoke  # the image's entrypoint: python -m smoke_tests
    env = env_of(smoke)
    assert env["SMOKE_BASE_URL"] == f"http://{FULLNAME}.{NAMESPACE}.svc:8000"
    assert env["SMOKE_SERVER"] == "vllm" and env["SMOKE_LEVEL"] == "full" and int(env["SMOKE_WAIT"]) > 0
    assert pod["spec"]["restartPolicy"] == "Never"


def test_helm_test_pod_sends_the_api_key_from_the_mounted_file() -> None:
    [smoke] = render("api-key").one("Pod")["spec"]["containers"]
    script = smoke["command"][-1]
    assert smoke["command"][:2] == ["/bin/sh", "-c"]
    assert 'SMOKE_API_KEY="$(cat /run/secrets/gemma4/api-key)"' in script
    assert script.endswith("exec python -m smoke_tests")
    assert {"name": "secrets", "mountPath": "/run/secrets/gemma4", "readOnly": True} in smoke["volumeMounts"]


def test_notes_say_how_to_reach_and_test_the_release() -> None:
    proc = subprocess.run(
        [require_tool("helm"), "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"helm test {RELEASE} -n {NAMESPACE} --logs" in notes
    assert f"kubectl -n {NAMESPACE} port-forward service/{FULLNAME} 8000:8000" in notes
    assert "No API key is set" in notes


# ---- scale and observe --------------------------------------------------------------------------------


def test_keda_scales_on_the_waiting_queue() -> None:
    rendered = render("autoscaling-keda")
    assert "replicas" not in rendered.one("Deployment")["spec"]  # the autoscaler owns the count
    scaled = rendered.one("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"] == {"name": FULLNAME}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["query"].startswith("sum(vllm:num_requests_waiting{")
    assert f'namespace="{NAMESPACE}"' in trigger["metadata"]["query"]


def test_hpa_scales_on_the_waiting_queue_metric() -> None:
    hpa = render("autoscaling-hpa").one("HorizontalPodAutoscaler")
    [metric] = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    assert hpa["spec"]["scaleTargetRef"]["name"] == FULLNAME


def test_pdb_never_blocks_a_single_replica_drain(default: Rendered) -> None:
    pdb = default.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]


def test_monitoring_objects() -> None:
    rendered = render("monitoring")
    endpoint = rendered.one("ServiceMonitor")["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    rules = rendered.one("PrometheusRule")["spec"]["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert set(by_name) == {
        "Gemma4ServeNotReady",
        "Gemma4ServeKVCacheNearlyFull",
        "Gemma4ServeQueueDeep",
        "Gemma4ServePreempting",
    }
    assert by_name["Gemma4ServeNotReady"]["for"] == "1800s"  # the startup budget
    dashboard = rendered.one("ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["gemma4-serve.json"] == (CHART / "files/grafana-dashboard.json").read_text()


def test_scheduling_values_reach_the_pod() -> None:
    rendered = render("scheduling")
    spec = pod_spec(rendered)
    assert spec["runtimeClassName"] == "nvidia" and spec["priorityClassName"] == "inference-high"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    [spread] = spec["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    assert container(rendered.one("Deployment"))["image"].endswith("@sha256:" + "0" * 64)
