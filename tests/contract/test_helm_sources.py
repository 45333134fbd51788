"""The chart's sources: small, shallow templates with helpers split by job, and a schema generated, not written.

No cluster is needed: the templates are read as text, and the schema is regenerated with the real
readme-generator-for-helm (scripts/helm_schema.py) and compared with the committed one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.contract.helm_chart import CHART, tools_bin

pytestmark = pytest.mark.contract

TEMPLATES = CHART / "templates"
MAX_LINES = 250
MAX_DEPTH = 4
# Go template actions, comments included (`{{/* ... */}}`, with or without trim markers).
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_OPENERS = {"if", "with", "range", "define", "block"}


# ---- size and nesting -------------------------------------------------------------------------------------


def nesting_depth(text: str) -> int:
    """How deep a template's blocks nest: the most `{{ if }}`, `{{ with }}`, `{{ range }}`, `{{ define }}` and
    `{{ block }}` actions open at once before their `{{ end }}`.

    Each of those actions opens one level and `{{ end }}` closes it; `{{ else }}` and `{{ else if ... }}` stay
    on the level of their block, and comments count for nothing. A helper's `define` is a level of its own, so
    `define > if > range > if` is depth 4. Raises ValueError on an `end` without a block or a block left open.
    """
    depth = deepest = 0
    for match in _ACTION.finditer(text):
        action = match.group(1)
        if action.startswith("/*"):
            continue
        word = action.split(None, 1)[0] if action else ""
        if word in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif word == "end":
            depth -= 1
            if depth < 0:
                raise ValueError(f"`end` without a block at offset {match.start()}")
    if depth:
        raise ValueError(f"{depth} block(s) never closed")
    return deepest


def template_files() -> list[Path]:
    """Every file Helm renders or includes: templates/*.yaml, *.tpl, NOTES.txt and templates/tests/."""
    return sorted(p for p in TEMPLATES.rglob("*") if p.is_file())


def test_every_template_is_short_and_shallow() -> None:
    too_big = []
    for path in template_files():
        text = path.read_text()
        lines, depth = text.count("\n"), nesting_depth(text)
        if lines > MAX_LINES or depth > MAX_DEPTH:
            too_big.append(f"{path.relative_to(CHART)}: {lines} lines, depth {depth}")
    assert not too_big, f"over {MAX_LINES} lines or deeper than {MAX_DEPTH} blocks:\n" + "\n".join(too_big)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("kind: Service", 0),
        ("{{- if .a }}x{{- else if .b }}y{{- else }}z{{- end }}", 1),
        ('{{- define "n" -}}{{- range . }}{{- with .x }}{{ . }}{{- end }}{{- end }}{{- end -}}', 3),
        ('{{ define "n" }}{{ if 1 }}{{ range 2 }}{{ with 3 }}{{ if 4 }}' + "{{ end }}" * 5, 5),
        ("{{/* {{ if }} in a comment */}}{{- /* and {{ range }} */ -}}", 0),
        ("{{ if .a }}{{ end }}{{ with .b }}{{ end }}", 1),
    ],
    ids=["no-blocks", "else-stays-on-its-level", "define-range-with", "five-deep", "comments", "siblings"],
)
def test_the_depth_measure_counts_open_blocks(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


@pytest.mark.parametrize(
    "text", ["{{ if .a }}", "{{ end }}", "{{ range . }}{{ end }}{{ end }}"], ids=["open", "end-first", "end-extra"]
)
def test_the_depth_measure_refuses_unbalanced_blocks(text: str) -> None:
    with pytest.raises(ValueError):
        nesting_depth(text)


# ---- helpers split by job ---------------------------------------------------------------------------------


def defines() -> dict[str, tuple[Path, str]]:
    """Each `define` name -> (file, the comment written right above it); fails on a name defined twice."""
    found: dict[str, tuple[Path, str]] = {}
    for path in TEMPLATES.glob("_*.tpl"):
        text = path.read_text()
        for match in re.finditer(r'(?:\{\{/\*\n(.*?)\n\*/\}\}\n)?\{\{- define "([^"]+)" -\}\}', text, re.S):
            comment, name = match.group(1) or "", match.group(2)
            assert name not in found, f"{name} is defined in {found[name][0].name} and {path.name}"
            found[name] = (path, comment)
    return found


def test_each_helper_is_prefixed_and_documented() -> None:
    bad = [n for n, (_, comment) in defines().items() if not n.startswith("gemma4-serve.") or not comment.strip()]
    assert not bad, f"helpers without the chart prefix or a comment right above them: {bad}"


def test_every_helper_is_used() -> None:
    """Each define is included somewhere: by name, or as an engine part or a validation concern (by prefix)."""
    text = "\n".join(p.read_text() for p in template_files())
    used = set(re.findall(r'(?:include|template) "([^"]+)"', text))
    for name in defines():
        family, _, part = name.rpartition(".")
        by_part = family in ("gemma4-serve.vllm", "gemma4-serve.engine") and f'"%s.{part}"' in text
        by_concern = family == "gemma4-serve.validateValues" and re.search(rf'list [^\n]*"{part}"', text)
        if by_part or by_concern:
            used.add(name)
    assert set(defines()) <= used, f"defined but never included: {sorted(set(defines()) - used)}"


def test_helpers_tpl_holds_names_and_labels_only() -> None:
    in_helpers = {n.removeprefix("gemma4-serve.") for n, (p, _) in defines().items() if p.name == "_helpers.tpl"}
    assert in_helpers == {"name", "fullname", "chart", "selectorLabels", "labels", "serviceAccountName"}


def test_vllm_and_the_other_engines_fill_the_same_parts() -> None:
    """The shared fetch and server containers include `<engineParts>.<part>`: both sides define every part."""
    parts = {
        side: {n.rpartition(".")[2] for n in defines() if n.startswith(f"gemma4-serve.{side}.")}
        for side in ("vllm", "engine")
    }
    included = set(re.findall(r'"%s\.(\w+)"', (TEMPLATES / "_pod.tpl").read_text()))
    assert parts["vllm"] == parts["engine"] == included, parts


def test_every_validation_concern_runs() -> None:
    text = (TEMPLATES / "_validate.tpl").read_text()
    [listed] = re.findall(r"range \$concern := list ((?:\"\w+\" ?)+)", text)
    concerns = {n.removeprefix("gemma4-serve.validateValues.") for n in defines() if ".validateValues." in n}
    assert re.findall(r'"(\w+)"', listed) and set(re.findall(r'"(\w+)"', listed)) == concerns


def test_each_container_is_written_once() -> None:
    """No near-copies: the fetch and server containers are one define each for every engine, so the security
    context is written three times in the chart (fetch, server, the helm test pod)."""
    text = "\n".join(p.read_text() for p in template_files())
    assert text.count("toYaml .Values.containerSecurityContext") == 3
    assert "- name: fetch" not in (TEMPLATES / "deployment.yaml").read_text()


# ---- values.schema.json is generated ------------------------------------------------------------------------


def generate(chart: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """scripts/helm_schema.py on ``chart`` (``--check``: compare only)."""
    argv = [sys.executable, str(CHART.parents[1] / "scripts" / "helm_schema.py"), "--chart", str(chart)]
    return subprocess.run(
        [*argv, *(["--check"] if check else [])],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HELM_TOOLS_BIN": str(tools_bin())},
    )


def test_the_committed_schema_is_what_generation_gives() -> None:
    proc = generate(CHART)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("templates", "files", "ci"))
    return copy


def test_the_check_catches_a_stale_schema(chart_copy: Path) -> None:
    values = chart_copy / "values.yaml"
    values.write_text(values.read_text().replace("## @param replicaCount Number", "## @param replicaCount How many"))
    proc = generate(chart_copy)
    assert proc.returncode == 1 and "stale: run `make helm-docs`" in proc.stderr, proc.stderr
    assert generate(chart_copy, check=False).returncode == 0
    assert "How many of vLLM pods" in (chart_copy / "values.schema.json").read_text()
    assert generate(chart_copy).returncode == 0


@pytest.mark.parametrize(
    ("key", "keywords", "problem"),
    [
        ("replicaCount", {"description": "x"}, "write it in the key's @param comment"),
        ("replicaCont", {"minimum": 0}, "matches no value in values.yaml"),
    ],
    ids=["a-description", "a-stale-key"],
)
def test_the_generator_refuses_a_bad_overlay(chart_copy: Path, key: str, keywords: dict, problem: str) -> None:
    path = chart_copy / "schema-overlay.json"
    overlay = json.loads(path.read_text())
    overlay["keys"][key] = keywords
    path.write_text(json.dumps(overlay))
    proc = generate(chart_copy, check=False)
    assert proc.returncode == 1 and problem in proc.stderr and key in proc.stderr, proc.stderr


def params() -> dict[str, str]:
    """`## @param key description` comments of values.yaml: key -> description."""
    text = (CHART / "values.yaml").read_text()
    return dict(re.findall(r"(?m)^## @param (\S+) (.+)$", text))


def schema_node(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The schema of a dotted @param key (`tolerations[0].key` goes through `items`)."""
    node = schema
    for part in key.split("."):
        name, _, index = part.partition("[")
        node = node["properties"][name]
        if index:
            node = node["items"]
    return node


def test_every_param_is_described_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    documented = params()
    assert len(documented) > 150
    wrong = [k for k, text in documented.items() if schema_node(schema, k).get("description") != text]
    assert not wrong, f"@param keys whose schema description is not their comment: {wrong}"
