"""The opt-in features against vLLM 0.21.0 itself: every combination parses with its own parser (on representative
profiles; all features together on every profile), to the intended settings, and names registered parsers.

vLLM's argument parser accepts any tool-parser name (only a start rejects an unknown one), so the names are also
checked against vLLM's parser registries here, and tests/e2e/test_features_real_vllm.py starts the engine.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.profiles import apply_features, list_features, list_profiles, load_feature, load_profile
from tests.contract.vllm_contract import ArgCase, check

pytestmark = pytest.mark.contract

COMBINATIONS = [list(c) for n in range(1, len(list_features()) + 1) for c in itertools.combinations(list_features(), n)]
# Every combination on these (the card's command, which sets no modality limits; the smallest card, with CPU offload;
# an Ampere card); all features together on every profile.
REPRESENTATIVE = ("default", "gpu-8gb", "gpu-24gb-ampere")


def cases_to_check() -> list[tuple[str, list[str]]]:
    """(profile, features) pairs: each combination on the representative profiles, all features on each profile."""
    pairs = [(p, combo) for p in REPRESENTATIVE for combo in COMBINATIONS]
    return pairs + [(p, COMBINATIONS[-1]) for p in list_profiles() if p not in REPRESENTATIVE]


@pytest.fixture(scope="module")
def verdicts(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each profile with each combination of features, written as the launcher writes it, through vLLM's parser."""
    folder = tmp_path_factory.mktemp("features")
    cases = []
    for profile, combo in cases_to_check():
        source = f"{profile}+{','.join(combo)}"
        path = folder / f"{source}.yaml"
        path.write_text(yaml.safe_dump(apply_features(load_profile(profile), combo), sort_keys=False))
        cases.append(ArgCase(source, ("--config", str(path))))
    return {v["source"]: v for v in check(vllm_python, cases)}


def test_every_combination_on_every_profile_parses(verdicts: dict[str, dict]) -> None:
    assert len(verdicts) == 3 * 7 + len(list_profiles()) - 3
    failures = [f"{source}: {v['error']}" for source, v in verdicts.items() if not v["ok"]]
    assert not failures, "vLLM 0.21.0 rejects:\n" + "\n".join(failures)


def test_the_features_reach_vllm_as_intended(verdicts: dict[str, dict]) -> None:
    parsed = verdicts["gpu-8gb+audio,reasoning,tools"]["parsed"]
    assert parsed["enable_auto_tool_choice"] is True
    assert parsed["tool_call_parser"] == "gemma4"
    assert parsed["reasoning_parser"] == "gemma4"
    assert parsed["limit_mm_per_prompt"] == {"audio": 1}
    assert "enable_in_reasoning=True" in str(parsed["structured_outputs_config"]) or (
        isinstance(parsed["structured_outputs_config"], dict)
        and parsed["structured_outputs_config"].get("enable_in_reasoning") is True
    )
    tools_only = verdicts["gpu-24gb-ampere+tools"]["parsed"]
    assert tools_only["reasoning_parser"] in (None, "")
    assert tools_only["limit_mm_per_prompt"] == {"audio": 0, "video": 0}  # the profile turns video off


def registry(vllm_python: str, package: str, table: str) -> set[str]:
    """The parser names vLLM 0.21.0 registers: the keys of ``table`` in ``vllm/<package>/__init__.py``.

    Read from the installed source (found without importing vLLM, which takes seconds) and evaluated as a literal.
    """
    find = "import importlib.util; print(importlib.util.find_spec('vllm').submodule_search_locations[0])"
    root = subprocess.run([vllm_python, "-c", find], capture_output=True, text=True, timeout=60, check=True).stdout
    tree = ast.parse((Path(root.strip()) / package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == table for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"vllm/{package}/__init__.py has no {table}: has vLLM's parser registry moved?")


def test_parser_names_are_registered_in_vllm(vllm_python: str) -> None:
    tools = registry(vllm_python, "tool_parsers", "_TOOL_PARSERS_TO_REGISTER")
    reasoning = registry(vllm_python, "reasoning", "_REASONING_PARSERS_TO_REGISTER")
    assert {"gemma4", "functiongemma"} <= tools and "gemma4" in reasoning
    assert load_feature("tools")["tool-call-parser"] in tools
    assert load_feature("reasoning")["reasoning-parser"] in reasoning
