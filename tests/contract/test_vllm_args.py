"""The vLLM argument contract: vLLM 0.21.0's own parser accepts every argument list we ship."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deploy.profiles import load_profile, to_argv
from smoke_tests.settings import resolve as resolve_smoke
from tests.contract.arg_sources import all_cases, profile_cases
from tests.contract.helm_chart import container, env_of, render_cases
from tests.contract.vllm_contract import ArgCase, check

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def verdicts(vllm_python: str, repo: Path) -> dict[str, dict]:
    cases = all_cases(repo)
    assert cases, "no argument lists were collected: the collector is broken"
    return {r["source"]: r for r in check(vllm_python, cases)}


def test_every_shipped_argument_list_parses(verdicts: dict[str, dict]) -> None:
    failures = [f"{src}: {v['error']}" for src, v in verdicts.items() if not v["ok"]]
    assert not failures, "vLLM 0.21.0 rejects:\n" + "\n".join(failures)


def test_every_profile_is_checked(verdicts: dict[str, dict]) -> None:
    assert {c.source for c in profile_cases()} <= set(verdicts)


def test_profiles_reach_vllm_as_written(verdicts: dict[str, dict]) -> None:
    """vLLM's own --config expansion equals what `deploy profiles --argv` prints for each profile."""
    for case in profile_cases():
        name = Path(case.source).stem
        assert verdicts[case.source]["expanded"] == to_argv(load_profile(name)), case.source


def test_default_profile_is_the_model_card_command(verdicts: dict[str, dict]) -> None:
    parsed = verdicts["deploy/profiles/default.yaml"]["parsed"]
    assert parsed["model"] == "88plug/Gemma4-E2B-it-W8A16"
    assert parsed["kv_cache_dtype"] == "fp8"
    assert parsed["max_model_len"] == 32768
    assert parsed["gpu_memory_utilization"] == pytest.approx(0.90)
    assert parsed["port"] == 8000
    assert parsed["served_model_name"] == ["gemma-4-e2b-it"]


# Each must be rejected, with the offending flag named in the error.
BAD_ARGUMENTS = {
    "--disable-log-requests": ("m", "--disable-log-requests"),  # removed in vLLM 0.21.0
    "--limit-mm-per-prompt": ("m", "--limit-mm-per-prompt", "image=4"),  # the old key=value syntax
    "--kv-cache-dtyp": ("m", "--kv-cache-dtyp", "fp8"),  # an abbreviation plain argparse would accept
    "--kv-cache-dtype": ("m", "--kv-cache-dtype", "fp9"),  # not a valid choice
    "--max-model-len": ("m", "--max-model-len", "lots"),  # not a size
}


@pytest.fixture(scope="module")
def bad_verdicts(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    bad_profile = tmp_path_factory.mktemp("profiles") / "typo.yaml"
    bad_profile.write_text("model: m\nkv-cache-dtyp: fp8\n")
    cases = [ArgCase(flag, argv) for flag, argv in BAD_ARGUMENTS.items()]
    cases.append(ArgCase(str(bad_profile), ("--config", str(bad_profile))))
    return {v["source"]: v for v in check(vllm_python, cases)}


@pytest.mark.parametrize("flag", BAD_ARGUMENTS)
def test_contract_rejects_bad_arguments(bad_verdicts: dict[str, dict], flag: str) -> None:
    verdict = bad_verdicts[flag]
    assert not verdict["ok"], f"{BAD_ARGUMENTS[flag]} was accepted"
    assert flag.lstrip("-").replace("-", "_") in verdict["error"].replace("-", "_"), verdict["error"]


def test_contract_names_the_file_and_flag_of_a_bad_profile(bad_verdicts: dict[str, dict]) -> None:
    [verdict] = [v for source, v in bad_verdicts.items() if source.endswith("typo.yaml")]
    assert not verdict["ok"]
    assert "--kv-cache-dtyp" in verdict["error"], verdict["error"]


def _url_port(command: list[str]) -> int | None:
    """The port of the ``--url`` a probe or drain command targets."""
    return urlsplit(command[command.index("--url") + 1]).port


def test_the_chart_the_launcher_and_vllm_agree_on_port_and_context(verdicts: dict[str, dict]) -> None:
    """In every vLLM pod of the chart's cases (ci files and profiles): vLLM listens where the probes, drain and
    Service look, and serves the context length `helm test` holds it to.

    vLLM's own parser reads what the launcher resolves from the rendered environment (arg_sources.helm_cases),
    so `serving.port` and `--max-model-len` in `serving.extraArgs` are followed to the values vLLM ends up with.
    """
    checked = 0
    for case, rendered in render_cases().items():
        server = container(rendered.one("Deployment"))
        if server["name"] != "vllm":
            continue
        parsed = verdicts[case.source]["parsed"]
        [http] = [p["containerPort"] for p in server["ports"] if p["name"] == "http"]
        assert parsed["port"] == http, f"{case.name}: vLLM listens on {parsed['port']}, the pod's port is {http}"
        assert _url_port(server["startupProbe"]["exec"]["command"]) == http, case.name
        assert _url_port(server["lifecycle"]["preStop"]["exec"]["command"]) == http, case.name
        assert rendered.one("Service")["spec"]["ports"][0]["targetPort"] == "http"
        # The context length the smoke suite in the test pod expects: none (then it reads what the server
        # reports), or exactly what vLLM serves.
        smoke = env_of(rendered.one("Pod")["spec"]["containers"][0])
        expected = resolve_smoke({}, {k: v for k, v in smoke.items() if isinstance(v, str)}).max_model_len
        assert expected in (None, parsed["max_model_len"]), f"{case.name}: helm test expects {expected}"
        checked += 1
    assert checked >= 20
