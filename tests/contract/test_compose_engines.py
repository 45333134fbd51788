"""compose.yaml's SGLang and llama.cpp profiles against the real `docker compose` binary.

Each profile renders on its own; its server runs the engine's own pinned image (the one in
deploy/engines/<engine>.yaml) after a prefetch step has verified the files and written the command.
The entrypoint script itself is run here with /bin/sh against a stand-in args file and secret file, so
the way the command and the API key reach the server is tested, not just read. What cannot run here
(no Docker engine, no GPU): pulling the images, the GPU reservation being honoured, the servers starting.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deploy.engines import args_script, load_engine
from tests.conftest import require_tool
from tests.contract.test_compose import HF_HOME, compose, render, seconds

pytestmark = pytest.mark.contract

# server service -> (engine, device, profile)
SERVERS = {
    "sglang": ("sglang", "gpu", "sglang"),
    "llamacpp": ("llamacpp", "gpu", "llamacpp"),
    "llamacpp-cpu": ("llamacpp", "cpu", "llamacpp-cpu"),
}
PORTS = {"sglang": ("GEMMA4_SGLANG_PORT", "8001"), "llamacpp": ("GEMMA4_LLAMACPP_PORT", "8002")}
PORTS["llamacpp-cpu"] = ("GEMMA4_LLAMACPP_CPU_PORT", "8003")
IMAGE_VARIABLES = {
    "sglang": "GEMMA4_SGLANG_IMAGE",
    "llamacpp": "GEMMA4_LLAMACPP_IMAGE",
    "llamacpp-cpu": "GEMMA4_LLAMACPP_CPU_IMAGE",
}


@pytest.fixture(scope="module")
def no_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("env") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def services(repo: Path, no_env: Path) -> dict[str, Any]:
    return render(repo, no_env)["services"]


def only_profile(repo: Path, env_file: Path, profile: str) -> set[str]:
    """The services `docker compose --profile PROFILE` would run (compose's own selection)."""
    proc = subprocess.run(
        [
            *compose_prefix(repo, env_file),
            "--profile",
            profile,
            "config",
            "--services",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def compose_prefix(repo: Path, env_file: Path) -> list[str]:
    """The compose command line for this checkout and env file, with no profile chosen."""
    tool = require_tool("docker-compose")
    return [tool, "--project-directory", str(repo), "-f", str(repo / "compose.yaml"), "--env-file", str(env_file)]


@pytest.mark.parametrize("server", SERVERS)
def test_each_profile_renders_alone_with_its_own_prefetch(repo: Path, no_env: Path, server: str) -> None:
    _, _, profile = SERVERS[server]
    selected = only_profile(repo, no_env, profile)
    # The vLLM services have no profile, so they are always listed; naming the server starts only it.
    assert selected == {"prefetch", "vllm", server, f"{server}-prefetch"}, selected


@pytest.mark.parametrize("server", SERVERS)
def test_server_runs_the_engines_pinned_image_after_a_verified_prefetch(
    repo: Path, no_env: Path, services: dict[str, Any], server: str
) -> None:
    engine_name, device, _ = SERVERS[server]
    engine = load_engine(engine_name)
    service, prefetch = services[server], services[f"{server}-prefetch"]
    assert service["image"] == engine.image(device)
    moved = render(repo, no_env, {IMAGE_VARIABLES[server]: "registry.local/mirror:1"})["services"][server]
    assert moved["image"] == "registry.local/mirror:1"
    assert list(service["depends_on"]) == [f"{server}-prefetch"]
    assert service["depends_on"][f"{server}-prefetch"]["condition"] == "service_completed_successfully"
    # prefetch: fetch + verify this engine for this device, then write the command where the server reads it.
    assert prefetch["command"][:2] == ["fetch", engine_name]
    if engine_name == "llamacpp":  # two devices: the prefetch must render the command for its own
        assert prefetch["command"][prefetch["command"].index("--device") + 1] == device
    assert prefetch["command"][-2:] == ["--write-args", f"/run/gemma4-serve/{server}.args"]
    assert service["command"] == [server]  # $0 of the entrypoint script: which args file to source
    assert service["entrypoint"][:2] == ["/bin/sh", "-c"]


@pytest.mark.parametrize("server", SERVERS)
def test_cache_and_args_volumes(services: dict[str, Any], server: str) -> None:
    def mounts(name: str) -> dict[str, dict]:
        return {v["target"]: v for v in services[name]["volumes"]}

    prefetch, service = mounts(f"{server}-prefetch"), mounts(server)
    assert prefetch[HF_HOME]["source"] == service[HF_HOME]["source"] == "hf-cache"  # shared with vLLM's
    assert service[HF_HOME].get("read_only") is True  # the server never writes the cache
    assert prefetch["/run/gemma4-serve"]["source"] == service["/run/gemma4-serve"]["source"] == "engine-args"
    assert service["/run/gemma4-serve"].get("read_only") is True and not prefetch["/run/gemma4-serve"].get("read_only")


def test_gpu_variants_reserve_the_gpu_and_the_cpu_variant_does_not(services: dict[str, Any]) -> None:
    for server in ("sglang", "llamacpp"):
        devices = services[server]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ["0"]}], server
    assert "deploy" not in services["llamacpp-cpu"]
    assert "deploy" not in services["llamacpp-cpu-prefetch"]


@pytest.mark.parametrize("server", SERVERS)
def test_ports_are_loopback_and_each_has_its_own_variable(
    repo: Path, no_env: Path, services: dict[str, Any], server: str
) -> None:
    variable, default = PORTS[server]
    [port] = services[server]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", default, 8000)
    moved = render(repo, no_env, {variable: "9100"})["services"][server]["ports"][0]
    assert moved["published"] == "9100"
    # Each engine answers on 8000 inside its container, as the engine files say.
    assert load_engine(SERVERS[server][0]).args(SERVERS[server][1])["port"] == 8000


@pytest.mark.parametrize("server", SERVERS)
def test_healthcheck_asks_the_servers_health_endpoint(services: dict[str, Any], server: str) -> None:
    check = services[server]["healthcheck"]
    assert check["test"][:2] == ["CMD", "curl"] and check["test"][-1] == "http://127.0.0.1:8000/health"
    curl_timeout = float(check["test"][check["test"].index("--max-time") + 1])
    assert curl_timeout < seconds(check["timeout"])
    assert seconds(check["start_period"]) >= (600 if server == "sglang" else 120)
    assert services[server]["restart"] == "unless-stopped"


def test_choices_and_overrides_reach_only_the_prefetch_step(repo: Path, no_env: Path) -> None:
    env = {"GEMMA4_LLAMACPP_QUANT": "q4_0", "GEMMA4_LLAMACPP_EXTRA_ARGS": "--parallel 2"}
    rendered = render(repo, no_env, env)["services"]
    for name in ("llamacpp-prefetch", "llamacpp-cpu-prefetch"):
        assert rendered[name]["environment"]["GEMMA4_LLAMACPP_QUANT"] == "q4_0"
        assert rendered[name]["environment"]["GEMMA4_LLAMACPP_EXTRA_ARGS"] == "--parallel 2"
        assert rendered[name]["environment"]["HF_TOKEN_FILE"] == "/run/secrets/hf_token"
    assert not set(rendered["llamacpp"].get("environment") or {}) & set(env)
    assert rendered["sglang"]["environment"] == {"HF_HUB_OFFLINE": "1"}


def engine_flags(name: str) -> set[str]:
    """Flag names the engine file sets (every device), minus the generic ones other tools also use."""
    engine = load_engine(name)
    flags = {k for device in engine.devices for k in engine.args(device)}
    return flags - {"host", "port", "model", "metrics", "offline", "alias"}


def engine_flag_copies(text: str, flags: set[str]) -> list[str]:
    """`line: --flag` for each engine flag spelled in ``text`` outside a GEMMA4_*_EXTRA_ARGS example."""
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(r"#?\s*GEMMA4_\w*EXTRA_ARGS=", line):
            continue
        hits += [f"{number}: --{f}" for f in sorted(flags) if re.search(rf"(?<![\w-])--{re.escape(f)}(?![\w-])", line)]
    return hits


@pytest.mark.parametrize("name", ["sglang", "llamacpp"])
def test_no_engine_flag_is_written_outside_the_engine_file(repo: Path, name: str) -> None:
    """The engine files are the one source: compose, .env.example, the Makefile and docker/ name no flag."""
    flags = engine_flags(name)
    assert {"ctx-size", "n-gpu-layers"} <= flags or {"context-length", "mem-fraction-static"} <= flags
    surfaces = [repo / "compose.yaml", repo / ".env.example", repo / "Makefile", *repo.glob("docker/**/Dockerfile")]
    copies = {str(p.relative_to(repo)): engine_flag_copies(p.read_text(), flags) for p in surfaces}
    assert not any(copies.values()), f"{name} flags outside deploy/engines/{name}.yaml: {copies}"


def test_the_copy_check_can_fail() -> None:
    text = "command: [--ctx-size, '8192']\n# GEMMA4_LLAMACPP_EXTRA_ARGS=--ctx-size 4096\n"
    assert engine_flag_copies(text, engine_flags("llamacpp")) == ["1: --ctx-size"]


# ---- the entrypoint script, run for real -------------------------------------------------------------


def run_entrypoint(services: dict[str, Any], server: str, tmp_path: Path, api_key: str) -> list[str]:
    """Run the server's entrypoint with /bin/sh: args file and secret in temp paths, a fake server binary."""
    script = services[server]["entrypoint"][2].replace("$$", "$")  # compose's escape, undone as at run time
    run_dir, secret = tmp_path / "run", tmp_path / "vllm_api_key"
    run_dir.mkdir(exist_ok=True)
    secret.write_text(api_key)
    script = script.replace("/run/gemma4-serve", str(run_dir)).replace("/run/secrets/vllm_api_key", str(secret))
    fake_server = tmp_path / "server"
    fake_server.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake_server.chmod(0o755)
    (run_dir / f"{server}.args").write_text(args_script([str(fake_server), "--model", "/m/a b.gguf", "--jinja"]))
    proc = subprocess.run(
        ["/bin/sh", "-c", script, *services[server]["command"]],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("server", SERVERS)
def test_entrypoint_execs_the_written_command_and_adds_the_key_only_when_set(
    services: dict[str, Any], server: str, tmp_path: Path
) -> None:
    assert run_entrypoint(services, server, tmp_path, "\n") == ["--model", "/m/a b.gguf", "--jinja"]
    with_key = run_entrypoint(services, server, tmp_path, "sk-test-key-0123\n")
    assert with_key == ["--model", "/m/a b.gguf", "--jinja", "--api-key", "sk-test-key-0123"]


def test_entrypoint_fails_when_prefetch_wrote_nothing(services: dict[str, Any], tmp_path: Path) -> None:
    script = services["llamacpp"]["entrypoint"][2].replace("$$", "$").replace("/run/gemma4-serve", str(tmp_path))
    proc = subprocess.run(["/bin/sh", "-c", script, "llamacpp"], capture_output=True, text=True, timeout=10)
    assert proc.returncode != 0


def test_env_example_lists_the_engine_images_exactly_as_the_engine_files(repo: Path, no_env: Path) -> None:
    text = (repo / ".env.example").read_text()
    for server, variable in IMAGE_VARIABLES.items():
        engine_name, device, _ = SERVERS[server]
        assert re.search(rf"(?m)^{variable}=(.*)$", text).group(1) == load_engine(engine_name).image(device)
    assert compose(repo, "config", "--quiet", env_file=repo / ".env.example").returncode == 0
