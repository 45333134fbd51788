"""compose's secret-reading entrypoints, run for real with /bin/sh (and setpriv) on this machine.

Compose bind-mounts a file secret with the host file's owner and mode: outside Swarm it ignores the `uid`,
`gid` and `mode` a service asks for. So a key file made the documented way (`umask 077`, owned by you) is
unreadable to a container user other than root. These tests take each script exactly as `docker compose
config` renders it, undo compose's `$$` escaping as compose does, point the secret's path at a local file
with the mode and owner a user would have, and run it. Only the program the script finally execs (the
suite, Grafana's /run.sh) is a stand-in that reports who it runs as and what it got. What needs Docker
itself (the bind mount, the images' own /bin/sh and setpriv) is left to a real `make up`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.test_compose import compose

pytestmark = pytest.mark.contract

OTHER_UID = 4242  # the host user who owns the file: neither root nor a container's user
REPORT = """#!/bin/sh
printf '{"uid": %s, "gid": %s, "groups": "%s", "key": "%s", "args": "%s"}\\n' \\
  "$(id -u)" "$(id -g)" "$(id -G)" "${SMOKE_API_KEY:-}" "$*"
"""

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="changing the user (setpriv) and owning files for another user need root"
)


@pytest.fixture(scope="module")
def entrypoints(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    env_file = tmp_path_factory.mktemp("env") / "empty.env"
    env_file.write_text("")
    proc = compose(repo, "config", "--format", "json", env_file=env_file)
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    return {name: services[name]["entrypoint"] for name in ("smoke", "grafana")}


@pytest.fixture
def world() -> Iterator[Path]:
    """A folder every user may enter (pytest's own tmp folders are root-only), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="gemma4-compose-secrets-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def secret_file(folder: Path, content: str, mode: int, owner: int) -> Path:
    path = folder / "secret"
    path.write_text(content)
    path.chmod(mode)
    os.chown(path, owner, owner)
    return path


def run_smoke_entrypoint(entrypoint: list[str], key: Path, python: Path) -> subprocess.CompletedProcess:
    """The smoke service's rendered entrypoint, as root, with its secret at ``key`` and ``python`` on PATH."""
    shell, flag, script, *args = entrypoint
    script = script.replace("$$", "$").replace("/run/secrets/vllm_api_key", str(key))
    return subprocess.run(
        [shell, flag, script, *args, "--level", "protocol"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{python.parent}:/usr/sbin:/usr/bin:/sbin:/bin"},
        check=False,
    )


def fake_program(folder: Path, name: str) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    bin_dir.chmod(0o755)
    path = bin_dir / name
    path.write_text(REPORT)
    path.chmod(0o755)
    return path


@needs_root
def test_the_smoke_service_reads_a_private_key_file_then_runs_as_its_user(
    entrypoints: dict[str, list[str]], world: Path
) -> None:
    """`make up`'s smoke step with a 0600 key file owned by the host user: the suite gets the key and runs
    as uid 10001 with no supplementary groups."""
    key = secret_file(world, "sk-smoke-0123456789\n", 0o600, OTHER_UID)
    fake = fake_program(world, "python")
    proc = run_smoke_entrypoint(entrypoints["smoke"], key, fake)
    assert proc.returncode == 0, proc.stderr
    ran = json.loads(proc.stdout)
    assert (ran["uid"], ran["gid"], ran["groups"]) == (10001, 10001, "10001")
    assert ran["key"] == "sk-smoke-0123456789"
    assert ran["args"] == "-m smoke_tests --level protocol"  # `make smoke SMOKE_ARGS=...` still reaches the suite


@needs_root
def test_the_smoke_service_runs_without_a_key_when_the_file_is_blank(
    entrypoints: dict[str, list[str]], world: Path
) -> None:
    blank = secret_file(world, "\n", 0o644, 0)
    fake = fake_program(world, "python")
    proc = run_smoke_entrypoint(entrypoints["smoke"], blank, fake)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["key"] == "" and json.loads(proc.stdout)["uid"] == 10001


def test_the_images_user_alone_cannot_read_a_private_key(world: Path) -> None:
    """Why the service starts as root: as uid 10001 (the image's user) a 0600 file of another user is
    unreadable, and that is what a bind-mounted secret is."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user")
    key = secret_file(world, "sk\n", 0o600, OTHER_UID)
    proc = subprocess.run(
        ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups", "cat", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "Permission denied" in proc.stderr


@needs_root
@pytest.mark.parametrize(
    ("content", "mode", "uid", "message"),
    [
        ("\n", 0o644, OTHER_UID, "grafana: no admin password"),
        ("s3cret-grafana\n", 0o600, OTHER_UID, "grafana: cannot read"),
    ],
)
def test_grafana_refuses_to_start_without_a_readable_password(
    entrypoints: dict[str, list[str]], world: Path, content: str, mode: int, uid: int, message: str
) -> None:
    """Run as Grafana's user (uid 472, group 0, as its image does): blank or unreadable stops it, clearly."""
    password = secret_file(world, content, mode, uid)
    fake = fake_program(world, "run.sh")
    shell, flag, script, *args = entrypoints["grafana"]
    script = script.replace("$$", "$").replace("/run/secrets/grafana_admin_password", str(password))
    script = script.replace("/run.sh", str(fake))
    proc = subprocess.run(
        ["setpriv", "--reuid=472", "--regid=0", "--clear-groups", shell, flag, script, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "GEMMA4_GRAFANA_PASSWORD_FILE" in proc.stderr
    assert not proc.stdout  # /run.sh never started


@needs_root
def test_grafana_starts_with_a_readable_password(entrypoints: dict[str, list[str]], world: Path) -> None:
    password = secret_file(world, "s3cret-grafana\n", 0o644, OTHER_UID)
    fake = fake_program(world, "run.sh")
    shell, flag, script, *args = entrypoints["grafana"]
    script = script.replace("$$", "$").replace("/run/secrets/grafana_admin_password", str(password))
    script = script.replace("/run.sh", str(fake))
    proc = subprocess.run(
        ["setpriv", "--reuid=472", "--regid=0", "--clear-groups", shell, flag, script, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["uid"] == 472  # the image's entrypoint runs, as Grafana's user


def test_the_smoke_image_ships_setpriv(repo: Path) -> None:
    """setpriv is util-linux's, an Essential package of Debian bookworm, which the smoke image is built on (a
    move to another base must bring setpriv along, or the smoke service cannot drop root)."""
    dockerfile = (repo / "docker/smoke/Dockerfile").read_text()
    assert re.search(r"(?m)^FROM python:[0-9.]+-slim-bookworm\b", dockerfile)
    assert re.search(r"(?m)^USER 10001:10001$", dockerfile)  # the user the entrypoint drops to
