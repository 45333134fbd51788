"""Values the chart must refuse: schema violations and combinations that cannot work, each with its message.

Both Helm 4 and Helm 3 must refuse them; the message must name the problem and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.contract.helm_chart import CHART, template, tools_bin

pytestmark = pytest.mark.contract

RWX = {"cache": {"accessMode": "ReadWriteMany"}}

# name -> (values, words the error must contain)
SCHEMA_VIOLATIONS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "typo at the top": ({"replicaCont": 2}, ("replicaCont",)),
    "typo nested": ({"serving": {"profle": "gpu-8gb"}}, ("profle",)),
    "unknown profile": ({"serving": {"profile": "gpu-9gb"}}, ("profile", "gpu-8gb")),
    "wrong type": ({"replicaCount": "two"}, ("replicaCount", "integer")),
    "extraArgs as one string": ({"serving": {"extraArgs": "--max-model-len 8192"}}, ("extraArgs", "array")),
    "secret in extraEnv": ({"serving": {"extraEnv": [{"name": "HF_TOKEN", "value": "x"}]}}, ("extraEnv",)),
    "bad cache type": ({"cache": {"type": "hostPath"}}, ("cache", "type")),
    "bad quantity": ({"shm": {"sizeLimit": "lots"}}, ("sizeLimit",)),
    "bad digest": ({"image": {"digest": "latest"}}, ("digest",)),
    "project image on latest": ({"image": {"tag": "latest"}}, ("tag",)),
    "bad update strategy": ({"updateStrategy": {"type": "BlueGreen"}}, ("updateStrategy",)),
    "unknown engine": ({"engine": {"name": "tgi"}}, ("engine", "name")),
    "unknown device": ({"engine": {"name": "llamacpp", "device": "tpu"}}, ("device",)),
    "unknown variant": ({"engine": {"name": "llamacpp", "variant": "q3_k"}}, ("variant",)),
    "engine image on latest": ({"engine": {"images": {"sglang": {"tag": "latest"}}}}, ("tag",)),
    "engine extraArgs as one string": ({"engine": {"extraArgs": "--parallel 2"}}, ("extraArgs", "array")),
    # The chart routes /v1 and /health only; a catch-all path would publish vLLM's unkeyed routes.
    "ingress paths": (
        {"ingress": {"hosts": [{"host": "a.example", "paths": [{"path": "/", "pathType": "Prefix"}]}]}},
        ("paths",),
    ),
    "secret in fetch.extraEnv": ({"fetch": {"extraEnv": [{"name": "HF_TOKEN", "value": "x"}]}}, ("extraEnv",)),
}
LLAMACPP = {"engine": {"name": "llamacpp"}}

COMBINATIONS: dict[str, tuple[dict, str]] = {
    "replicas on a ReadWriteOnce cache": (
        {"replicaCount": 2},
        "2 replicas cannot share a ReadWriteOnce cache volume",
    ),
    "autoscaling on a ReadWriteOnce cache": (
        {"autoscaling": {"enabled": True, "maxReplicas": 3}},
        "3 replicas cannot share a ReadWriteOnce cache volume",
    ),
    "surge rollout with whole GPUs": (
        {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
        "rollout deadlocks",
    ),
    "surge by percentage": (
        {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}},
        "maxSurge=25%",
    ),
    "rollout that can never progress": (
        {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}},
        "can never replace a pod",
    ),
    "offline without a model volume": (
        {"serving": {"offline": True}, "cache": {"type": "emptyDir"}},
        "serving.offline=true with cache.type=emptyDir",
    ),
    "public ingress without an API key": (
        {"ingress": {"enabled": True, "hosts": [{"host": "a.example"}]}},
        "ingress.enabled=true without an API key",
    ),
    "vLLM giving up before the startup probe": (
        {"serving": {"engineReadyTimeoutSeconds": 600}},
        "serving.engineReadyTimeoutSeconds=600 is below the startup budget of 1800 s",
    ),
    "namespaces listed while every source is admitted": (
        {"networkPolicy": {"allowedNamespaces": ["monitoring"]}},
        "narrow the NetworkPolicy only with networkPolicy.allowExternal=false",
    ),
    "httproute without an API key": (
        {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}},
        "httpRoute.enabled=true without an API key",
    ),
    "a Service named vllm": ({"fullnameOverride": "vllm"}, "Service named `vllm`"),
    "a secret from two sources": (
        {"secrets": {"apiKey": {"secretName": "s", "value": "v"}}},
        "secrets.apiKey: set secretName",
    ),
    "progress deadline inside the startup budget": (
        {"progressDeadlineSeconds": 1200},
        "progressDeadlineSeconds=1200 is not longer than the startup budget of 1800 s",
    ),
    "grace period shorter than the drain": (
        {"terminationGracePeriodSeconds": 30},
        "terminationGracePeriodSeconds=30 leaves no time to drain",
    ),
    "existing claim without a name": ({"cache": {"type": "existingClaim"}}, "needs cache.existingClaim"),
    "vLLM on a CPU": ({"engine": {"device": "cpu"}}, "the vLLM image serves on a GPU only"),
    "a variant for vLLM": ({"engine": {"variant": "q4_0"}}, "engine.variant=q4_0 does not apply to vLLM"),
    "engine flags for vLLM": ({"engine": {"extraArgs": ["--parallel", "2"]}}, "vLLM's own flags go in serving"),
    "SGLang on a CPU": ({"engine": {"name": "sglang", "device": "cpu"}}, "sglang has images for gpu only"),
    "a variant SGLang lacks": ({"engine": {"name": "sglang", "variant": "q4_0"}}, "sglang has no variants"),
    "vLLM flags for llama.cpp": (
        {**LLAMACPP, "serving": {"extraArgs": ["--max-model-len", "8192"]}},
        "serving.extraArgs are vLLM flags and never reach llamacpp",
    ),
    "a vLLM checkpoint for llama.cpp": (
        {**LLAMACPP, "serving": {"model": "org/other"}},
        "llamacpp serves the one pinned in deploy/engines/llamacpp.yaml",
    ),
    "a vLLM profile for llama.cpp": ({**LLAMACPP, "serving": {"profile": "gpu-8gb"}}, "serving.profile=gpu-8gb"),
    "another port for llama.cpp": ({**LLAMACPP, "serving": {"port": 9000}}, "change service.port instead"),
    "llama.cpp without its fetch step": ({**LLAMACPP, "fetch": {"enabled": False}}, "needs the init container"),
    "vLLM alerts on llama.cpp": (
        {**LLAMACPP, "metrics": {"prometheusRule": {"enabled": True}}},
        "metrics.prometheusRule.enabled=true: the alerts, dashboard and autoscaling query vLLM's metrics",
    ),
    "vLLM autoscaling on SGLang": (
        {**RWX, "engine": {"name": "sglang"}, "autoscaling": {"enabled": True}},
        "autoscaling.enabled=true",
    ),
    "autoscaling bounds reversed": (
        {**RWX, "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}},
        "minReplicas is larger than autoscaling.maxReplicas",
    ),
}


def render_with(values: dict, tmp_path: Path, helm: str = "helm"):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return template(path, helm=helm)


@pytest.fixture(params=["helm", "helm3"])
def helm(request: pytest.FixtureRequest) -> str:
    return "helm" if request.param == "helm" else str(tools_bin() / "helm3")


@pytest.mark.parametrize("case", SCHEMA_VIOLATIONS)
def test_schema_rejects(case: str, helm: str, tmp_path: Path) -> None:
    values, words = SCHEMA_VIOLATIONS[case]
    rendered = render_with(values, tmp_path, helm)
    assert not rendered.ok, f"{case}: accepted"
    assert "values don't meet the specifications of the schema" in rendered.stderr, rendered.stderr
    for word in words:
        assert word in rendered.stderr, f"{case}: {word!r} not in {rendered.stderr}"


@pytest.mark.parametrize("case", COMBINATIONS)
def test_bad_combination_fails_with_its_message(case: str, helm: str, tmp_path: Path) -> None:
    values, message = COMBINATIONS[case]
    rendered = render_with(values, tmp_path, helm)
    assert not rendered.ok, f"{case}: rendered"
    assert "VALUES VALIDATION" in rendered.stderr and message in rendered.stderr, rendered.stderr


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    rendered = render_with(
        {"replicaCount": 2, "fullnameOverride": "vllm", "terminationGracePeriodSeconds": 1}, tmp_path
    )
    assert not rendered.ok
    assert rendered.stderr.count("\n- ") == 3, rendered.stderr


def test_the_fixes_the_messages_suggest_render(tmp_path: Path) -> None:
    """Each message's suggested fix really renders (so the messages do not send users in circles)."""
    fixes = [
        {"replicaCount": 2, **RWX},
        {"replicaCount": 2, "cache": {"type": "emptyDir"}},
        {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}},
        {"serving": {"offline": True}, "cache": {"type": "existingClaim", "existingClaim": "models"}},
        {"ingress": {"enabled": True, "allowUnauthenticated": True}},
        {"ingress": {"enabled": True}, "secrets": {"apiKey": {"secretName": "k"}}},
        {"serving": {"engineReadyTimeoutSeconds": 3600}},
        {"networkPolicy": {"allowExternal": False, "allowedNamespaces": ["monitoring"]}},
        {"fullnameOverride": "gemma4"},
        {"engine": {"name": "llamacpp", "device": "cpu"}},
        {"engine": {"name": "llamacpp", "extraArgs": ["--parallel", "2"]}, "service": {"port": 9000}},
        # No GPU to wait for: a surge rollout is fine for llama.cpp on CPUs.
        {
            "engine": {"name": "llamacpp", "device": "cpu"},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        },
    ]
    for values in fixes:
        rendered = render_with(values, tmp_path)
        assert rendered.ok, f"{values}: {rendered.stderr}"


def test_values_yaml_is_what_the_chart_renders_by_default() -> None:
    """The defaults render with no values file at all, with and without the file named explicitly."""
    assert template().docs == template(CHART / "values.yaml").docs
