"""The chart's `serving.features`: names only (the flags stay in deploy/profiles/features), the same list for
the launcher and for `helm test`, refused for other engines, and held to the features that exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deploy.profiles import list_features
from tests.contract.helm_chart import CHART, container, env_of, template

pytestmark = pytest.mark.contract

FEATURES = CHART / "ci" / "features-values.yaml"


def _pod_envs(rendered) -> tuple[dict, dict]:
    server = env_of(container(rendered.one("Deployment"), "vllm"))
    [test] = [d for d in rendered.docs if d["kind"] == "Pod"]
    return server, env_of(test["spec"]["containers"][0])


def test_features_reach_the_launcher_and_the_smoke_test_as_one_list() -> None:
    rendered = template(FEATURES)
    assert rendered.ok, rendered.stderr
    server, smoke = _pod_envs(rendered)
    assert server["GEMMA4_FEATURES"] == "tools,reasoning,audio"
    assert smoke["SMOKE_FEATURES"] == "tools,reasoning,audio"
    assert "tool-call-parser" not in str(rendered.docs)  # names only: the flags stay with the profiles


def test_no_features_by_default() -> None:
    server, smoke = _pod_envs(template())
    assert server["GEMMA4_FEATURES"] == ""
    assert smoke["SMOKE_FEATURES"] == "none"


def test_the_schema_knows_exactly_the_features_that_exist() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    enum = schema["properties"]["serving"]["properties"]["features"]["items"]["enum"]
    assert sorted(enum) == list_features()


def test_an_unknown_feature_is_refused_by_the_schema(tmp_path: Path) -> None:
    values = tmp_path / "bad.yaml"
    values.write_text(yaml.safe_dump({"serving": {"features": ["tools", "vision"]}}))
    rendered = template(values)
    assert (
        not rendered.ok
        and "/serving/features/1': value must be one of 'audio', 'reasoning', 'tools'" in rendered.stderr
    )


@pytest.mark.parametrize("engine", ["sglang", "llamacpp"])
def test_features_are_refused_for_another_engine(tmp_path: Path, engine: str) -> None:
    values = tmp_path / "engine.yaml"
    values.write_text(yaml.safe_dump({"engine": {"name": engine}, "serving": {"features": ["tools"]}}))
    rendered = template(values)
    assert not rendered.ok
    assert f"serving.features=tools are vLLM features (deploy/profiles/features) and never reach {engine}" in (
        rendered.stderr
    )
