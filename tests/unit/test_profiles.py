from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from deploy.__main__ import main
from deploy.profiles import (
    FEATURES_DIR,
    MODEL_ID,
    PROFILES_DIR,
    SERVED_MODEL_NAME,
    ProfileError,
    list_profiles,
    load_profile,
    to_argv,
)

REPO = Path(__file__).resolve().parents[2]

GPU_CLASSES = ("8gb", "12gb", "16gb", "24gb", "48gb", "80gb")


def test_one_profile_per_gpu_class_and_architecture() -> None:
    names = set(list_profiles())
    expected = {"default"} | {f"gpu-{c}" for c in GPU_CLASSES} | {f"gpu-{c}-ampere" for c in GPU_CLASSES}
    assert expected <= names


@pytest.mark.parametrize("name", list_profiles())
def test_profiles_serve_the_pinned_checkpoint_under_a_stable_name(name: str) -> None:
    config = load_profile(name)
    assert config["model"] == MODEL_ID
    assert config["served-model-name"] == SERVED_MODEL_NAME
    assert config["port"] == 8000


@pytest.mark.parametrize("name", [n for n in list_profiles() if n.endswith("-ampere")])
def test_ampere_profiles_do_not_ask_for_fp8_kv(name: str) -> None:
    assert load_profile(name)["kv-cache-dtype"] != "fp8"


def test_default_profile_is_the_model_card_command() -> None:
    assert load_profile("default") == {
        "model": MODEL_ID,
        "served-model-name": SERVED_MODEL_NAME,
        "port": 8000,
        "kv-cache-dtype": "fp8",
        "max-model-len": 32768,
        "gpu-memory-utilization": 0.90,
    }


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'gpu-7gb'.*gpu-8gb"):
        load_profile("gpu-7gb")


@pytest.mark.parametrize(
    ("text", "message"),
    [("[]\n", "non-empty YAML mapping"), ("max_model_len: 5\n", "flag names"), ("--port: 1\n", "flag names")],
)
def test_malformed_profile_is_rejected(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile("bad", tmp_path)


def test_to_argv_flattens_like_vllm_config_loader() -> None:
    argv = to_argv({"a": True, "b": False, "c": [1, 2], "d": {"image": 1}, "e": 0.5, "f": []})
    assert argv == ["--a", "--c", "1", "2", "--d", '{"image": 1}', "--e", "0.5"]


def test_cli_lists_and_shows_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    assert "gpu-8gb" in capsys.readouterr().out.split()
    assert main(["profiles", "default", "--argv"]) == 0
    assert "--kv-cache-dtype fp8" in capsys.readouterr().out
    assert main(["profiles", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


GUARD_PATH = re.compile(r"tests/\w+/test_\w+\.py")
# A test file guards a profile when it names it, or walks every profile (or every feature) of the directory.
EVERY_PROFILE = ("list_profiles(", "selected_profiles(", "PROFILES_DIR", "deploy/profiles")
EVERY_FEATURE = ("list_features(", "FEATURES_DIR", "deploy/profiles/features")
PROFILE_FILES = sorted(PROFILES_DIR.glob("*.yaml")) + sorted(FEATURES_DIR.glob("*.yaml"))


def header(path: Path) -> str:
    """The leading block of comment lines."""
    return "".join(itertools.takewhile(lambda line: line.startswith("#"), path.read_text().splitlines(keepends=True)))


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.relative_to(PROFILES_DIR).as_posix())
def test_each_profile_header_names_the_tests_that_guard_it(path: Path) -> None:
    named = GUARD_PATH.findall(header(path))
    assert len(named) >= 2, f"{path.name}: its header names {named}; name the test files that guard it"
    covers = EVERY_FEATURE if path.parent == FEATURES_DIR else EVERY_PROFILE
    for test in named:
        test_file = REPO / test
        assert test_file.is_file(), f"{path.name} names {test}, which does not exist"
        text = test_file.read_text()
        mentions = f'"{path.stem}"' in text or f"{path.stem}.yaml" in text or any(c in text for c in covers)
        assert mentions, f"{path.name} names {test}, which neither names {path.stem!r} nor walks every profile"
