"""`make up / down / ps / logs / smoke / images` with a fake `docker` on PATH that records every call.

No Docker engine runs here, so this proves the scripts' logic, not Docker's: the order
prefetch -> up -> wait healthy -> smoke, that every failure stops `make up` with a reason, and which
compose commands the other targets run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

# Behaviour is chosen through FAKE_* variables; each call is appended to $FAKE_LOG as one line.
FAKE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_LOG"
# FAKE_WATCH: a folder whose existence each call records (did the script create it before Docker ran?).
if [[ -n "${FAKE_WATCH:-}" ]]; then
  if [[ -d "$FAKE_WATCH" ]]; then echo "watch: exists"; else echo "watch: missing"; fi >> "$FAKE_LOG"
fi
case "$*" in
  "compose version") [[ -z "${FAKE_NO_COMPOSE:-}" ]] && echo "Docker Compose version v2.40.0" || exit 1 ;;
  "compose run --rm"*prefetch) exit "${FAKE_PREFETCH_RC:-0}" ;;
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
    echo "$images GEMMA4_FETCH_IMAGE=${GEMMA4_FETCH_IMAGE:-}" >> "$FAKE_LOG" ;;
esac
exit 0
"""


class Fake:
    """A PATH with the fake docker first, and what it recorded."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "docker").write_text(FAKE_DOCKER)
        (self.bin / "docker").chmod(0o755)
        self.log = root / "calls.log"
        self.log.write_text("")
        self.states = root / "states"

    def make(self, repo: Path, target: str, states: list[str] | None = None, **env: str) -> subprocess.CompletedProcess:
        self.states.write_text("\n".join(states or ["running 0 healthy"]) + "\n")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("GEMMA4_", "COMPOSE", "REGISTRY", "FAKE_"))}
        return subprocess.run(
            [shutil.which("make") or "make", "-s", "-C", str(repo), target],
            env={
                **clean,
                "PATH": f"{self.bin}:{clean['PATH']}",
                "FAKE_LOG": str(self.log),
                "FAKE_STATES": str(self.states),
                "GEMMA4_UP_POLL": "0.05",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
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


def test_up_runs_prefetch_then_up_then_waits_then_smoke(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", states=["running 0 starting", "running 0 starting", "running 0 healthy"])
    assert proc.returncode == 0, proc.stderr
    calls = fake.calls()
    prefetch = index(calls, "compose run --rm --build prefetch")
    up = index(calls, "compose up --detach")
    smoke = index(calls, "compose --profile smoke run --rm --no-deps --build smoke")
    inspects = [i for i, c in enumerate(calls) if c.startswith("inspect ")]
    assert prefetch < up < inspects[0] and len(inspects) == 3 and inspects[-1] < smoke
    assert "gemma4-serve is up and passed its smoke test" in proc.stdout
    assert (
        "http://127.0.0.1:8000/v1" in proc.stdout and "curl -s http://127.0.0.1:8000/v1/chat/completions" in proc.stdout
    )


def test_up_stops_when_prefetch_fails(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_PREFETCH_RC="3")
    assert proc.returncode != 0
    assert "prefetch failed" in proc.stderr and "HF_TOKEN_FILE" in proc.stderr
    assert not [c for c in fake.calls() if c.startswith(("compose up", "compose --profile smoke"))]


def test_up_stops_when_compose_up_fails(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_UP_RC="1")
    assert proc.returncode != 0 and "NVIDIA Container" in proc.stderr
    assert not [c for c in fake.calls() if c.startswith(("inspect", "compose --profile smoke"))]


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
    assert not [c for c in fake.calls() if c.startswith("compose --profile smoke")]


def test_up_counts_only_new_restarts(repo: Path, fake: Fake) -> None:
    """A container kept from an earlier run that once restarted is not a failure."""
    proc = fake.make(repo, "up", states=["running 2 starting", "running 2 healthy"])
    assert proc.returncode == 0, proc.stderr


def test_up_gives_up_at_the_deadline(repo: Path, fake: Fake) -> None:
    started = time.monotonic()
    proc = fake.make(repo, "up", states=["running 0 starting"], GEMMA4_UP_TIMEOUT="1")
    assert proc.returncode != 0 and "still not healthy after 1s" in proc.stderr
    assert time.monotonic() - started < 15


def test_up_reports_a_failed_smoke_suite(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_SMOKE_RC="1")
    assert proc.returncode != 0 and "smoke suite failed" in proc.stderr
    assert "is up and passed" not in proc.stdout


def test_up_without_build_uses_existing_images(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", GEMMA4_BUILD="0")
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in fake.calls() if "--build" in c]


def test_up_warns_when_the_api_is_exposed(repo: Path, fake: Fake) -> None:
    proc = fake.make(repo, "up", FAKE_VLLM_ADDRESS="0.0.0.0:8000")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "VLLM_API_KEY_FILE" in proc.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GEMMA4_UP_TIMEOUT": "soon"}, "GEMMA4_UP_TIMEOUT must be a whole number"),
        ({"GEMMA4_BUILD": "yes"}, "GEMMA4_BUILD must be 1"),
        ({"FAKE_NO_COMPOSE": "1"}, "Docker Compose v2 is required"),
    ],
)
def test_up_rejects_bad_settings_before_doing_anything(
    repo: Path, fake: Fake, env: dict[str, str], message: str
) -> None:
    proc = fake.make(repo, "up", **env)
    assert proc.returncode != 0 and message in proc.stderr
    assert not [c for c in fake.calls() if c.startswith(("compose run", "compose up"))]


# Every compose profile, so that `down`/`ps`/`logs` see the services of each (test_compose checks the list).
ALL_PROFILES = (
    "--profile smoke --profile monitoring --profile sglang --profile llamacpp --profile llamacpp-cpu --profile bench"
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
    prefetch = index(calls, "compose run --rm --build prefetch")
    assert calls[prefetch + 1] == "watch: exists"  # there before the first container could mount it
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
