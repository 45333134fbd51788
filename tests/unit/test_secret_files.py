from __future__ import annotations

from pathlib import Path

import pytest

from deploy.launcher.secret_files import SecretFileError, load_secret_files

VALUE = "hf_UnitTestTokenValue0123456789"


def test_file_value_becomes_the_variable(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"  {VALUE}\n")
    env = {"HF_TOKEN_FILE": str(token)}
    assert load_secret_files(env) == ["HF_TOKEN"]
    assert env["HF_TOKEN"] == VALUE


def test_blank_file_means_not_set(tmp_path: Path) -> None:
    blank = tmp_path / "none"
    blank.write_text("\n")
    env = {"HF_TOKEN_FILE": str(blank), "VLLM_API_KEY_FILE": str(blank)}
    assert load_secret_files(env) == []
    assert "HF_TOKEN" not in env and "VLLM_API_KEY" not in env


def test_without_file_variables_nothing_changes() -> None:
    env = {"HF_TOKEN": VALUE, "OTHER_FILE": "/etc/passwd"}
    assert load_secret_files(env) == []
    assert env == {"HF_TOKEN": VALUE, "OTHER_FILE": "/etc/passwd"}


def test_both_set_is_an_error_that_does_not_show_the_value(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(VALUE)
    with pytest.raises(SecretFileError, match="both VLLM_API_KEY and VLLM_API_KEY_FILE") as err:
        load_secret_files({"VLLM_API_KEY": VALUE, "VLLM_API_KEY_FILE": str(token)})
    assert VALUE not in str(err.value)


def test_unreadable_file_names_the_variable_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SecretFileError) as err:
        load_secret_files({"HF_TOKEN_FILE": str(missing)})
    message = str(err.value)
    assert f"HF_TOKEN_FILE={missing}" in message and "No such file" in message and "unset it" in message
