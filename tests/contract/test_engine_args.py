"""Every SGLang and llama.cpp argument list the project writes, against that engine's own argument list.

- llama.cpp: the flags declared in common/arg.cpp of build b11312 (commit 0c1e57098), taken from the
  llama-cpp-python 0.3.36 sdist on PyPI that vendors exactly that commit (`scripts/bootstrap.sh
  llamacpp-src`, 76 MB download, about 6 s). Runs in `make test`.
- SGLang: SGLang 0.5.11's own argparse parser, built on CPU in its own venv (`scripts/bootstrap.sh sglang`,
  about 90 s and 5.8 GB the first time). Marked `sglang`: `make test-engines` runs it, `make test` does not
  (tests/contract/conftest.py deselects it unless SGLANG_PYTHON is set; docs/engines.md says why).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from deploy.engines import load_engine, placeholder_paths, render_argv
from tests.contract.llamacpp_args import check_argv, parse_arg_cpp, server_options

pytestmark = pytest.mark.contract

# `# GEMMA4_LLAMACPP_EXTRA_ARGS=...` lines in .env.example and quoted examples in the docs.
_EXTRA_RE = (
    r"""GEMMA4_{engine}_EXTRA_ARGS=(?:(["'])(?P<quoted>.*?)\1"""
    r"""|(?P<line>(?<=^GEMMA4_{engine}_EXTRA_ARGS=)\S.*$))"""
)


def extra_args_examples(repo: Path, engine: str) -> list[tuple[str, list[str]]]:
    """(file:line, words) for every GEMMA4_<ENGINE>_EXTRA_ARGS example in .env.example, README and docs."""
    pattern = re.compile(_EXTRA_RE.format(engine=engine.upper()), re.M)
    found = []
    for path in sorted([repo / ".env.example", *repo.glob("*.md"), *repo.glob("docs/**/*.md")]):
        text = re.sub(rf"(?m)^#\s*(?=GEMMA4_{engine.upper()}_EXTRA_ARGS=)", "", path.read_text())
        for m in pattern.finditer(text):
            value = m.group("quoted") if m.group("quoted") is not None else m.group("line")
            found.append((f"{path.relative_to(repo)}:{text[: m.start()].count(chr(10)) + 1}", shlex.split(value)))
    return found


def engine_argvs(name: str) -> list[tuple[str, list[str]]]:
    """(label, argv after the launcher) for every device x variant the engine file describes."""
    engine = load_engine(name)
    launcher = len(engine.data["command"])
    return [
        (f"{name} {device} {variant}", render_argv(engine, placeholder_paths(engine, variant), device)[launcher:])
        for device in engine.devices
        for variant in engine.variants
    ]


# ---- llama.cpp -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llamacpp_src(repo: Path) -> Path:
    """The folder holding the pinned build's arg.cpp (fetched once per machine, then cached)."""
    subprocess.run([str(repo / "scripts/bootstrap.sh"), "llamacpp-src"], check=True, timeout=300)
    env = subprocess.run(
        [str(repo / "scripts/bootstrap.sh"), "env"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return Path(re.search(r"(?m)^LLAMACPP_SRC=(.*)$", env).group(1))


@pytest.fixture(scope="module")
def llamacpp_options(llamacpp_src: Path) -> dict:
    return server_options(llamacpp_src / "arg.cpp")


def test_arg_cpp_is_the_pinned_builds(repo: Path, llamacpp_src: Path) -> None:
    """The sdist's changelog ties its version to the commit the engine file names for build b11312."""
    pin = re.search(r"(?m)^llama-cpp-python==(\S+)", (repo / "requirements/llamacpp-src.txt").read_text()).group(1)
    commit = load_engine("llamacpp").data["source_commit"]
    changelog = (llamacpp_src / "CHANGELOG.md").read_text()
    section = changelog.split(f"## [{pin}]", 1)[1].split("\n## [", 1)[0]
    assert f"ggml-org/llama.cpp@{commit}" in section, section


def test_the_reader_sees_llama_servers_options(llamacpp_src: Path, llamacpp_options: dict) -> None:
    declared = parse_arg_cpp((llamacpp_src / "arg.cpp").read_text())
    assert len(declared) > 300
    # Server-only options are in, CLI-only ones (excluded from the server) are out.
    assert {"--mmproj", "--jinja", "--no-jinja", "--metrics", "--alias", "--api-key", "--ctx-size"} <= set(
        llamacpp_options
    )
    assert "--prompt" not in llamacpp_options
    assert llamacpp_options["--ctx-size"].kind == "int"
    assert llamacpp_options["--n-gpu-layers"].choices == {"auto", "all"}


@pytest.mark.parametrize(("label", "argv"), engine_argvs("llamacpp"), ids=lambda v: v if isinstance(v, str) else "")
def test_llamacpp_arguments_are_accepted(llamacpp_options: dict, label: str, argv: list[str]) -> None:
    assert check_argv(llamacpp_options, argv) == [], label


def test_llamacpp_override_examples_are_accepted(repo: Path, llamacpp_options: dict) -> None:
    examples = extra_args_examples(repo, "llamacpp")
    assert examples, "no GEMMA4_LLAMACPP_EXTRA_ARGS example found: the check would check nothing"
    for source, words in examples:
        assert check_argv(llamacpp_options, words) == [], source


def test_llamacpp_health_is_public_and_503_while_loading(llamacpp_src: Path) -> None:
    """The chart probes /health without the key and waits for 200: the pinned build's server README says so."""
    readme = (llamacpp_src / "server-README.md").read_text()
    section = readme.split("### GET `/health`", 1)[1].split("\n### ", 1)[0]
    assert "This endpoint is public (no API key check)" in section
    assert "HTTP status code 503" in section and "Loading model" in section
    assert "HTTP status code 200" in section


def chart_extra_args(engine: str) -> list[tuple[str, list[str]]]:
    """(ci file, words) for the chart's engine.extraArgs, as Helm renders them into the fetch step's --extra-args."""
    from tests.contract import helm_chart

    found = []
    for values in sorted(helm_chart.CHART.glob(f"ci/engine-{engine}*-values.yaml")):
        rendered = helm_chart.template(values)
        assert rendered.ok, rendered.stderr
        args = helm_chart.container(rendered.one("Deployment"), "fetch", init=True)["args"]
        found.append((values.name, shlex.split(args[args.index("--extra-args") + 1])))
    return found


def test_llamacpp_chart_extra_args_are_accepted(llamacpp_options: dict) -> None:
    cases = chart_extra_args("llamacpp")
    assert len(cases) == 2 and all(words for _, words in cases), cases
    for source, words in cases:
        assert check_argv(llamacpp_options, words) == [], source


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--ctx-size", "32k"], "'32k' is not an integer"),
        (["--n-gpu-layer", "99"], "--n-gpu-layer: not a llama-server option"),
        (["--n-gpu-layers", "most"], "'most' is not one of ['all', 'auto']"),
        (["--flash-attn", "maybe"], "'maybe' is not one of"),
        (["--prompt", "hi"], "--prompt: not a llama-server option"),
        (["--mmproj"], "--mmproj: expects 1 value(s)"),
    ],
)
def test_llamacpp_check_rejects_what_the_server_would(llamacpp_options: dict, argv: list[str], problem: str) -> None:
    assert any(problem in p for p in check_argv(llamacpp_options, argv)), check_argv(llamacpp_options, argv)


# ---- SGLang --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sglang_python() -> str:
    path = os.environ.get("SGLANG_PYTHON", "")
    if not path or not Path(path).exists():
        pytest.fail("SGLANG_PYTHON is unset or missing: run `make test-engines` (it builds SGLang's parser)")
    return path


def sglang_check(sglang_python: str, repo: Path, cases: list[tuple[str, list[str]]]) -> list[dict]:
    proc = subprocess.run(
        [sglang_python, str(repo / "tests/contract/sglang_parse.py")],
        input=json.dumps([{"source": s, "argv": a} for s, a in cases]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.sglang
def test_sglang_arguments_and_override_examples_are_accepted(sglang_python: str, repo: Path) -> None:
    overrides = extra_args_examples(repo, "sglang")
    assert overrides, "no GEMMA4_SGLANG_EXTRA_ARGS example found: the check would check nothing"
    overrides += chart_extra_args("sglang")
    base = engine_argvs("sglang")[0][1]
    cases = [*engine_argvs("sglang"), *((source, [*base, *words]) for source, words in overrides)]
    for result in sglang_check(sglang_python, repo, cases):
        assert result["ok"], f"{result['source']}: {result['error']}"


@pytest.mark.sglang
def test_sglang_parser_rejects_typos_and_bad_choices(sglang_python: str, repo: Path) -> None:
    base = engine_argvs("sglang")[0][1]
    results = sglang_check(
        sglang_python,
        repo,
        [
            ("typo", [*base, "--context-lenght", "8192"]),
            ("abbreviation", [*base, "--context-len", "8192"]),
            ("choice", [*base, "--tool-call-parser", "gemma5"]),
            ("type", [*base, "--mem-fraction-static", "most"]),
        ],
    )
    assert [r["ok"] for r in results] == [False, False, False, False], results
    assert "--context-lenght" in results[0]["error"] and "gemma5" in results[2]["error"]


@pytest.mark.sglang
def test_sglang_health_and_metrics_need_no_api_key(sglang_python: str) -> None:
    """The chart probes /health and scrapes /metrics without the key; SGLang 0.5.11's own auth decides so."""
    code = """
import json
from sglang.srt.utils.auth import AuthLevel, decide_request_auth
paths = ["/health", "/metrics", "/v1/chat/completions"]
print(json.dumps({p: decide_request_auth(method="GET", path=p, authorization_header=None, api_key="k",
                                         admin_api_key=None, auth_level=AuthLevel.NORMAL).allowed for p in paths}))
"""
    proc = subprocess.run([sglang_python, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    allowed = json.loads(proc.stdout.splitlines()[-1])
    assert allowed == {"/health": True, "/metrics": True, "/v1/chat/completions": False}
