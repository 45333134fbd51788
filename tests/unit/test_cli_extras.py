"""`python -m deploy`'s table of what each extra brings agrees with pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.__main__ import COMMANDS, EXTRA_MODULES, missing_extra_message

REPO = Path(__file__).resolve().parents[2]
# Distribution name -> import name, where they differ.
IMPORT_NAME = {"pillow": "PIL", "pyyaml": "yaml"}


def extras() -> dict[str, set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = {}
    for extra, reqs in project["optional-dependencies"].items():
        names = {canonicalize_name(Requirement(r).name) for r in reqs}
        found[extra] = {IMPORT_NAME.get(n, n.replace("-", "_")) for n in names}
    return found


def test_every_extra_and_module_in_the_table_is_in_pyproject() -> None:
    declared = extras()
    for extra, modules in EXTRA_MODULES.items():
        assert extra in declared, f"{extra} is not an extra of pyproject.toml"
        assert modules <= declared[extra] | {"yaml"}, f"{extra}: {modules - declared[extra]} not in pyproject.toml"
    for _module, extra in COMMANDS.values():
        assert extra is None or extra in declared


def test_message_names_the_subcommands_own_extra_first() -> None:
    hub = ModuleNotFoundError("No module named 'huggingface_hub'", name="huggingface_hub")
    assert "install 'gemma4-serve[engines]'" in missing_extra_message("engine", hub)
    assert "install 'gemma4-serve[deploy]'" in missing_extra_message("fetch", hub)
    numpy = ModuleNotFoundError("No module named 'numpy'", name="numpy")
    assert "install 'gemma4-serve[bench]'" in missing_extra_message("quality", numpy)
