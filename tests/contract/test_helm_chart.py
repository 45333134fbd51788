"""helm/gemma4-serve against the real tools: Helm 4 and Helm 3, kubernetes-validate, check-jsonschema, checkov.

Each check runs over every case of helm_chart.cases(): the ci/ values files and every profile forced by name.

No Kubernetes API server runs here, so nothing is installed: server-side validation, scheduling on GPUs,
pulling the images and `helm test` itself are not exercised (the chart README says so).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.profiles import list_profiles
from tests.conftest import require_tool
from tests.contract.helm_chart import CHART, KUBE_VERSIONS, Case, cases, profile_case, render, template, tools_bin

pytestmark = pytest.mark.contract

CASES = cases()


def ids(case: Case) -> str:
    return case.name


# ---- CRD kinds: kubernetes-validate has no schema for them, so each gets an explicit one here ---------
# Written from the upstream CRDs (prometheus-operator v0.8x, KEDA v2, Gateway API v1) for the fields this
# chart uses; unknown fields under spec are rejected, as kubernetes-validate --strict does for core kinds.


def _obj(props: dict[str, Any], required: list[str] | None = None, strict: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if strict:
        schema["additionalProperties"] = False
    if required:
        schema["required"] = required
    return schema


_META = _obj({"name": {"type": "string"}, "namespace": {"type": "string"}}, ["name"], strict=False)
_SELECTOR = _obj({"matchLabels": {"type": "object"}, "matchExpressions": {"type": "array"}})
_NS_SELECTOR = _obj({"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}})
_ENDPOINT = _obj({"port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string"}}, ["port"])


def _crd(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _obj(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        _obj(
            {
                "selector": _SELECTOR,
                "namespaceSelector": _NS_SELECTOR,
                "endpoints": {"type": "array", "items": _ENDPOINT},
            },
            ["selector", "endpoints"],
        ),
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "PodMonitor",
        _obj(
            {
                "selector": _SELECTOR,
                "namespaceSelector": _NS_SELECTOR,
                "podMetricsEndpoints": {"type": "array", "items": _ENDPOINT},
            },
            ["selector", "podMetricsEndpoints"],
        ),
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _crd(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        _obj(
            {
                "groups": {
                    "type": "array",
                    "items": _obj(
                        {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": _obj(
                                    {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"},
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                    ["alert", "expr"],
                                ),
                            },
                        },
                        ["name", "rules"],
                    ),
                }
            },
            ["groups"],
        ),
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): _crd(
        "keda.sh/v1alpha1",
        "ScaledObject",
        _obj(
            {
                "scaleTargetRef": _obj({"name": {"type": "string"}, "kind": {"type": "string"}}, ["name"]),
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": _obj(
                        {
                            "type": {"const": "prometheus"},
                            "metadata": _obj(
                                {
                                    "serverAddress": {"type": "string", "pattern": "^https?://"},
                                    "query": {"type": "string"},
                                    "threshold": {"type": "string", "pattern": "^[0-9.]+$"},
                                },
                                ["serverAddress", "query", "threshold"],
                            ),
                        },
                        ["type", "metadata"],
                    ),
                },
            },
            ["scaleTargetRef", "triggers"],
        ),
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): _crd(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        _obj(
            {
                "parentRefs": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name"]}},
                "hostnames": {"type": "array", "items": {"type": "string"}},
                "rules": {
                    "type": "array",
                    "items": _obj(
                        {
                            "matches": {"type": "array"},
                            "backendRefs": {
                                "type": "array",
                                "items": _obj(
                                    {"name": {"type": "string"}, "port": {"type": "integer"}}, ["name", "port"]
                                ),
                            },
                        }
                    ),
                },
            },
            ["parentRefs", "rules"],
        ),
    ),
}


def validation_errors(doc: dict[str, Any], kube_version: str) -> list[str]:
    """Problems with one rendered document: strict Kubernetes schema, or our CRD schema, or unknown kind."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    crd = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
    if crd is not None:
        return [
            f"{where}: {e.message} at {list(e.absolute_path)}"
            for e in jsonschema.Draft202012Validator(crd).iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{where}: {doc.get('apiVersion')} {doc.get('kind')} is neither a Kubernetes kind nor a known CRD"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {exc.message} at {list(exc.path)}"]
    return []


# ---- helm lint / template with both major versions --------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_lint_strict_with_helm_4_and_3(case: Case) -> None:
    for helm in (require_tool("helm"), str(tools_bin() / "helm3")):
        proc = subprocess.run(
            [helm, "lint", "--strict", str(CHART), *case.args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{helm}:\n{proc.stdout}{proc.stderr}"


def test_helm_versions_are_3_and_4() -> None:
    for helm, major in ((require_tool("helm"), "v4."), (str(tools_bin() / "helm3"), "v3.")):
        version = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True).stdout
        assert version.startswith(major), version


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_helm_3_renders_what_helm_4_renders(case: Case) -> None:
    four = render(case)
    three = template(case, helm=str(tools_bin() / "helm3"))
    assert four.ok and three.ok, four.stderr + three.stderr
    assert three.docs == four.docs


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_document_is_valid(kube_version: str) -> None:
    errors = []
    for case in CASES:
        rendered = render(case, kube_version=kube_version)
        assert rendered.ok, f"{case.name}: {rendered.stderr}"
        errors += [f"{case.name}: {e}" for d in rendered.docs for e in validation_errors(d, kube_version)]
    assert not errors, "\n".join(errors)


def test_the_ci_matrix_renders_every_crd_kind() -> None:
    """Each CRD schema above is used: the ci files between them render every one of those kinds."""
    seen = {(d["apiVersion"], d["kind"]) for case in CASES for d in render(case).docs}
    assert set(CRD_SCHEMAS) <= seen, set(CRD_SCHEMAS) - seen


def test_validation_catches_bad_documents() -> None:
    deployment = next(d for d in template().docs if d["kind"] == "Deployment")
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert validation_errors(typo, KUBE_VERSIONS[-1]), "strict validation accepted an unknown field"
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"}}
    monitor["spec"] = {"selector": {}, "endpoints": [{"port": "http", "intervall": "15s"}]}
    assert validation_errors(monitor, KUBE_VERSIONS[-1]), "the CRD schema accepted an unknown field"
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "neither a Kubernetes kind nor a known CRD" in validation_errors(unknown, KUBE_VERSIONS[-1])[0]


# ---- values.schema.json -------------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over values.yaml: maps merge, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_values_files_pass_the_schema_with_check_jsonschema(tmp_path: Path) -> None:
    """values.yaml, and each case as Helm sees it (merged over values.yaml), against values.schema.json."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    files = [CHART / "values.yaml"]
    for case in CASES:
        files.append(tmp_path / f"{case.name}-values.yaml")
        files[-1].write_text(yaml.safe_dump(merged(defaults, case.values())))
    proc = subprocess.run(
        [require_tool("check-jsonschema"), "--schemafile", str(CHART / "values.schema.json"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_jsonschema_names_a_typo(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("serving:\n  profle: gpu-8gb\n")
    proc = subprocess.run(
        [require_tool("check-jsonschema"), "--schemafile", str(CHART / "values.schema.json"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "profle" in proc.stdout, proc.stdout


def test_schema_is_self_contained() -> None:
    refs = re.findall(r'"\$ref":\s*"([^"]*)"', (CHART / "values.schema.json").read_text())
    assert refs and all(ref.startswith("#/") for ref in refs), refs


def test_profile_enum_is_auto_plus_every_profile() -> None:
    assert schema()["properties"]["serving"]["properties"]["profile"]["enum"] == ["auto", *list_profiles()]


def test_every_profile_is_a_case_and_has_no_values_file() -> None:
    """The profile list, not a file per profile, feeds the matrix: every profile the schema admits is a case."""
    for name in schema()["properties"]["serving"]["properties"]["profile"]["enum"]:
        if name != "auto":
            assert profile_case(name) in CASES, name
    assert not list(CHART.glob("ci/profile-*")), "a profile is a case by name, not a ci/ file"


def test_every_value_is_in_the_schema() -> None:
    """values.yaml's keys and the schema's properties are the same tree (nothing undocumented either way)."""

    def keys(values: Any, node: dict[str, Any], prefix: str = "") -> list[str]:
        missing = []
        props = node.get("properties", {})
        for key, value in values.items():
            if key not in props:
                missing.append(prefix + key)
            elif isinstance(value, dict) and props[key].get("properties"):
                missing += keys(value, props[key], f"{prefix}{key}.")
        return missing

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert not keys(values, schema())
    assert set(schema()["properties"]) == set(values)


# ---- package, docs ------------------------------------------------------------------------------------


def test_helm_package(tmp_path: Path) -> None:
    proc = subprocess.run(
        [require_tool("helm"), "package", str(CHART), "--destination", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    [archive] = tmp_path.glob("gemma4-serve-*.tgz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    for member in ("values.schema.json", "files/grafana-dashboard.json", "templates/tests/smoke.yaml", "README.md"):
        assert f"gemma4-serve/{member}" in names
    assert not [n for n in names if "/ci/" in n or n.endswith(".tgz")], "ci files belong out of the package"


def test_readme_values_table_is_generated_from_values(tmp_path: Path) -> None:
    """README.md's Parameters section is exactly what readme-generator-for-helm makes of values.yaml."""
    readme = tmp_path / "README.md"
    shutil.copy(CHART / "README.md", readme)
    proc = subprocess.run(
        [str(tools_bin() / "readme-generator"), "-v", str(CHART / "values.yaml"), "-r", str(readme)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert readme.read_text() == (CHART / "README.md").read_text(), "values table is stale: run `make helm-docs`"


# ---- policy scan --------------------------------------------------------------------------------------


def accepted_findings() -> dict[str, str]:
    """Check id -> reason, from the chart README's "Accepted policy findings" table."""
    text = (CHART / "README.md").read_text()
    section = text.split("## Accepted policy findings", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(CKV2?_K8S_\d+)` \| [^|]+ \| ([^|]+?) \|$", section, re.M))


def test_checkov_finds_nothing_beyond_the_accepted_list(tmp_path: Path) -> None:
    for case in CASES:
        rendered = subprocess.run(
            [require_tool("helm"), "template", "gemma4", str(CHART), "-n", "llm", *case.args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (tmp_path / f"{case.name}.yaml").write_text(rendered)
    proc = subprocess.run(
        [str(tools_bin() / "checkov"), "-d", str(tmp_path), "--framework", "kubernetes", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(tools_bin()), "BC_SKIP_MAPPING": "TRUE", "HOME": str(tmp_path)},
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    assert sum(r["summary"]["passed"] for r in reports) > 100, "checkov ran no checks"
    failed = {(f["check_id"], f["resource"]) for r in reports for f in r["results"]["failed_checks"]}
    accepted = accepted_findings()
    assert accepted and all(reason.strip() for reason in accepted.values())
    unexpected = sorted(f"{check}: {resource}" for check, resource in failed if check not in accepted)
    assert not unexpected, "checkov findings not in the chart README's accepted list:\n" + "\n".join(unexpected)
    stale = set(accepted) - {check for check, _ in failed}
    assert not stale, f"accepted findings checkov no longer reports (remove them from the README): {stale}"
