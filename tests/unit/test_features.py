"""Opt-in features (deploy/profiles/features): loading, merging into a profile, the launcher's fit refusal, the CLIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.__main__ import main
from deploy.launcher.gpu import GPU
from deploy.launcher.resolve import LaunchError, resolve
from deploy.planner.args import from_mapping
from deploy.planner.budget import GiB, plan
from deploy.planner.model import GemmaModel
from deploy.profiles import (
    FEATURES_DIR,
    ProfileError,
    apply_features,
    feature_summary,
    list_features,
    load_feature,
    load_profile,
    parse_features,
)

MiB = 1024**2
RTX_4060 = GPU(0, "NVIDIA GeForce RTX 4060", 8188 * MiB, 7900 * MiB, (8, 9))
L4 = GPU(0, "NVIDIA L4", 23034 * MiB, 22700 * MiB, (8, 9))


def test_the_three_features_and_their_flags() -> None:
    assert list_features() == ["audio", "reasoning", "tools"]
    assert load_feature("tools") == {"enable-auto-tool-choice": True, "tool-call-parser": "gemma4"}
    assert load_feature("reasoning") == {
        "reasoning-parser": "gemma4",
        "structured-outputs-config": {"enable_in_reasoning": True},
    }
    assert load_feature("audio") == {"limit-mm-per-prompt": {"audio": 1}}
    for name in list_features():
        assert feature_summary(name) and not feature_summary(name).startswith("Feature")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tools,reasoning", ["tools", "reasoning"]),
        (" Tools , audio ,tools", ["tools", "audio"]),
        ("audio reasoning", ["audio", "reasoning"]),
        ("", []),
        (None, []),
        ("none", []),
    ],
)
def test_parse_features(text: str | None, expected: list[str]) -> None:
    assert parse_features(text) == expected


def test_an_unknown_feature_names_the_choices() -> None:
    with pytest.raises(ProfileError, match=r"unknown feature 'tool': choose from audio, reasoning, tools"):
        parse_features("tool,audio")


def test_audio_raises_the_audio_limit_and_keeps_the_others() -> None:
    profile = {**load_profile("gpu-24gb"), "limit-mm-per-prompt": {"image": 2, "audio": 0, "video": 0}}
    merged = apply_features(profile, ["audio", "tools"])
    assert merged["limit-mm-per-prompt"] == {"image": 2, "audio": 1, "video": 0}
    assert merged["tool-call-parser"] == "gemma4"
    assert profile["limit-mm-per-prompt"]["audio"] == 0  # the profile itself is not changed
    assert apply_features({"limit-mm-per-prompt": '{"image": 1}'}, ["audio"])["limit-mm-per-prompt"] == {
        "image": 1,
        "audio": 1,
    }


def test_two_features_that_disagree_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("tool-call-parser: gemma4\nstructured-outputs-config: {x: true}\n")
    (tmp_path / "b.yaml").write_text("tool-call-parser: functiongemma\n")
    (tmp_path / "c.yaml").write_text("structured-outputs-config: {x: false}\n")
    (tmp_path / "d.yaml").write_text("structured-outputs-config: {y: true}\n")
    with pytest.raises(ProfileError, match="features a and b both set tool-call-parser"):
        apply_features({}, ["a", "b"], tmp_path)
    with pytest.raises(ProfileError, match=r"features a and c both set structured-outputs-config.x"):
        apply_features({}, ["a", "c"], tmp_path)
    assert apply_features({}, ["a", "d"], tmp_path)["structured-outputs-config"] == {"x": True, "y": True}


def test_features_are_flag_files_like_profiles(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("tool_call_parser: gemma4\n")
    with pytest.raises(ProfileError, match="flag names"):
        load_feature("bad", tmp_path)
    assert FEATURES_DIR.parent.name == "profiles"


def test_audio_costs_the_audio_tower() -> None:
    model = GemmaModel.load()
    base = load_profile("gpu-24gb")
    without = plan(model, from_mapping(base), L4.total_bytes)
    with_audio = plan(model, from_mapping(apply_features(base, ["audio"])), L4.total_bytes)
    tower = with_audio.weights_bytes - without.weights_bytes
    assert tower == model.weight_bytes()["audio_tower"]
    assert 0.55 < tower / GiB < 0.59
    assert with_audio.max_sequences_at_max_model_len < without.max_sequences_at_max_model_len
    assert apply_features(base, ["tools", "reasoning"]) != base
    tools = plan(model, from_mapping(apply_features(base, ["tools", "reasoning"])), L4.total_bytes)
    assert tools.kv_cache_budget_bytes == without.kv_cache_budget_bytes  # parsers cost no GPU memory


def test_launcher_refuses_a_feature_that_does_not_fit_and_names_what_to_drop() -> None:
    with pytest.raises(LaunchError) as refused:
        resolve({"GEMMA4_FEATURES": "tools,audio,reasoning"}, RTX_4060)
    assert refused.value.code == 1
    message = str(refused.value)
    assert "GEMMA4_FEATURES=tools,audio,reasoning do not fit NVIDIA GeForce RTX 4060" in message
    assert "Drop audio: GEMMA4_FEATURES=tools,reasoning (compose)" in message
    assert "serving.features (Helm)" in message


def test_launcher_merges_features_that_fit() -> None:
    resolved = resolve({"GEMMA4_FEATURES": "audio,tools"}, L4)
    assert resolved.features == ["audio", "tools"]
    assert resolved.config["limit-mm-per-prompt"]["audio"] == 1
    assert resolved.config["enable-auto-tool-choice"] is True
    assert resolved.plan is not None and "audio_tower" in resolved.plan.weights_by_component
    assert any(note.startswith("feature audio (GEMMA4_FEATURES):") for note in resolved.notes)
    # Tools and reasoning alone fit the 8 GB card as its profile does.
    assert resolve({"GEMMA4_FEATURES": "tools,reasoning"}, RTX_4060).config["reasoning-parser"] == "gemma4"


def test_launcher_rejects_an_unknown_feature_as_bad_input() -> None:
    with pytest.raises(LaunchError) as bad:
        resolve({"GEMMA4_FEATURES": "tools,vision"}, L4)
    assert bad.value.code == 2
    assert "GEMMA4_FEATURES: unknown feature 'vision': choose from audio, reasoning, tools" in str(bad.value)


def test_launcher_applies_features_without_a_gpu() -> None:
    resolved = resolve({"GEMMA4_PROFILE": "gpu-24gb", "GEMMA4_FEATURES": "audio"}, None)
    assert resolved.config["limit-mm-per-prompt"]["audio"] == 1 and resolved.plan is None


def test_a_text_only_profile_refuses_audio_even_without_a_gpu() -> None:
    """gpu-8gb is planned text only (language-model-only): it loads no audio tower, so audio is refused."""
    with pytest.raises(LaunchError, match="gpu-8gb is text only") as refused:
        resolve({"GEMMA4_PROFILE": "gpu-8gb", "GEMMA4_FEATURES": "audio,tools"}, None)
    assert "Drop audio: GEMMA4_FEATURES=tools (compose)" in str(refused.value)


def test_profiles_cli_lists_and_merges_features(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "features (GEMMA4_FEATURES=a,b; Helm serving.features):" in out and "  tools " in out
    assert main(["profiles", "gpu-24gb", "--features", "tools,audio", "--argv"]) == 0
    command = capsys.readouterr().out
    assert "--enable-auto-tool-choice --tool-call-parser gemma4" in command
    assert '--limit-mm-per-prompt \'{"audio": 1' in command
    assert main(["profiles", "gpu-24gb", "--features", "thinking"]) == 2
    assert "unknown feature 'thinking'" in capsys.readouterr().err


def test_fit_cli_counts_the_audio_feature(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", "--gpu-memory", "9728MiB", "--compute-capability", "8.9", "--profile", "gpu-10gb"]
    assert main(args) == 0
    assert main([*args, "--features", "audio"]) == 1
    out = capsys.readouterr().out
    assert "audio_tower" in out and "DOES NOT FIT" in out
