"""The feature and protocol-hygiene checks against the fault-injecting stub: each fault fails exactly its checks,
with a message that names the problem; features are selected by --features or found by asking the server.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from smoke_tests.__main__ import main
from tests.fixtures.openai_stub import MODEL, Stub, build_app
from tests.fixtures.servers import run_asgi

ALL = "tools,reasoning,audio"
TOOLS_FORCED = {"tools.forced_call[named]", "tools.forced_call[required]"}
TOOLS_STREAMED = {"tools.arguments_streamed[named]", "tools.arguments_streamed[required]"}
BUG = "upstream issue 39130"

# (fault, checks that must fail and no others, a fragment of the first listed check's message)
FEATURE_FAULTS = [
    ("length_reported_as_stop", {"protocol.length_finish"}, "finish_reason is 'stop', not 'length'"),
    ("stop_string_kept", {"protocol.stop_excluded"}, "stop string 'an' is in the content"),
    (
        "nondeterministic",
        {
            "protocol.greedy_deterministic",
            "stream.matches_non_streamed",
            "structured.json_schema",
            "reasoning.json_schema_enforced",
        },
        "two identical greedy requests",
    ),
    (
        "empty_200_with_tools",
        {"protocol.never_empty", "tools.tool_result_turn", "tools.auto_calls_the_tool", "tools.call_text_kept"},
        "tools offered, auto: answered 200 with empty content and no tool call",
    ),
    (
        "json_schema_ignored",
        {"structured.json_schema", "reasoning.json_schema_enforced"},
        "the json_schema answer is not valid JSON",
    ),
    (
        "tool_args_invalid",
        TOOLS_FORCED | TOOLS_STREAMED | {"tools.tool_result_turn", "tools.auto_calls_the_tool"},
        "the arguments do not validate against the tool's parameters at (root): 'unit' is a required property",
    ),
    ("tool_call_missing", {"tools.forced_call[required]", "tools.arguments_streamed[required]"}, "no tool call"),
    ("tool_stream_args_broken", TOOLS_STREAMED, "streamed call 0 (joined deltas): the arguments is not valid JSON"),
    # (the required variant also names vLLM 0.21.0's whitespace bug: test_the_required_streaming_bug_is_named)
    ("tool_stream_as_content", TOOLS_STREAMED, "no tool_calls delta"),
    ("tool_result_rejected", {"tools.tool_result_turn"}, "answered 400: 'tool messages are not supported'"),
    ("auto_no_call", {"tools.auto_calls_the_tool"}, "with the weather tool on auto, the model answered"),
    ("call_text_swallowed", {"tools.call_text_kept"}, "the text after the call-like part was swallowed"),
    ("reasoning_in_content", {"reasoning.thinking_on"}, "`content` carries the thinking marker(s)"),
    ("reasoning_when_off", {"reasoning.thinking_off"}, "thinking off, yet `reasoning` came back"),
    (
        "reasoning_json_unenforced",
        {"structured.json_schema", "reasoning.json_schema_enforced", "tools.tool_result_turn"}
        | TOOLS_FORCED
        | TOOLS_STREAMED,
        BUG,
    ),
    ("audio_ignored", {"audio.clip_reaches_the_model"}, "the audio never reached the model"),
    ("audio_over_limit_500", {"audio.over_limit_refused"}, "answered 500, expected a 4xx refusal"),
    ("long_audio_500", {"audio.long_clip_not_an_error"}, "a 40 s clip answered 500"),
]
PRIMARY = {
    "nondeterministic": "protocol.greedy_deterministic",
    "empty_200_with_tools": "protocol.never_empty",
    "reasoning_json_unenforced": "reasoning.json_schema_enforced",
    "tool_args_invalid": "tools.forced_call[named]",
}
# The spoken-question check needs espeak-ng to make its clip; the smoke image has it, a test machine may not.
ESPEAK = shutil.which("espeak-ng") is not None


@pytest.fixture(scope="module")
def stub_url() -> Iterator[tuple[str, Stub]]:
    stub = Stub("vllm")
    with run_asgi(build_app(stub)) as url:
        yield url, stub
        stub.stopped.set()


@pytest.fixture
def stub(stub_url: tuple[str, Stub]) -> tuple[str, Stub]:
    url, s = stub_url
    s.faults, s.features, s.dead, s.in_flight = set(), {"tools", "reasoning", "audio"}, False, 0
    return url, s


def run(tmp_path: Path, url: str, *args: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["--base-url", url, "--model", MODEL, "--wait", "3", "--json", str(report), *args])
    return code, json.loads(report.read_text())


def outcomes(report: dict, outcome: str) -> dict[str, str]:
    return {c["name"]: c["message"] for c in report["checks"] if c["outcome"] == outcome}


FEATURE_CHECKS = "protocol or structured or tools or reasoning or audio"


def test_every_feature_check_passes_against_a_correct_stub(stub, tmp_path: Path) -> None:
    url, _ = stub
    code, report = run(tmp_path, url, "--features", ALL, "--select", FEATURE_CHECKS)
    assert code == 0, outcomes(report, "failed")
    expected_skips = set() if ESPEAK else {"audio.spoken_question"}
    assert set(outcomes(report, "skipped")) == expected_skips
    names = {c["name"] for c in report["checks"]}
    assert len(names) == 19 and {n.split(".")[0] for n in names} == set(FEATURE_CHECKS.split(" or "))


@pytest.mark.parametrize(("fault", "expected", "fragment"), FEATURE_FAULTS, ids=[f[0] for f in FEATURE_FAULTS])
def test_each_feature_fault_fails_exactly_its_checks(stub, tmp_path: Path, fault, expected, fragment) -> None:
    url, s = stub
    s.break_(fault)
    code, report = run(tmp_path, url, "--features", ALL, "--select", f"{FEATURE_CHECKS} or stream")
    assert code == 1
    failures = outcomes(report, "failed")
    assert set(failures) == expected
    primary = PRIMARY.get(fault, sorted(expected)[0])
    assert fragment in failures[primary], failures[primary]


def test_the_reasoning_bugs_are_named_with_their_workarounds(stub, tmp_path: Path) -> None:
    url, s = stub
    s.break_("reasoning_json_unenforced")
    _, report = run(tmp_path, url, "--features", ALL, "--select", "structured or reasoning or tools")
    for name, message in outcomes(report, "failed").items():
        assert BUG in message and "--structured-outputs-config.enable_in_reasoning true" in message, name
    s.break_("tool_stream_as_content")
    _, report = run(tmp_path, url, "--features", ALL, "--select", "arguments_streamed")
    for name, message in outcomes(report, "failed").items():
        assert (
            "the stream never leaves the reasoning phase, so named/required tool calls arrive as `content`" in message
        )
        assert "39130" in message, name


def test_the_required_streaming_bug_is_named(stub, tmp_path: Path) -> None:
    url, s = stub
    s.break_("tool_stream_args_broken")  # the opening brace lost, as vLLM 0.21.0 loses it for `required`
    _, report = run(tmp_path, url, "--features", "tools", "--select", "arguments_streamed")
    failures = outcomes(report, "failed")
    assert "the opening brace) is lost" in failures["tools.arguments_streamed[required]"]
    assert "is lost" not in failures["tools.arguments_streamed[named]"]  # named calls stream without that parser


def test_wrong_spoken_answer_fails_the_spoken_check(stub, tmp_path: Path) -> None:
    if not ESPEAK:
        pytest.skip("espeak-ng is not installed on this machine: the spoken clip cannot be made")
    url, s = stub
    s.break_("wrong_answer")
    code, report = run(tmp_path, url, "--features", "audio", "--select", "audio")
    assert code == 1 and set(outcomes(report, "failed")) == {"audio.spoken_question"}
    assert "answered '6' (expected 5)" in outcomes(report, "failed")["audio.spoken_question"]


def test_features_are_found_by_asking_the_server(stub, tmp_path: Path) -> None:
    url, s = stub
    s.features = {"audio"}  # tools off: the server refuses tool_choice=required, as vLLM does without a parser
    code, report = run(tmp_path, url, "--select", "tools or reasoning or audio")
    assert code == 0, outcomes(report, "failed")
    skipped = outcomes(report, "skipped")
    assert {n for n in skipped if n.startswith("tools.")} == TOOLS_FORCED | TOOLS_STREAMED | {
        "tools.tool_result_turn",
        "tools.auto_calls_the_tool",
        "tools.call_text_kept",
    }
    assert (
        "feature tools is off: the server refused a tool_choice=required request (400"
        in skipped["tools.forced_call[named]"]
    )
    assert "pass --features reasoning" in skipped["reasoning.thinking_on"]
    assert "audio.clip_reaches_the_model" not in skipped


def test_named_features_override_discovery_and_a_missing_one_fails(stub, tmp_path: Path) -> None:
    url, s = stub
    s.features = {"reasoning"}  # a deployment that forgot the tools feature, while the suite is told it is on
    code, report = run(tmp_path, url, "--features", "tools", "--select", "forced_call")
    assert code == 1
    assert "answered 400" in outcomes(report, "failed")["tools.forced_call[named]"]
    code, report = run(tmp_path, url, "--features", "none", "--select", "tools or audio or reasoning")
    assert code == 0 and not outcomes(report, "passed")
    assert all("not in --features none" in m for m in outcomes(report, "skipped").values())


def test_a_probe_that_breaks_the_server_fails_the_feature_checks(stub, tmp_path: Path) -> None:
    url, s = stub
    # Tools off: the first probe gets its 400 and the engine dies; the audio probe then gets a 500, which must
    # not be read as "audio off".
    s.features = set()
    s.break_("dies_after_error")
    code, report = run(tmp_path, url, "--select", "forced_call")
    assert code == 1
    assert "asking the server whether it runs a feature" in outcomes(report, "failed")["tools.forced_call[named]"]


def test_auto_asks_only_vllm(stub, tmp_path: Path) -> None:
    url, s = stub
    s.features = {"tools", "audio"}
    code, report = run(tmp_path, url, "--server", "generic", "--select", "forced_call or audio")
    assert code == 0 and not outcomes(report, "passed")
    assert (
        "--features auto asks vLLM only (--server generic)"
        in outcomes(report, "skipped")["audio.clip_reaches_the_model"]
    )
    code, report = run(tmp_path, url, "--server", "generic", "--features", "tools,audio", "--select", "forced_call")
    assert code == 0 and set(outcomes(report, "passed")) == {"tools.forced_call[named]", "tools.forced_call[required]"}


@pytest.mark.parametrize("value", ["tool", "auto,tools", "", "reasoning,speech"])
def test_bad_features_option_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--base-url", "http://127.0.0.1:1", "--features", value]) == 2
    assert (
        "--features must be `auto`, `none` or a comma-separated list of tools, reasoning, audio"
        in capsys.readouterr().err
    )
