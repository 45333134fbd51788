"""compose.yaml and .env.example against the real `docker compose` binary (v5, no engine needed).

Every check reads compose's own rendering (`config --format json`), so interpolation, defaults,
profiles and normalisation are compose's, not ours. What cannot run here (no Docker engine, no GPU):
starting containers, the GPU reservation being honoured, secrets being mounted; docs/workstation.md
says so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.profiles import MODEL_ID
from tests.conftest import require_tool
from tests.contract.arg_sources import extra_args_cases
from tests.contract.test_drift import find_copies, serving_flags
from tests.contract.vllm_contract import list_options

pytestmark = pytest.mark.contract

# Variables that would leak into the rendering from the developer's shell; each run starts without them.
_OUR_PREFIXES = ("GEMMA4_", "HF_", "VLLM_", "SMOKE_", "COMPOSE_", "DOCKER_")
# Where the images keep their caches (docker/vllm/Dockerfile states HF_HOME and VLLM_CACHE_ROOT).
HF_HOME = "/root/.cache/huggingface"
# The alternative engines' services (tests/contract/test_compose_engines.py) and the profile of each.
ENGINE_SERVICES = {
    "sglang-prefetch": "sglang",
    "sglang": "sglang",
    "llamacpp-prefetch": "llamacpp",
    "llamacpp": "llamacpp",
    "llamacpp-cpu-prefetch": "llamacpp-cpu",
    "llamacpp-cpu": "llamacpp-cpu",
}
VLLM_CACHE_ROOT = "/root/.cache/vllm"


def compose(repo: Path, *args: str, env_file: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real compose binary on compose.yaml with every profile, a given env file and nothing else."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OUR_PREFIXES)}
    return subprocess.run(
        [
            require_tool("docker-compose"),
            "--project-directory",
            str(repo),
            "-f",
            str(repo / "compose.yaml"),
            "--env-file",
            str(env_file),
            "--profile",
            "*",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **(env or {})},
    )


def render(repo: Path, env_file: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """compose's normalised configuration as a dict; fails the test with compose's message if it rejects it."""
    proc = compose(repo, "config", "--format", "json", env_file=env_file, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def seconds(duration: str) -> float:
    """A Go duration as compose renders it ('15m0s', '10s', '1h2m') in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def no_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty env file: the 'no .env at all' situation, even if the developer has a .env."""
    path = tmp_path_factory.mktemp("env") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def config(repo: Path, no_env: Path) -> dict[str, Any]:
    return render(repo, no_env)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, Any]:
    return config["services"]


def documented_variables(repo: Path) -> dict[str, str]:
    """NAME -> value for every `NAME=value` line in .env.example, commented out (`# NAME=`) or not."""
    text = (repo / ".env.example").read_text()
    found: dict[str, str] = {}
    for name, value in re.findall(r"(?m)^#?\s?([A-Z][A-Z0-9_]*)=(.*)$", text):
        found.setdefault(name, value)
    return found


# ---- the file as a whole -------------------------------------------------------------------------


def test_config_is_valid_without_any_env_file(repo: Path, no_env: Path) -> None:
    proc = compose(repo, "config", "--quiet", env_file=no_env)
    assert proc.returncode == 0, proc.stderr


def test_config_is_valid_with_env_example(repo: Path) -> None:
    proc = compose(repo, "config", "--quiet", env_file=repo / ".env.example")
    assert proc.returncode == 0, proc.stderr


def test_env_example_states_compose_defaults(repo: Path, config: dict[str, Any], tmp_path: Path) -> None:
    """Copying .env.example to .env changes nothing: every value it sets is compose.yaml's default."""
    assert render(repo, repo / ".env.example") == config
    # The comparison notices a drifted value.
    drifted = tmp_path / "drifted.env"
    drifted.write_text((repo / ".env.example").read_text().replace("GEMMA4_SHM_SIZE=4gb", "GEMMA4_SHM_SIZE=8gb"))
    assert render(repo, drifted) != config


def test_compose_spec_schema(repo: Path, tmp_path: Path) -> None:
    tool = require_tool("check-jsonschema")
    ok = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(repo / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    typo = tmp_path / "compose.yaml"
    typo.write_text("services:\n  vllm:\n    image: x:1\n    healthchek: {}\n")
    bad = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(typo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0 and "healthchek" in bad.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GEMMA4_PORT", "eighty", "invalid hostPort: eighty"),
        ("GEMMA4_BIND_ADDRESS", "300.1.1.1", "invalid IP address: 300.1.1.1"),
        ("GEMMA4_SHM_SIZE", "lots", "shm_size' invalid size: 'lots'"),
        ("GEMMA4_PROMETHEUS_PORT", "-1", "-1"),
    ],
)
def test_wrong_values_fail_with_a_message_naming_them(
    repo: Path, no_env: Path, variable: str, value: str, message: str
) -> None:
    proc = compose(repo, "config", "--quiet", env_file=no_env, env={variable: value})
    assert proc.returncode != 0, f"{variable}={value} was accepted"
    assert message in proc.stderr, proc.stderr


def test_every_variable_is_documented_in_env_example(repo: Path, no_env: Path, services: dict[str, Any]) -> None:
    proc = compose(repo, "config", "--variables", env_file=no_env)
    assert proc.returncode == 0, proc.stderr
    interpolated = {line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()}
    passed_through = {k for s in services.values() for k, v in (s.get("environment") or {}).items() if v is None}
    used = interpolated | passed_through
    assert {"GEMMA4_PORT", "GEMMA4_GPU", "GEMMA4_EXTRA_ARGS", "HF_HUB_OFFLINE"} <= used, used
    documented = set(documented_variables(repo))
    assert not used - documented, (
        f"compose.yaml reads these but .env.example does not explain them: {used - documented}"
    )
    # COMPOSE_PROFILES is read by compose itself, not by compose.yaml.
    stale = documented - used - {"COMPOSE_PROFILES"}
    assert not stale, f".env.example documents variables compose.yaml does not read: {stale}"


def test_commented_defaults_in_env_example_are_true(repo: Path) -> None:
    documented = documented_variables(repo)
    assert documented["GEMMA4_MODEL"] == MODEL_ID
    assert documented["COMPOSE_PROFILES"] == "monitoring"


def test_env_example_spells_vllm_flags_only_in_override_examples(repo: Path, vllm_python: str) -> None:
    """.env.example may hold vLLM flags (it is in OVERRIDE_FILES) only on GEMMA4_EXTRA_ARGS lines."""
    flags = serving_flags(list_options(vllm_python))
    path = repo / ".env.example"
    lines = path.read_text().splitlines()
    hits = find_copies(path, flags)
    assert hits, "the override examples were not found: the contract would check nothing"
    for hit in hits:
        line = int(hit.split(":")[-2])
        assert re.match(r"#?\s*GEMMA4_EXTRA_ARGS=", lines[line - 1]), hit
    assert len([c for c in extra_args_cases(repo) if c.source.startswith(".env.example:")]) >= 2


# ---- services -------------------------------------------------------------------------------------


def test_services_and_profiles(services: dict[str, Any]) -> None:
    assert set(services) == {
        "prefetch",
        "vllm",
        "vllm-baked",
        "smoke",
        "bench",
        "prometheus",
        "grafana",
        *ENGINE_SERVICES,
    }
    assert "profiles" not in services["prefetch"] and "profiles" not in services["vllm"]
    assert services["smoke"]["profiles"] == ["smoke"]
    assert services["bench"]["profiles"] == ["bench"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    for name, profile in ENGINE_SERVICES.items():
        assert services[name]["profiles"] == [profile], name


# What the classic builder (a distribution's Docker without the buildx plugin) refuses: build keys that only
# BuildKit implements, and Dockerfile syntax that only BuildKit parses.
BUILDKIT_ONLY_KEYS = {"secrets", "ssh", "additional_contexts", "cache_to", "platforms", "privileged", "entitlements"}
BUILDKIT_ONLY_SYNTAX = re.compile(
    r"^\s*RUN\s+--|<<-?\s*[A-Z'\"]|^\s*(COPY|ADD)\s+--(link|parents|exclude)|^#\s*syntax=", re.M
)


def stages_up_to(dockerfile: Path, target: str | None) -> str:
    """The text of ``dockerfile`` up to and including stage ``target`` (the whole file when None)."""
    text = dockerfile.read_text()
    if target is None:
        return text
    match = re.search(rf"(?im)^FROM\s.*\sAS\s+{re.escape(target)}\s*$", text)
    assert match, f"{dockerfile} has no stage {target}"
    later = re.search(r"(?im)^FROM\s", text[match.end() :])
    return text[: match.end() + later.start()] if later else text


def test_default_builds_use_no_buildkit_only_feature(repo: Path, services: dict[str, Any]) -> None:
    """Issue 22: `make up` on Debian's docker.io (no buildx) failed on the hf_token build secret."""
    built = {name: s["build"] for name, s in services.items() if "build" in s and name != "vllm-baked"}
    assert {"prefetch", "vllm", "smoke"} <= set(built)
    for name, build in built.items():
        assert not BUILDKIT_ONLY_KEYS & set(build), f"{name}: {BUILDKIT_ONLY_KEYS & set(build)}"
        text = stages_up_to(repo / build["dockerfile"], build.get("target"))
        assert not BUILDKIT_ONLY_SYNTAX.search(text), f"{name}: {BUILDKIT_ONLY_SYNTAX.search(text)}"
    assert built["vllm"]["target"] == "runtime"
    # The check sees what it must: the baked stage itself does use a BuildKit-only mount.
    assert BUILDKIT_ONLY_SYNTAX.search(stages_up_to(repo / "docker/vllm/Dockerfile", "baked"))


def test_the_baked_image_is_its_own_build_only_service_with_the_secret(services: dict[str, Any]) -> None:
    baked = services["vllm-baked"]
    assert baked["profiles"] == ["baked"] and baked["scale"] == 0  # `up` never starts it
    assert baked["image"] == services["vllm"]["image"]  # what `docker save` of the documented name carries
    assert baked["build"]["target"] == "baked"
    assert [s["source"] for s in baked["build"]["secrets"]] == ["hf_token"]
    assert {"GEMMA4_MODEL", "GEMMA4_REVISION"} <= set(baked["build"]["args"])
    assert "secrets" not in baked and "ports" not in baked and "deploy" not in baked


def test_start_order_prefetch_then_vllm_then_smoke(services: dict[str, Any]) -> None:
    assert services["vllm"]["depends_on"]["prefetch"]["condition"] == "service_completed_successfully"
    assert services["smoke"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    # Monitoring must not hold `up` hostage until vLLM is healthy.
    assert services["prometheus"]["depends_on"]["vllm"]["condition"] == "service_started"


def test_vllm_reserves_one_gpu_from_a_variable(repo: Path, no_env: Path, services: dict[str, Any]) -> None:
    devices = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ["0"]}]
    other = render(repo, no_env, {"GEMMA4_GPU": "GPU-5f1e0c1a"})["services"]["vllm"]
    assert other["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["GPU-5f1e0c1a"]
    # bench shares vllm's GPU only to read its memory with nvidia-smi
    assert sorted(name for name, s in services.items() if "deploy" in s) == ["bench", "llamacpp", "sglang", "vllm"]
    assert services["bench"]["deploy"] == services["vllm"]["deploy"]


def test_ports_are_published_on_loopback_only(repo: Path, no_env: Path, services: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"vllm", "prometheus", "grafana", "sglang", "llamacpp", "llamacpp-cpu"}
    for name, ports in published.items():
        for port in ports:
            assert port["host_ip"] == "127.0.0.1", (name, port)
    assert services["vllm"]["ports"] == [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 8000, "published": "8000", "protocol": "tcp"}
    ]
    moved = render(repo, no_env, {"GEMMA4_PORT": "9001"})["services"]["vllm"]["ports"][0]
    assert (moved["published"], moved["target"]) == ("9001", 8000)


def test_exposing_the_api_exposes_neither_prometheus_nor_grafana(repo: Path, no_env: Path) -> None:
    """GEMMA4_BIND_ADDRESS (documented for LAN access) moves the API ports only; monitoring binds on its own."""
    api = {"vllm", "sglang", "llamacpp", "llamacpp-cpu"}
    lan = render(repo, no_env, {"GEMMA4_BIND_ADDRESS": "0.0.0.0"})["services"]
    for name, service in lan.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == ("0.0.0.0" if name in api else "127.0.0.1"), (name, port)
    own = render(repo, no_env, {"GEMMA4_GRAFANA_BIND_ADDRESS": "192.0.2.10"})["services"]
    assert own["grafana"]["ports"][0]["host_ip"] == "192.0.2.10"
    assert own["prometheus"]["ports"][0]["host_ip"] == own["vllm"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_the_smoke_suite_expects_the_context_length_the_server_runs_with(repo: Path, no_env: Path) -> None:
    """`GEMMA4_EXTRA_ARGS="--max-model-len 16384" make up`: the suite in the smoke service must not insist on
    another length (it reads the served one from /v1/models)."""
    from smoke_tests.settings import resolve

    rendered = render(repo, no_env, {"GEMMA4_EXTRA_ARGS": "--max-model-len 16384"})["services"]
    assert rendered["vllm"]["environment"]["GEMMA4_EXTRA_ARGS"] == "--max-model-len 16384"
    environ = {k: v for k, v in rendered["smoke"]["environment"].items() if v is not None}
    assert resolve({}, environ).max_model_len in (None, 16384)


def test_vllm_healthcheck_probes_and_waits_out_a_cold_start(services: dict[str, Any]) -> None:
    check = services["vllm"]["healthcheck"]
    assert check["test"][:5] == ["CMD", "python3", "-m", "deploy", "probe"]
    probe_timeout = float(check["test"][check["test"].index("--timeout") + 1])
    # The probe must give up before Docker kills it, so its own message reaches `docker inspect`.
    assert probe_timeout < seconds(check["timeout"])
    # vLLM's engine start-up alone may take 600 s (VLLM_ENGINE_READY_TIMEOUT_S) before the port opens.
    assert seconds(check["start_period"]) >= 600 + 120
    assert seconds(check["interval"]) <= 30 and check["retries"] >= 2


def test_vllm_has_enough_shared_memory(services: dict[str, Any]) -> None:
    vllm = services["vllm"]
    assert vllm.get("ipc") == "host" or int(vllm["shm_size"]) >= 1 << 30


def test_restart_policies(services: dict[str, Any]) -> None:
    assert services["vllm"]["restart"] == "unless-stopped"
    assert services["prefetch"]["restart"] == "no"  # a one-shot step: never rerun behind the user's back
    assert services["smoke"]["restart"] == "no"
    assert services["bench"]["restart"] == "no"
    for name in ENGINE_SERVICES:
        assert services[name]["restart"] == ("no" if name.endswith("-prefetch") else "unless-stopped"), name


def test_every_service_rotates_its_logs(services: dict[str, Any]) -> None:
    for name, service in services.items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert set(logging.get("options", {})) >= {"max-size", "max-file"}, name


def test_caches_are_named_volumes_shared_by_prefetch_and_vllm(
    repo: Path, no_env: Path, config: dict[str, Any], services: dict[str, Any]
) -> None:
    def mounts(service: str) -> dict[str, dict]:
        return {v["target"]: v for v in services[service]["volumes"]}

    assert mounts("prefetch")[HF_HOME] == mounts("vllm")[HF_HOME]
    assert mounts("vllm")[HF_HOME]["type"] == "volume"
    assert mounts("vllm")[VLLM_CACHE_ROOT]["type"] == "volume"
    assert {"hf-cache", "vllm-cache"} <= set(config["volumes"])
    assert config["volumes"]["hf-cache"]["name"] == "gemma4-serve_hf-cache"  # stable: `name:` pins the project
    # A host directory instead, e.g. to share the Hugging Face cache the user already has.
    shared = render(repo, no_env, {"GEMMA4_HF_CACHE": "/srv/hf"})["services"]["prefetch"]["volumes"][0]
    assert (shared["type"], shared["source"], shared["target"]) == ("bind", "/srv/hf", HF_HOME)


def test_vllm_gets_a_profile_name_and_overrides_only(repo: Path, no_env: Path, services: dict[str, Any]) -> None:
    """Serving arguments reach vLLM through the launcher, never as a command written in compose.yaml."""
    vllm = services["vllm"]
    assert vllm.get("command") is None and vllm.get("entrypoint") is None  # the image's launcher runs
    assert vllm["environment"]["GEMMA4_PROFILE"] == "auto"
    assert set(vllm["environment"]) == {
        "GEMMA4_PROFILE",
        "GEMMA4_FEATURES",
        "GEMMA4_MODEL",
        "GEMMA4_REVISION",
        "GEMMA4_EXTRA_ARGS",
        "VLLM_ENGINE_READY_TIMEOUT_S",
        "HF_HUB_OFFLINE",
        "VLLM_API_KEY_FILE",
        "GEMMA4_SHUTDOWN_TIMEOUT",
    }
    extra = "--max-num-seqs 16 --limit-mm-per-prompt.image 2"
    chosen = render(repo, no_env, {"GEMMA4_PROFILE": "gpu-12gb-ampere", "GEMMA4_EXTRA_ARGS": extra})
    assert chosen["services"]["vllm"]["environment"]["GEMMA4_PROFILE"] == "gpu-12gb-ampere"
    assert chosen["services"]["vllm"]["environment"]["GEMMA4_EXTRA_ARGS"] == extra


def test_docker_stop_lets_vllm_drain_within_the_grace_period(services: dict[str, Any]) -> None:
    """`docker stop` sends SIGTERM with no preStop drain: vLLM must finish in-flight requests (--shutdown-timeout,
    through the launcher) and Docker must wait longer than that before SIGKILL (tests/e2e/test_compose_real.py)."""
    vllm = services["vllm"]
    timeout_s = int(vllm["environment"]["GEMMA4_SHUTDOWN_TIMEOUT"])
    # compose renders Go durations, e.g. "1m30s".
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", vllm["stop_grace_period"])
    assert parts, vllm["stop_grace_period"]
    hours, minutes, seconds = (int(part or 0) for part in parts.groups())
    grace_s = hours * 3600 + minutes * 60 + seconds
    assert timeout_s > 0
    assert grace_s >= timeout_s + 15  # vLLM's own exit takes seconds after the drain


def test_vllm_never_downloads_and_prefetch_follows_the_offline_switch(
    repo: Path, no_env: Path, services: dict[str, Any], tmp_path: Path
) -> None:
    assert services["vllm"]["environment"]["HF_HUB_OFFLINE"] == "1"
    assert services["prefetch"]["environment"]["HF_HUB_OFFLINE"] is None  # unset: download what is missing
    assert "fetch" in " ".join(services["prefetch"]["entrypoint"])
    assert "verify" in " ".join(services["prefetch"]["entrypoint"])
    offline = tmp_path / "offline.env"
    offline.write_text("HF_HUB_OFFLINE=1\n")
    assert render(repo, offline)["services"]["prefetch"]["environment"]["HF_HUB_OFFLINE"] == "1"


def test_images_are_pinned(repo: Path, services: dict[str, Any]) -> None:
    version = re.search(r'(?m)^version = "([^"]+)"$', (repo / "pyproject.toml").read_text()).group(1)
    assert services["vllm"]["image"] == f"ghcr.io/gemma4-serve/vllm:{version}"
    assert services["prefetch"]["image"] == services["vllm"]["image"]
    assert services["smoke"]["image"] == f"ghcr.io/gemma4-serve/smoke:{version}"
    for name in ("prometheus", "grafana"):
        assert re.fullmatch(r"[a-z/]+:v?\d+\.\d+\.\d+", services[name]["image"]), services[name]["image"]
    assert not [s["image"] for s in services.values() if s["image"].endswith(":latest") or ":" not in s["image"]]
    for name in ENGINE_SERVICES:
        if name.endswith("-prefetch"):
            assert services[name]["image"] == f"ghcr.io/gemma4-serve/fetch:{version}", name


def test_smoke_runs_the_suite_against_vllm(services: dict[str, Any]) -> None:
    smoke = services["smoke"]
    assert smoke["build"]["dockerfile"] == "docker/smoke/Dockerfile"
    assert smoke["environment"]["SMOKE_BASE_URL"] == "http://vllm:8000"
    assert smoke["environment"]["SMOKE_SERVER"] == "vllm"
    # Started as root only to read the key file; the suite itself runs as the image's user.
    assert smoke["user"] == "0:0"
    assert (
        "exec setpriv --reuid=10001 --regid=10001 --clear-groups --no-new-privs python -m smoke_tests"
        in (smoke["entrypoint"][2])
    )
    # No context length of its own: the suite takes what /v1/models reports, whatever GEMMA4_EXTRA_ARGS set.
    assert "SMOKE_MAX_MODEL_LEN" not in smoke["environment"]


def test_bench_runs_the_benchmark_against_vllm_with_valid_options(
    repo: Path, no_env: Path, services: dict[str, Any]
) -> None:
    from deploy.__main__ import build_parser
    from deploy.bench.cli import _check_options

    bench = services["bench"]
    assert bench["image"] == services["vllm"]["image"] and "build" not in bench
    assert bench["entrypoint"][:4] == ["python3", "-m", "deploy", "bench"] and not bench.get("command")
    assert bench["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert bench["environment"]["VLLM_API_KEY_FILE"] == "/run/secrets/vllm_api_key"
    [results] = bench["volumes"]
    assert results["target"] == "/results" and results["source"] == str(repo / "reports/bench")
    # The command is valid for the tool it runs, as rendered and with every knob changed.
    args = build_parser().parse_args(bench["entrypoint"][3:])
    assert _check_options(args) is None
    assert (args.base_url, args.concurrency, args.context, args.images) == ("http://vllm:8000", [1, 8], 32768, [0, 1])
    assert args.engine == "" and args.json == Path("/results/bench.json")
    knobs = {
        "GEMMA4_BENCH_URL": "http://sglang:8000",
        "GEMMA4_BENCH_CONCURRENCY": "2,4",
        "GEMMA4_BENCH_CONTEXT": "8192",
        "GEMMA4_BENCH_MAX_TOKENS": "64",
        "GEMMA4_BENCH_REQUESTS": "5",
        "GEMMA4_BENCH_IMAGES": "1",
        "GEMMA4_BENCH_ENGINE": "vLLM v0.21.0",
        "GEMMA4_BENCH_FORMAT": "W8A16",
        "GEMMA4_BENCH_NAME": "l4",
        "GEMMA4_BENCH_RESULTS": "/srv/results",
    }
    changed = render(repo, no_env, knobs)["services"]["bench"]
    args = build_parser().parse_args(changed["entrypoint"][3:])
    assert _check_options(args) is None
    assert (args.concurrency, args.context, args.max_tokens, args.requests, args.images) == ([2, 4], 8192, 64, 5, [1])
    assert args.base_url == "http://sglang:8000"
    assert (args.engine, args.format_label, args.markdown) == ("vLLM v0.21.0", "W8A16", Path("/results/l4.md"))
    assert changed["volumes"][0]["source"] == "/srv/results"


# ---- secrets ---------------------------------------------------------------------------------------

TOKEN = "hf_FAKE-test-token-value-0123456789"
API_KEY = "sk-test-api-key-value-0123456789"


def test_secret_values_never_appear_in_the_rendered_config(repo: Path, tmp_path: Path) -> None:
    """Set every way a user might: shell, .env, and files. Compose must show paths, never values."""
    token_file, key_file = tmp_path / "hf_token", tmp_path / "api_key"
    token_file.write_text(TOKEN + "\n")
    key_file.write_text(API_KEY + "\n")
    env_file = tmp_path / ".env"
    env_file.write_text(f"HF_TOKEN={TOKEN}\nVLLM_API_KEY={API_KEY}\n")
    env = {
        "HF_TOKEN": TOKEN,
        "VLLM_API_KEY": API_KEY,
        "HF_TOKEN_FILE": str(token_file),
        "VLLM_API_KEY_FILE": str(key_file),
    }
    for fmt in ("yaml", "json"):
        proc = compose(repo, "config", "--format", fmt, env_file=env_file, env=env)
        assert proc.returncode == 0, proc.stderr
        assert TOKEN not in proc.stdout and API_KEY not in proc.stdout
        assert TOKEN not in proc.stderr and API_KEY not in proc.stderr
    rendered = json.loads(compose(repo, "config", "--format", "json", env_file=env_file, env=env).stdout)
    assert rendered["secrets"]["hf_token"]["file"] == str(token_file)
    assert rendered["secrets"]["vllm_api_key"]["file"] == str(key_file)


def test_secrets_reach_only_the_services_that_need_them(services: dict[str, Any], config: dict[str, Any]) -> None:
    def secrets(name: str) -> set[str]:
        return {s["source"] for s in services[name].get("secrets", [])}

    assert secrets("prefetch") == {"hf_token"}
    assert secrets("vllm") == {"vllm_api_key"}  # offline: it never needs the Hub token
    assert secrets("smoke") == {"vllm_api_key"}
    assert secrets("bench") == {"vllm_api_key"}
    assert secrets("prometheus") == set()
    assert secrets("grafana") == {"grafana_admin_password"}
    assert (
        services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    )
    for name in ENGINE_SERVICES:
        assert secrets(name) == ({"hf_token"} if name.endswith("-prefetch") else {"vllm_api_key"}), name
    assert services["prefetch"]["environment"]["HF_TOKEN_FILE"] == "/run/secrets/hf_token"
    assert services["vllm"]["environment"]["VLLM_API_KEY_FILE"] == "/run/secrets/vllm_api_key"
    for name, service in services.items():
        assert not {"HF_TOKEN", "VLLM_API_KEY", "SMOKE_API_KEY"} & set(service.get("environment") or {}), name
    # The default secret file is blank, which the tools read as "no token" / "no key".
    default = Path(config["secrets"]["hf_token"]["file"])
    assert default.read_text().strip() == "" and default.stat().st_size > 0


def test_leak_check_detects_environment_pass_through(tmp_path: Path, no_env: Path) -> None:
    """Why secrets are files: compose renders even a bare `environment: [HF_TOKEN]` with its value."""
    leaky = tmp_path / "compose.yaml"
    leaky.write_text("services:\n  a:\n    image: busybox:1.36\n    environment: [HF_TOKEN]\n")
    proc = compose(tmp_path, "config", env_file=no_env, env={"HF_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert TOKEN in proc.stdout


# ---- monitoring ------------------------------------------------------------------------------------


def test_grafana_is_provisioned_with_the_helm_charts_dashboard(repo: Path, services: dict[str, Any]) -> None:
    mounts = {v["target"]: v for v in services["grafana"]["volumes"]}
    dashboard = mounts["/etc/grafana/dashboards/gemma4-serve.json"]
    assert dashboard["source"] == str(repo / "helm/gemma4-serve/files/grafana-dashboard.json")
    assert dashboard["bind"]["create_host_path"] is False  # a missing file must fail, not become a directory
    provisioning = repo / "docker/monitoring/grafana/provisioning"
    assert mounts["/etc/grafana/provisioning"]["source"] == str(provisioning)
    providers = yaml.safe_load((provisioning / "dashboards/gemma4-serve.yaml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/etc/grafana/dashboards"
    [source] = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    env = services["grafana"]["environment"]
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == "/etc/grafana/dashboards/gemma4-serve.json"


def test_prometheus_scrapes_vllm(repo: Path, services: dict[str, Any]) -> None:
    mounts = {v["target"]: v for v in services["prometheus"]["volumes"]}
    config_file = Path(mounts["/etc/prometheus/prometheus.yml"]["source"])
    assert config_file == repo / "docker/monitoring/prometheus.yml"
    scrape = yaml.safe_load(config_file.read_text())["scrape_configs"]
    assert [(j["metrics_path"], j["static_configs"][0]["targets"]) for j in scrape] == [("/metrics", ["vllm:8000"])]


# ---- the Makefile's view of compose ------------------------------------------------------------------


def test_makefile_names_every_compose_profile(repo: Path, no_env: Path) -> None:
    """`make down`/`ps`/`logs` list the profiles explicitly; a new profile must be added there too."""
    proc = compose(repo, "config", "--profiles", env_file=no_env)
    assert proc.returncode == 0, proc.stderr
    profiles = set(proc.stdout.split())
    line = re.search(r"(?m)^COMPOSE_ALL := (.*)$", (repo / "Makefile").read_text()).group(1)
    expected = {"smoke", "monitoring", "bench", "baked", *ENGINE_SERVICES.values()}
    assert set(re.findall(r"--profile (\S+)", line)) == profiles == expected


def test_extra_args_examples_are_collected_from_every_place_they_are_written(tmp_path: Path) -> None:
    """Each spelling a doc or .env.example uses reaches the vLLM contract, quoted or not, commented or not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / ".env.example").write_text("# GEMMA4_EXTRA_ARGS=--max-num-seqs 16\nGEMMA4_EXTRA_ARGS=--seed 1\n")
    (tmp_path / "docs/x.md").write_text(
        'Run `GEMMA4_EXTRA_ARGS="--max-model-len 8192" make up`, or\n'
        "GEMMA4_EXTRA_ARGS='--kv-cache-dtyp fp8' make up\n"
    )
    found = {(c.source, c.argv[2:]) for c in extra_args_cases(tmp_path)}
    assert found == {
        (".env.example:1", ("--max-num-seqs", "16")),
        (".env.example:2", ("--seed", "1")),
        ("docs/x.md:1", ("--max-model-len", "8192")),
        ("docs/x.md:2", ("--kv-cache-dtyp", "fp8")),
    }


def test_features_reach_the_launcher_and_the_smoke_suite_as_one_list(
    repo: Path, no_env: Path, services: dict[str, Any]
) -> None:
    """GEMMA4_FEATURES names the opt-in features once: the launcher merges them, the suite checks the same list."""
    assert services["vllm"]["environment"]["GEMMA4_FEATURES"] == ""
    assert services["smoke"]["environment"]["SMOKE_FEATURES"] == "none"
    chosen = render(repo, no_env, {"GEMMA4_FEATURES": "tools,reasoning"})["services"]
    assert chosen["vllm"]["environment"]["GEMMA4_FEATURES"] == "tools,reasoning"
    assert chosen["smoke"]["environment"]["SMOKE_FEATURES"] == "tools,reasoning"
