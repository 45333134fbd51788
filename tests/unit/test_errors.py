"""Every error the bundle raises on purpose has one root, and `python -m deploy` turns it into one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import deploy
from deploy.__main__ import main
from deploy.errors import DeployError, UsageError


def deploy_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(deploy.__path__, "deploy.") if m.name != "deploy.__main__"]


def test_every_error_class_derives_from_deploy_error() -> None:
    found = {}
    for name in deploy_modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, Exception) and not cls_name.startswith("_"):
                found[f"{name}.{cls_name}"] = cls
    assert len(found) >= 16, sorted(found)  # the error classes the subpackages define
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, DeployError))
    assert not strays, f"errors outside the deploy.errors root: {strays}"


def test_exit_codes_say_whose_fault_it_was() -> None:
    assert DeployError.exit_code == 1 and UsageError.exit_code == 2
    assert issubclass(UsageError, DeployError)


def test_an_uncaught_error_is_one_line_with_its_exit_code(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import deploy.profiles.cli as profiles_cli

    def boom(_args: object) -> int:
        raise UsageError("the profile 'x' does not exist: run `python -m deploy profiles` to list them")

    monkeypatch.setattr(profiles_cli, "run", boom)
    assert main(["profiles"]) == 2
    err = capsys.readouterr().err
    assert err == "error: the profile 'x' does not exist: run `python -m deploy profiles` to list them\n"
