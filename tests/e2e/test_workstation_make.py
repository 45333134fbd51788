"""`make up / doctor / down / ps / logs / smoke / images` with a fake `docker` on PATH that records every call.

This proves the scripts' logic, not Docker's (tests/e2e/test_compose_real.py runs the real thing): the order
preflight -> build -> GPU probe -> prefetch -> up -> wait healthy -> smoke, that every failure stops `make up`
with a reason of its own, every verdict of the preflight checks (`make doctor`), one fake per missing piece,
and which compose commands the other targets run. `compose config` is the real compose binary (the dev venv's),
so the preflight reads the configuration compose really renders.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import free_port

VLLM_IMAGE = "ghcr.io/gemma4-serve/vllm:0.1.0"
CACHE_VOLUME = "gemma4-serve_hf-cache"
UNSET = "<unset>"

# Behaviour is chosen through FAKE_* variables; each call is appended to $FAKE_LOG as one line.
FAKE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_LOG"
# FAKE_WATCH: a folder whose existence each call records (did the script create it before Docker ran?).
if [[ -n "${FAKE_WATCH:-}" ]]; then
  if [[ -d "$FAKE_WATCH" ]]; then echo "watch: exists"; else echo "watch: missing"; fi >> "$FAKE_LOG"
fi
case "$*" in
  "version --format {{.Server.Version}}")
    case "${FAKE_DAEMON:-ok}" in
      ok) echo "27.5.1" ;;
      down) echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
        exit 1 ;;
      denied)
        echo "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock:" \
          "Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.47/version\": dial unix /var/run/docker.sock:" \
          "connect: permission denied" >&2
        exit 1 ;;
      *) echo "error during connect: $FAKE_DAEMON" >&2; exit 1 ;;
    esac ;;
  "compose version --short")
    case "${FAKE_COMPOSE:-2.40.0}" in
      missing) echo "docker: 'compose' is not a docker command." >&2; exit 1 ;;
      *) echo "${FAKE_COMPOSE:-2.40.0}" ;;
    esac ;;
  # The real compose renders the configuration: the preflight reads what compose really produces.
  "compose config"*) shift; exec docker-compose "$@" ;;
  "buildx version")
    [[ -n "${FAKE_BUILDX:-}" ]] || { echo "docker: 'buildx' is not a docker command." >&2; exit 1; }
    echo "github.com/docker/buildx v0.19.3 48d6a39" ;;
  "info --format {{json .Runtimes}}")
    if [[ -n "${FAKE_NVIDIA_RUNTIME:-}" ]]; then echo '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{}}'
    else echo '{"runc":{"path":"runc"}}'; fi ;;
  "info --format {{range .CDISpecDirs}}{{.}} {{end}}") echo "${FAKE_CDI_DIRS:-$FAKE_ROOT/no-cdi}" ;;
  "info --format {{.DockerRootDir}}") echo "$FAKE_ROOT" ;;
  "image inspect "*) [[ " ${FAKE_IMAGES:-} " == *" $3 "* ]] || exit 1 ;;
  "volume inspect "*) [[ " ${FAKE_VOLUMES:-} " == *" $3 "* ]] || exit 1 ;;
  "compose run --rm --no-deps --entrypoint nvidia-smi vllm -L")
    case "${FAKE_GPU:-ok}" in
      ok) echo "GPU 0: NVIDIA L4 (UUID: GPU-5a5e0d7c-7d8f-4f4a-8d5e-1a2b3c4d5e6f)" ;;
      driver) echo 'Error response from daemon: could not select device driver "nvidia" with capabilities: [[gpu]]' >&2
        exit 125 ;;
      device) echo "nvidia-container-cli: device error: 3: unknown device: unknown" >&2; exit 125 ;;
      mismatch) echo "nvidia-container-cli: initialization error: nvml error: driver/library version mismatch" >&2
        exit 125 ;;
      nvml) echo "nvidia-container-cli: initialization error: nvml error: driver not loaded" >&2; exit 125 ;;
      *) echo "Error response from daemon: $FAKE_GPU" >&2; exit 125 ;;
    esac ;;
  "compose run --rm prefetch") exit "${FAKE_PREFETCH_RC:-0}" ;;
  "compose up --detach") exit "${FAKE_UP_RC:-0}" ;;
  "compose ps --all --quiet vllm") echo "c0ffee" ;;
  "inspect --format "*" c0ffee")
    # Pop the next state; the last one repeats.
    if (( $(wc -l < "$FAKE_STATES") > 1 )); then head -n 1 "$FAKE_STATES"; sed -i 1d "$FAKE_STATES"
    else cat "$FAKE_STATES"; fi ;;
  "compose logs"*) echo "INFO vllm log line" ;;
  "compose --profile smoke run --rm --no-deps"*smoke*) exit "${FAKE_SMOKE_RC:-0}" ;;
  "compose port vllm 8000") echo "${FAKE_VLLM_ADDRESS:-127.0.0.1:8000}" ;;
  "compose port grafana 3000") exit 1 ;;
  *build*|*push*)
    images="GEMMA4_VLLM_IMAGE=${GEMMA4_VLLM_IMAGE:-} GEMMA4_SMOKE_IMAGE=${GEMMA4_SMOKE_IMAGE:-}"
    echo "$images GEMMA4_FETCH_IMAGE=${GEMMA4_FETCH_IMAGE:-}" >> "$FAKE_LOG"
    [[ -z "${FAKE_BUILD_ERROR:-}" ]] || { echo "$FAKE_BUILD_ERROR" >&2; exit 1; } ;;
esac
exit 0
"""

# `df -Pk PATH` with a chosen free space (KiB) when FAKE_DF_KB is set; the real df otherwise.
FAKE_DF = """#!/usr/bin/env bash
if [[ -z "${FAKE_DF_KB:-}" ]]; then exec REAL_DF "$@"; fi
echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
echo "/dev/fake 500000000 1 $FAKE_DF_KB 1% /"
"""


class Fake:
    """A PATH with the fake docker (and df) first, and what it recorded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "docker").write_text(FAKE_DOCKER)
        (self.bin / "df").write_text(FAKE_DF.replace("REAL_DF", shutil.which("df") or "/bin/df"))
        for tool in ("docker", "df"):
            (self.bin / tool).chmod(0o755)
        self.data_root = root / "docker-root"
        self.data_root.mkdir()
        self.log = root / "calls.log"
        self.log.write_text("")
        self.states = root / "states"

    def env(self, **env: str) -> dict[str, str]:
        """The environment of one run: a clean shell, the fakes first, a machine where everything is ready.

        A variable given as UNSET is left out (so that .env, not the shell, decides it).
        """
        clean = {k: v for k, v in os.environ.items() if not k.startswith(self.OURS)}
        full = {
            **clean,
            "PATH": f"{self.bin}:{clean['PATH']}",
            "FAKE_LOG": str(self.log),
            "FAKE_STATES": str(self.states),
            "FAKE_ROOT": str(self.data_root),
            "FAKE_NVIDIA_RUNTIME": "1",
            "FAKE_IMAGES": VLLM_IMAGE,
            "FAKE_VOLUMES": CACHE_VOLUME,
            # A port nothing listens on, so a server on 8000 elsewhere on this machine cannot interfere.
            "GEMMA4_PORT": str(free_port()),
            "GEMMA4_UP_POLL": "0.05",
            **env,
        }
        return {k: v for k, v in full.items() if v != UNSET}

    OURS = ("GEMMA4_", "COMPOSE", "REGISTRY", "FAKE_", "HF_", "VLLM_", "DOCKER_")

    def make(self, repo: Path, target: str, states: list[str] | None = None, **env: str) -> subprocess.CompletedProcess:
        self.states.write_text("\n".join(states or ["running 0 healthy"]) + "\n")
        return subprocess.run(
            [shutil.which("make") or "make", "-s", "-C", str(repo), target],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def index(calls: list[str], prefix: str) -> int:
    matches = [i for i, c in enumerate(calls) if c.startswith(prefix)]
    assert matches, f"no call starting with {prefix!r} in {calls}"
    return matches[0]


def test_up_runs_preflight_build_gpu_prefetch_up_wait_smoke_in_order(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", states=["running 0 starting", "running 0 starting", "running 0 healthy"])
    assert proc.returncode == 0, proc.stderr
    calls = fake.calls()
    preflight = index(calls, "version --format")
    build = index(calls, "compose --profile smoke build vllm smoke")
    gpu = index(calls, "compose run --rm --no-deps --entrypoint nvidia-smi vllm -L")
    prefetch = index(calls, "compose run --rm prefetch")
    up = index(calls, "compose up --detach")
    smoke = index(calls, "compose --profile smoke run --rm --no-deps smoke")
    inspects = [i for i, c in enumerate(calls) if c.startswith("inspect ")]
    assert preflight < build < gpu < prefetch < up < inspects[0] and len(inspects) == 3 and inspects[-1] < smoke
    # Building is a step of its own: neither the prefetch nor the smoke run builds.
    assert [c for c in calls if "build" in c.split()] == ["compose --profile smoke build vllm smoke"]
    for title in ("1/7 preflight", "2/7 building images", "3/7 GPU", "4/7 downloading the checkpoint", "7/7 smoke"):
        assert title in proc.stdout
    assert "gemma4-serve is up and passed its smoke test" in proc.stdout
    assert (
        "http://127.0.0.1:8000/v1" in proc.stdout and "curl -s http://127.0.0.1:8000/v1/chat/completions" in proc.stdout
    )


def test_up_stops_when_prefetch_fails(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_PREFETCH_RC="3")
    assert proc.returncode != 0
    assert "downloading the checkpoint failed" in proc.stderr and "HF_TOKEN_FILE" in proc.stderr
    assert not [c for c in fake.calls() if c.startswith(("compose up", "compose --profile smoke run"))]


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (
            "the classic builder doesn't support secrets; building with BuildKit requires the buildx Docker CLI plugin",
            "install the buildx plugin",
        ),
        ("failed to register layer: write /usr/lib/x.so: no space left on device", "the disk is full"),
        ("pull access denied for vllm/vllm-openai, repository does not exist", "cannot find a base image"),
        ("Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io: no such host", "cannot reach"),
        ("The command '/bin/sh -c pip install' returned a non-zero code: 1", "the builder's error is above"),
    ],
)
def test_a_failed_build_is_reported_as_a_build_failure(repo: Path, fake: Fake, error: str, cause: str) -> None:
    """The issue-22 defect: a build error read as a token problem. Now the build step names its own cause."""
    proc = fake.make(repo, "up", FAKE_BUILD_ERROR=error)
    assert proc.returncode != 0
    assert "building the images failed" in proc.stderr and cause in proc.stderr
    assert "not a token or checkpoint problem" in proc.stderr
    assert "HF_TOKEN_FILE" not in proc.stderr and "prefetch" not in proc.stderr
    assert error in proc.stdout  # the builder's own output reached the terminal
    assert not [c for c in fake.calls() if c.startswith(("compose run", "compose up"))]


def test_up_stops_when_the_gpu_probe_fails_after_the_build(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_GPU="driver")
    assert proc.returncode != 0
    assert "could not select device driver" in proc.stdout and "the GPU check failed" in proc.stderr
    calls = fake.calls()
    assert index(calls, "compose --profile smoke build") < index(calls, "compose run --rm --no-deps --entrypoint")
    assert not [c for c in calls if c.startswith(("compose run --rm prefetch", "compose up"))]


def test_up_stops_at_the_preflight_before_building(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_NVIDIA_RUNTIME="")
    assert proc.returncode != 0
    assert "FAIL  nvidia" in proc.stdout and "preflight failed" in proc.stderr
    assert not [c for c in fake.calls() if "build" in c.split() or c.startswith(("compose run", "compose up"))]


def test_up_stops_when_compose_up_fails(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_UP_RC="1")
    assert proc.returncode != 0 and "NVIDIA Container" in proc.stderr
    assert not [c for c in fake.calls() if c.startswith(("inspect", "compose --profile smoke run"))]


@pytest.mark.parametrize(
    ("states", "reason"),
    [
        (["running 0 starting", "running 0 unhealthy"], "healthcheck reports unhealthy"),
        (["running 0 starting", "running 1 starting"], "Docker restarted it"),
        (["exited 0 unhealthy"], "vLLM is 'exited'"),
    ],
)
def test_up_stops_with_the_log_when_vllm_does_not_become_healthy(
    repo: Path, fake: Fake, states: list[str], reason: str
) -> None:
    proc = fake.make(repo, "up", states=states)
    assert proc.returncode != 0
    assert reason in proc.stderr and "INFO vllm log line" in proc.stderr and "docs/troubleshooting.md" in proc.stderr
    assert "compose logs --no-log-prefix --tail 60 vllm" in fake.calls()
    assert not [c for c in fake.calls() if c.startswith("compose --profile smoke run")]


def test_up_counts_only_new_restarts(repo: Path, fake: Fake) -> None:
    """A container kept from an earlier run that once restarted is not a failure."""
    proc = fake.make(repo, "up", states=["running 2 starting", "running 2 healthy"])
    assert proc.returncode == 0, proc.stderr


def test_up_gives_up_at_the_deadline(repo: Path, fake: Fake) -> None:
    started = time.monotonic()
    proc = fake.make(repo, "up", states=["running 0 starting"], GEMMA4_UP_TIMEOUT="1")
    assert proc.returncode != 0 and "still not healthy after 1s" in proc.stderr
    assert time.monotonic() - started < 30


def test_up_reports_a_failed_smoke_suite(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_SMOKE_RC="1")
    assert proc.returncode != 0 and "smoke suite failed" in proc.stderr
    assert "is up and passed" not in proc.stdout


def test_up_without_build_uses_existing_images(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", GEMMA4_BUILD="0")
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in fake.calls() if "build" in c.split() or "--build" in c]
    assert "building images: skipped" in proc.stdout


def test_up_warns_when_the_api_is_exposed(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_VLLM_ADDRESS="0.0.0.0:8000")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "VLLM_API_KEY_FILE" in proc.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GEMMA4_UP_TIMEOUT": "soon"}, "GEMMA4_UP_TIMEOUT must be a whole number"),
        ({"GEMMA4_BUILD": "yes"}, "GEMMA4_BUILD must be 1"),
    ],
)
def test_up_rejects_bad_settings_before_doing_anything(
    repo: Path, fake: Fake, env: dict[str, str], message: str
) -> None:
    proc = fake.make(repo, "up", **env)
    assert proc.returncode != 0 and message in proc.stderr
    assert fake.calls() == []


# ---- preflight (`make doctor`, step 1 of `make up`): every verdict, one fake per missing piece ------------


def verdicts(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """check name -> the whole line(s) it printed (a FAIL line and its fix line together)."""
    seen: dict[str, str] = {}
    last = ""
    for line in proc.stdout.splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) >= 2 and fields[0] in ("ok", "FAIL", "--"):
            last = fields[1]
            seen[last] = seen.get(last, "") + line.strip()
        elif line.strip().startswith("fix:") and last:
            seen[last] += " | " + line.strip()
    return seen


def test_doctor_prints_every_check_with_its_verdict(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = verdicts(proc)
    assert list(checks) == ["docker", "compose", "settings", "buildx", "nvidia", "gpu", "disk", "port", "secrets"]
    assert all(line.startswith("ok ") for line in checks.values()), checks
    assert "Docker Engine 27.5.1" in checks["docker"] and "Docker Compose 2.40.0" in checks["compose"]
    assert "GEMMA4_PROFILE=auto" in checks["settings"]
    assert "not needed" in checks["buildx"] and "classic builder" in checks["buildx"]
    assert "GPU 0: NVIDIA L4" in checks["gpu"]
    assert "already here" in checks["disk"]
    assert "is free" in checks["port"]
    # Nothing is built, pulled or started by the checks (the GPU probe's container is removed: --rm).
    assert not [c for c in fake.calls() if "build" in c.split() or c.startswith(("compose up", "pull"))]


@pytest.mark.parametrize(
    ("env", "check", "cause", "fix"),
    [
        ({"FAKE_DAEMON": "down"}, "docker", "daemon is not running", "systemctl enable --now docker"),
        ({"FAKE_DAEMON": "denied"}, "docker", "permission denied", "usermod -aG docker"),
        ({"FAKE_DAEMON": "EOF"}, "docker", "does not answer: error during connect: EOF", "journalctl -u docker"),
        ({"FAKE_COMPOSE": "missing"}, "compose", "Compose v2 is not installed", "docker-compose-plugin"),
        ({"FAKE_COMPOSE": "1.29.2"}, "compose", "1.29.2 is version 1", "docker-compose-v2"),
        (
            {"FAKE_NVIDIA_RUNTIME": ""},
            "nvidia",
            "no way to give containers an NVIDIA GPU",
            "nvidia-ctk runtime configure",
        ),
        ({"FAKE_GPU": "driver"}, "gpu", 'could not select device driver "nvidia"', "NVIDIA Container Toolkit"),
        ({"FAKE_GPU": "device", "GEMMA4_GPU": "3"}, "gpu", "GEMMA4_GPU=3 names no GPU", "nvidia-smi -L"),
        ({"FAKE_GPU": "mismatch"}, "gpu", "driver and its libraries differ", "reboot"),
        ({"FAKE_GPU": "nvml"}, "gpu", "driver does not answer", "nvidia-smi must work on the host"),
        ({"FAKE_GPU": "OCI runtime create failed"}, "gpu", "OCI runtime create failed", "--entrypoint nvidia-smi"),
        ({"FAKE_IMAGES": "", "FAKE_DF_KB": "5000000"}, "disk", "only 5 GB free", "docker system prune"),
        ({"FAKE_VOLUMES": "", "FAKE_DF_KB": "5000000"}, "disk", "needs about 8 GB there: checkpoint 8 GB", "data-root"),
    ],
)
def test_doctor_names_the_cause_and_the_fix(
    repo: Path, fake: Fake, env: dict[str, str], check: str, cause: str, fix: str
) -> None:
    proc = fake.make(repo, "doctor", **env)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    line = verdicts(proc)[check]
    assert line.startswith("FAIL") and cause in line and "fix:" in line and fix in line, line
    assert "`make doctor` repeats the checks" in proc.stderr


def test_doctor_stops_after_the_daemon_when_it_cannot_reach_it(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "doctor", FAKE_DAEMON="down")
    assert list(verdicts(proc)) == ["docker"]
    assert fake.calls() == ["version --format {{.Server.Version}}"]


def test_doctor_without_the_docker_command(repo: Path, tmp_path: Path) -> None:
    """PATH holds only what the script needs before its first check: bash's helpers, no docker at all."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("dirname", "timeout"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    proc = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(repo / "scripts" / "preflight.sh")],
        env={"PATH": str(bare), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    line = verdicts(proc)["docker"]
    assert "the docker command is not installed" in line and "apt install docker.io" in line


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"FAKE_NVIDIA_RUNTIME": "1"}, "the nvidia runtime is registered"),
        ({"FAKE_NVIDIA_RUNTIME": "", "FAKE_HOOK": "1"}, "nvidia-container-runtime-hook is installed"),
        ({"FAKE_NVIDIA_RUNTIME": "", "FAKE_CDI": "1"}, "a CDI spec for NVIDIA GPUs"),
    ],
)
def test_doctor_finds_each_way_docker_gives_a_gpu(repo: Path, fake: Fake, env: dict[str, str], ok: str) -> None:
    if env.pop("FAKE_HOOK", ""):
        hook = fake.bin / "nvidia-container-runtime-hook"
        hook.write_text("#!/bin/sh\n")
        hook.chmod(0o755)
    if env.pop("FAKE_CDI", ""):
        cdi = fake.root / "cdi"
        cdi.mkdir()
        (cdi / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
        env["FAKE_CDI_DIRS"] = str(cdi)
    proc = fake.make(repo, "doctor", **env)
    assert proc.returncode == 0, proc.stdout
    assert ok in verdicts(proc)["nvidia"]


@pytest.fixture
def no_gpu_override(tmp_path: Path, repo: Path) -> str:
    """COMPOSE_FILE with an override that drops the GPU reservation (as the real-Docker test's override does)."""
    override = tmp_path / "no-gpu.yaml"
    override.write_text("services:\n  vllm:\n    deploy:\n      resources:\n        reservations: !reset {}\n")
    return f"{repo / 'compose.yaml'}:{override}"


def test_doctor_skips_the_gpu_checks_when_no_service_reserves_a_gpu(
    repo: Path, fake: Fake, no_gpu_override: str
) -> None:
    proc = fake.make(repo, "doctor", COMPOSE_FILE=no_gpu_override, FAKE_NVIDIA_RUNTIME="")
    assert proc.returncode == 0, proc.stdout
    checks = verdicts(proc)
    assert checks["nvidia"].startswith("--") and "not needed" in checks["nvidia"]
    assert checks["gpu"].startswith("--") and "not needed" in checks["gpu"]
    assert not [c for c in fake.calls() if "nvidia-smi" in c]


def test_doctor_probes_the_gpu_only_when_the_image_exists(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "doctor", FAKE_IMAGES="")
    checks = verdicts(proc)
    assert checks["gpu"].startswith("--") and "make up` probes right after building it" in checks["gpu"]
    assert not [c for c in fake.calls() if "nvidia-smi" in c]


def test_doctor_says_buildx_is_there_when_it_is(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "doctor", FAKE_BUILDX="1")
    assert "github.com/docker/buildx v0.19.3: BuildKit builds" in verdicts(proc)["buildx"]


def test_doctor_counts_only_the_disk_still_needed(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "doctor", FAKE_IMAGES="", FAKE_VOLUMES="", FAKE_DF_KB="30000000")
    line = verdicts(proc)["disk"]
    assert (
        line.startswith("ok") and "30 GB free" in line and "needs about 20 GB: images 12 GB + checkpoint 8 GB" in line
    )


@pytest.mark.parametrize(
    ("variable", "value", "cause"),
    [
        ("GEMMA4_PORT", "80x", "GEMMA4_PORT='80x' (from your shell) is not a port number"),
        ("GEMMA4_GRAFANA_PORT", "70000", "GEMMA4_GRAFANA_PORT='70000' (from your shell) is not a port number"),
        ("GEMMA4_BIND_ADDRESS", "localhost", "GEMMA4_BIND_ADDRESS='localhost' (from your shell) is not an IP address"),
        ("GEMMA4_SHM_SIZE", "lots", "GEMMA4_SHM_SIZE='lots' (from your shell) is not a size"),
        ("GEMMA4_GPU", "first", "GEMMA4_GPU='first' (from your shell) is neither a GPU index nor a UUID"),
        ("GEMMA4_PROFILE", "gpu-99gb", "GEMMA4_PROFILE='gpu-99gb' (from your shell) is not a profile"),
        ("VLLM_ENGINE_READY_TIMEOUT_S", "10m", "VLLM_ENGINE_READY_TIMEOUT_S='10m' (from your shell) is not a whole"),
    ],
)
def test_doctor_names_the_wrong_variable(repo: Path, fake: Fake, variable: str, value: str, cause: str) -> None:
    """compose's own messages name the value ("invalid hostPort: 80x"), never the variable: the preflight does."""
    proc = fake.make(repo, "doctor", **{variable: value})
    assert proc.returncode != 0
    line = verdicts(proc)["settings"]
    assert line.startswith("FAIL") and cause in line and "fix:" in line


def test_doctor_reports_what_compose_cannot_render(repo: Path, fake: Fake, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("services:\n  vllm:\n    healthcheck:\n      interval: soon\n")
    proc = fake.make(repo, "doctor", COMPOSE_FILE=f"{repo / 'compose.yaml'}:{broken}")
    line = verdicts(proc)["settings"]
    assert line.startswith("FAIL") and "compose cannot read compose.yaml with your settings" in line and "soon" in line


def test_doctor_reads_dotenv_like_compose(repo: Path, fake: Fake, tmp_path: Path) -> None:
    """A value from .env is checked and named with its origin; the shell still wins over .env."""
    copy = tmp_path / "checkout"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git", "__pycache__", ".env", "reports"))
    (copy / ".env").write_text('# comment\nexport GEMMA4_PORT="9x" # inline comment\nGEMMA4_PROFILE=gpu-24gb\n')
    proc = fake.make(copy, "doctor", GEMMA4_PORT=UNSET)
    assert "GEMMA4_PORT='9x' (from .env) is not a port number" in verdicts(proc)["settings"]
    env = fake.env()
    proc = fake.make(copy, "doctor", GEMMA4_PORT=env["GEMMA4_PORT"])
    assert proc.returncode == 0, proc.stdout
    assert "GEMMA4_PROFILE=gpu-24gb" in verdicts(proc)["settings"]


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 some other program holds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_doctor_finds_the_port_taken(repo: Path, fake: Fake, listener: int) -> None:
    proc = fake.make(repo, "doctor", GEMMA4_PORT=str(listener))
    line = verdicts(proc)["port"]
    assert line.startswith("FAIL") and f"127.0.0.1:{listener} is already in use" in line and "GEMMA4_PORT=" in line


def test_doctor_accepts_the_port_held_by_its_own_vllm(repo: Path, fake: Fake, listener: int) -> None:
    proc = fake.make(repo, "doctor", GEMMA4_PORT=str(listener), FAKE_VLLM_ADDRESS=f"127.0.0.1:{listener}")
    assert proc.returncode == 0, proc.stdout
    assert "this deployment's own vllm" in verdicts(proc)["port"]


def test_doctor_accepts_a_private_api_key_file(repo: Path, fake: Fake, tmp_path: Path) -> None:
    """vllm reads the key as root, and smoke reads it as root before it drops to uid 10001: 0600 is fine."""
    key = tmp_path / "api-key"
    key.write_text("sk-test-not-a-real-key\n")
    key.chmod(0o600)
    proc = fake.make(repo, "doctor", VLLM_API_KEY_FILE=str(key))
    assert proc.returncode == 0, proc.stdout
    assert "VLLM_API_KEY_FILE readable" in verdicts(proc)["secrets"]
    assert "sk-test-not-a-real-key" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("mode", "content", "ok", "cause"),
    [
        (0o600, "s3cret\n", False, "cannot be read by its container's user, uid 472"),
        (0o644, "s3cret\n", True, "GEMMA4_GRAFANA_PASSWORD_FILE readable"),
        (0o644, "\n", False, "is blank: Grafana refuses to start"),
        (None, "", False, "GEMMA4_GRAFANA_PASSWORD_FILE is unset"),
    ],
)
def test_doctor_checks_grafanas_password_file_with_the_monitoring_profile(
    repo: Path, fake: Fake, tmp_path: Path, mode: int | None, content: str, ok: bool, cause: str
) -> None:
    env = {"COMPOSE_PROFILES": "monitoring"}
    if mode is not None:
        password = tmp_path / "grafana-password"
        password.write_text(content)
        password.chmod(mode)
        env["GEMMA4_GRAFANA_PASSWORD_FILE"] = str(password)
    proc = fake.make(repo, "doctor", **env)
    line = verdicts(proc)["secrets"]
    assert line.startswith("ok" if ok else "FAIL") and cause in line, line
    if mode == 0o600:
        assert f"chmod 0700 {tmp_path} && chmod 0644 {password}" in line and "setfacl -m u:472:r" in line
    # Without the profile, Grafana's password is not asked for.
    assert "GEMMA4_GRAFANA" not in verdicts(fake.make(repo, "doctor"))["secrets"]


def test_doctor_accepts_an_acl_for_grafanas_user(repo: Path, fake: Fake, tmp_path: Path) -> None:
    setfacl = shutil.which("setfacl")
    if setfacl is None or shutil.which("getfacl") is None:
        pytest.skip("setfacl/getfacl are not installed here (Debian: apt install acl)")
    password = tmp_path / "grafana-password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    subprocess.run([setfacl, "-m", "u:472:r", str(password)], check=True)
    proc = fake.make(repo, "doctor", COMPOSE_PROFILES="monitoring", GEMMA4_GRAFANA_PASSWORD_FILE=str(password))
    assert verdicts(proc)["secrets"].startswith("ok")


@pytest.mark.parametrize(("kind", "cause"), [("missing", "does not exist"), ("folder", "is not a file")])
def test_doctor_checks_that_secret_files_exist(repo: Path, fake: Fake, tmp_path: Path, kind: str, cause: str) -> None:
    path = tmp_path / "token"
    if kind == "folder":
        path.mkdir()
    proc = fake.make(repo, "doctor", HF_TOKEN_FILE=str(path))
    line = verdicts(proc)["secrets"]
    assert line.startswith("FAIL") and f"HF_TOKEN_FILE={path} {cause}" in line


def test_images_baked_needs_buildkit_and_says_so_before_building(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "images-baked")
    assert proc.returncode != 0
    line = verdicts(proc)["buildx"]
    assert line.startswith("FAIL") and "needs BuildKit" in line and "apt install docker-buildx" in line
    assert not [c for c in fake.calls() if "build" in c.split()]

    fake.log.write_text("")
    proc = fake.make(repo, "images-baked", FAKE_BUILDX="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compose --profile baked --profile smoke build vllm-baked smoke" in fake.calls()


# Every compose profile, so that `down`/`ps`/`logs` see the services of each (test_compose checks the list).
ALL_PROFILES = (
    "--profile smoke --profile monitoring --profile sglang --profile llamacpp --profile llamacpp-cpu --profile bench"
    " --profile baked"
)


def test_down_keeps_the_cache_volumes(repo: Path, fake: Fake) -> None:
    assert fake.make(repo, "down").returncode == 0
    [call] = fake.calls()
    assert call == f"compose {ALL_PROFILES} down --remove-orphans"
    assert "--volumes" not in call and " -v" not in call


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("ps", f"compose {ALL_PROFILES} ps --all"),
        ("logs", f"compose {ALL_PROFILES} logs --follow --tail 100"),
        ("smoke", "compose --profile smoke run --rm --no-deps smoke"),
        ("bench", "compose --profile bench run --rm --no-deps bench"),
    ],
)
def test_inspection_targets(repo: Path, fake: Fake, target: str, expected: str, tmp_path: Path) -> None:
    assert fake.make(repo, target, GEMMA4_BENCH_RESULTS=str(tmp_path / "results")).returncode == 0
    assert fake.calls() == [expected]


def test_host_folders_are_created_as_the_user_before_docker_runs(repo: Path, fake: Fake, tmp_path: Path) -> None:
    """A missing bind-mount folder would be created by Docker, as root; `make up` and `make bench` make it first."""
    home = tmp_path / "home"
    hf = home / ".cache" / "huggingface"
    proc = fake.make(repo, "up", HOME=str(home), GEMMA4_HF_CACHE="~/.cache/huggingface", FAKE_WATCH=str(hf))
    assert proc.returncode == 0, proc.stderr
    assert hf.is_dir() and hf.stat().st_uid == os.getuid()
    assert f"created {hf} for GEMMA4_HF_CACHE" in proc.stdout
    calls = fake.calls()
    build = index(calls, "compose --profile smoke build")
    assert calls[build + 1] == "watch: exists"  # made before anything Docker does for `make up`
    first_container = index(calls, "compose run")  # the GPU probe, then prefetch
    assert calls[first_container + 1] == "watch: exists"  # there before the first container could mount it
    assert not (repo / "vllm-cache").exists()  # a volume name is Docker's business
    results = tmp_path / "bench" / "l4"
    assert fake.make(repo, "bench", GEMMA4_BENCH_RESULTS=str(results)).returncode == 0
    assert results.is_dir()


def test_images_builds_and_pushes_only_with_a_registry(repo: Path, fake: Fake) -> None:
    assert fake.make(repo, "images").returncode == 0
    assert fake.calls()[0] == "compose --profile smoke --profile sglang build vllm smoke sglang-prefetch"
    assert not [c for c in fake.calls() if "push" in c]

    fake.log.write_text("")
    proc = fake.make(repo, "images", REGISTRY="registry.example.com/ml")
    assert proc.returncode == 0, proc.stderr
    calls = fake.calls()
    pushed = (
        "GEMMA4_VLLM_IMAGE=registry.example.com/ml/vllm:0.1.0 GEMMA4_SMOKE_IMAGE=registry.example.com/ml/smoke:0.1.0"
        " GEMMA4_FETCH_IMAGE=registry.example.com/ml/fetch:0.1.0"
    )
    assert calls == [
        "compose --profile smoke --profile sglang build vllm smoke sglang-prefetch",
        pushed,
        "compose --profile smoke --profile sglang push vllm smoke sglang-prefetch",
        pushed,
    ]


def test_images_rejects_a_malformed_registry(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "images", REGISTRY="Registry.Example.com/ML:1.0 ")
    assert proc.returncode != 0 and "REGISTRY must look like" in proc.stderr
    assert fake.calls() == []
