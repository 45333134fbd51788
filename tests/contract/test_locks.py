"""The locked toolchain: one lock per environment, each the full closure with hashes, fresh against its input.

`make lock` (scripts/lock.sh, uv) writes requirements/NAME.txt from requirements/NAME.in; scripts/bootstrap.sh
installs each venv from its lock alone, and the image Dockerfiles install from theirs. These tests fail when a
lock is stale, incomplete or unhashed, when an image lock drifts from the versions the tests run with, and when
the test runner's own venv holds anything but its lock.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.contract.test_dockerfiles import stages
from tests.fixtures.locks import input_requirements, read_lock

pytestmark = pytest.mark.contract

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import lock_inputs  # noqa: E402  (scripts/ is not a package: the lock script and these tests share it)

NAMES = lock_inputs.lock_names()
# Locks whose image installs them: every package must be the version the dev venv (the tests) runs.
IMAGE_LOCKS = {"smoke": "docker/smoke/Dockerfile", "fetch": "docker/fetch/Dockerfile"}


def test_every_environment_has_an_input_and_a_lock() -> None:
    assert {"dev", "smoke", "fetch", "scan", "vllm-cpu", "sglang", "llamacpp-src"} <= set(NAMES)
    for name in NAMES:
        assert (REPO / f"requirements/{name}.txt").is_file(), f"requirements/{name}.in has no lock: run `make lock`"
    stray = {p.stem for p in (REPO / "requirements").glob("*.txt")} - set(NAMES) - {"uv"}
    assert not stray, f"requirements/{sorted(stray)} have no .in file: a lock must be generated, not hand-written"


@pytest.mark.parametrize("name", NAMES)
def test_lock_is_fresh_against_its_inputs(name: str) -> None:
    lock = read_lock(REPO / f"requirements/{name}.txt")
    inputs = ", ".join([f"requirements/{name}.in", *lock_inputs.extra_inputs(name)])
    assert lock.fingerprint == lock_inputs.fingerprint(name), f"{inputs} changed since the lock: run `make lock`"


@pytest.mark.parametrize("name", NAMES)
def test_lock_pins_every_package_with_hashes(name: str) -> None:
    lock = read_lock(REPO / f"requirements/{name}.txt")
    assert lock.versions, "an empty lock"
    assert not lock.unpinned, f"lines that are not name==version: {lock.unpinned}"
    unhashed = [pkg for pkg, hashes in lock.hashes.items() if not hashes]
    assert not unhashed, f"packages without --hash: {unhashed}"


@pytest.mark.parametrize("name", NAMES)
def test_lock_satisfies_its_input(name: str) -> None:
    lock = read_lock(REPO / f"requirements/{name}.txt")
    for req in input_requirements(REPO / f"requirements/{name}.in"):
        pinned = lock.versions.get(canonicalize_name(req.name))
        assert pinned is not None, f"{req} is in {name}.in but not in its lock"
        assert req.specifier.contains(pinned, prereleases=True), f"{req} vs locked {pinned}"


def test_uv_itself_is_pinned_by_hash() -> None:
    lock = read_lock(REPO / "requirements/uv.txt")
    assert list(lock.versions) == ["uv"] and lock.hashes["uv"]


@pytest.mark.parametrize("name", sorted(IMAGE_LOCKS))
def test_image_locks_hold_what_the_tests_ran_with(name: str) -> None:
    image = read_lock(REPO / f"requirements/{name}.txt")
    dev = read_lock(REPO / "requirements/dev.txt")
    assert not {"torch", "transformers", "vllm"} & set(image.versions), "the small images carry no torch"
    drift = {pkg: (v, dev.versions.get(pkg)) for pkg, v in image.versions.items() if dev.versions.get(pkg) != v}
    assert not drift, f"requirements/{name}.txt differs from the dev lock (image, dev): {drift}; run `make lock`"


@pytest.mark.parametrize(("name", "dockerfile"), sorted(IMAGE_LOCKS.items()))
def test_images_install_their_lock_alone(name: str, dockerfile: str) -> None:
    [stage] = stages(REPO / dockerfile)[1]
    copied = f"requirements/{name}.txt /tmp/{name}-requirements.txt"
    assert copied in stage.values("COPY")
    [run] = [r for r in stage.values("RUN") if f"/tmp/{name}-requirements.txt" in r]
    for flag in ("--no-deps", "--require-hashes", f"-r /tmp/{name}-requirements.txt", "&& pip check"):
        assert flag in run, f"{dockerfile} RUN lacks {flag}"


def test_both_small_images_share_the_locks_python() -> None:
    # The locks are compiled for CPython 3.11 (scripts/lock.sh); an image on another Python would install
    # wheels nobody tested.
    for dockerfile in IMAGE_LOCKS.values():
        [stage] = stages(REPO / dockerfile)[1]
        assert stage.source.startswith("python:3.11."), f"{dockerfile}: {stage.source}"


def test_the_test_runner_holds_exactly_its_lock() -> None:
    """The venv running these tests was installed from requirements/dev.txt alone (uv pip sync)."""
    lock = read_lock(REPO / "requirements/dev.txt")
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]  # a half-removed dist-info has no name
    }
    assert installed == lock.versions, {
        "not in the lock": sorted(set(installed) - set(lock.versions)),
        "missing": sorted(set(lock.versions) - set(installed)),
        "other version": sorted(k for k in set(installed) & set(lock.versions) if installed[k] != lock.versions[k]),
    }


def test_npm_lock_matches_its_manifest() -> None:
    manifest = json.loads((REPO / "requirements/npm/package.json").read_text())
    lock = json.loads((REPO / "requirements/npm/package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"], "run `make lock`"
    for path, pkg in lock["packages"].items():
        if path:
            assert pkg.get("integrity", "").startswith("sha512-"), f"{path} has no integrity hash"


@pytest.mark.parametrize(("name", "extras"), [("smoke", ()), ("fetch", ("engines",))])
def test_image_locks_cover_the_dependencies_they_serve(name: str, extras: tuple[str, ...]) -> None:
    """The smoke image runs the base install; the fetch image the base install plus the engines extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(r for e in extras for r in project["optional-dependencies"][e])]
    lock = read_lock(REPO / f"requirements/{name}.txt")
    for req in map(Requirement, wanted):
        pinned = lock.versions.get(canonicalize_name(req.name))
        assert pinned is not None, (
            f"requirements/{name}.in lacks {req.name} (pyproject.toml needs it): add it, `make lock`"
        )
        assert req.specifier.contains(pinned, prereleases=True), f"{req} vs locked {pinned}"
