"""The chart's engine switch (`engine.name: sglang | llamacpp`): what Helm renders, and the pod run as far as runs here.

The engine's flags live only in deploy/engines/<name>.yaml (inside the fetch image); the chart passes a name,
a device, a variant and the user's extra words. The pod's two steps are run for real: the init container's
arguments go to the real `python -m deploy engine` CLI against a Hugging Face cache holding pinned-size
files, and the server container's script sources the command it wrote, with /bin/sh. What cannot run here
(no cluster, no registry, no GPU): pulling the images, scheduling, the engines themselves.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.__main__ import build_parser
from deploy.engines import fetch, list_engines, load_engine, render_argv
from tests.contract.helm_chart import CHART, FULLNAME, Rendered, container, env_of, rendered_text, template
from tests.contract.test_compose_engines import engine_flag_copies, engine_flags
from tests.fixtures.engine_cache import cache_file, write_gguf, write_snapshot

pytestmark = pytest.mark.contract

CI = CHART / "ci"
ENGINE_FILES = sorted(CI.glob("engine-*-values.yaml"))
ARGS_DIR = "/run/gemma4-serve"
SECRETS_DIR = "/run/secrets/gemma4"
# Cold-start time each engine needs before /health answers (load; SGLang also captures CUDA graphs).
STARTUP_NEEDS_S = {"sglang": 15 * 60, "llamacpp": 5 * 60}


def ids(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


@functools.cache
def render_file(path: Path) -> Rendered:
    rendered = template(path)
    assert rendered.ok, rendered.stderr
    return rendered


def render_values(values: dict[str, Any], tmp_path: Path) -> Rendered:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return template(path)


def chosen(path: Path) -> tuple[str, str, str | None, list[str]]:
    """(engine, device, variant or None, extra words) a ci values file asks for, with the chart's defaults."""
    engine = yaml.safe_load(path.read_text())["engine"]
    words = [str(w) for w in engine.get("extraArgs", [])]
    return engine["name"], engine.get("device", "gpu"), engine.get("variant") or None, words


def docker_ref(image: str) -> str:
    """An image reference with its registry spelled out, as the chart renders it (Docker Hub is implicit)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}"


def named_variants(name: str) -> list[str]:
    """The variants an engine file names (an engine without any has one unnamed default)."""
    return list(load_engine(name).data.get("variants") or {})


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())["properties"]["engine"]


# ---- the chart agrees with the engine files ------------------------------------------------------------


def test_schema_enumerates_the_engines_variants_and_images() -> None:
    engines = [load_engine(name) for name in list_engines()]
    props = schema()["properties"]
    assert set(props["name"]["enum"]) == {"vllm", *list_engines()}
    assert set(props["variant"]["enum"]) == {"", *(v for e in engines for v in named_variants(e.data["engine"]))}
    images = {f"{e.data['engine']}{'Cpu' if d == 'cpu' else ''}" for e in engines for d in e.devices}
    assert set(props["images"]["required"]) == images
    assert set(props["images"]["properties"]) == images | {"pullPolicy"}


@pytest.mark.parametrize("name", list_engines())
@pytest.mark.parametrize("device", ["gpu", "cpu"])
@pytest.mark.parametrize("variant", ["", "q8_0", "q4_0"])
def test_the_chart_accepts_exactly_the_devices_and_variants_of_the_engine_file(
    name: str, device: str, variant: str, tmp_path: Path
) -> None:
    engine = load_engine(name)
    rendered = render_values({"engine": {"name": name, "device": device, "variant": variant}}, tmp_path)
    possible = device in engine.devices and (not variant or variant in named_variants(name))
    assert rendered.ok == possible, rendered.stderr
    if not possible:
        assert "VALUES VALIDATION" in rendered.stderr and "engine." in rendered.stderr, rendered.stderr


@pytest.mark.parametrize(
    ("name", "device"), [(n, d) for n in list_engines() for d in load_engine(n).devices], ids=lambda v: v
)
def test_default_images_are_the_engine_files_pins(name: str, device: str, tmp_path: Path) -> None:
    rendered = render_values({"engine": {"name": name, "device": device}}, tmp_path)
    assert rendered.ok, rendered.stderr
    assert container(rendered.one("Deployment"))["image"] == docker_ref(load_engine(name).image(device))


def test_the_fetch_image_is_the_one_compose_builds(repo: Path) -> None:
    compose = yaml.safe_load((repo / "compose.yaml").read_text())
    default = re.fullmatch(r"\$\{GEMMA4_FETCH_IMAGE:-(.+)\}", compose["x-fetch-image"]["image"]).group(1)
    rendered = render_file(CI / "engine-sglang-values.yaml")
    assert container(rendered.one("Deployment"), "fetch", init=True)["image"] == default
    # The chart passes the subcommand's arguments only: the image's entrypoint is `python3 -m deploy engine`.
    dockerfile = (repo / "docker/fetch/Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"(?m)^ENTRYPOINT (\[.*\])$", dockerfile).group(1))
    assert entrypoint == ["python3", "-m", "deploy", "engine"]


# ---- what each engine pod renders ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ENGINE_FILES, ids=ids)
def test_init_container_fetches_verifies_and_writes_the_command(path: Path) -> None:
    name, device, variant, words = chosen(path)
    deployment = render_file(path).one("Deployment")
    init = container(deployment, "fetch", init=True)
    args = build_parser().parse_args(["engine", *init["args"]])  # the real CLI accepts exactly these
    assert (args.action, args.engine, args.device, args.variant) == ("fetch", name, device, variant)
    assert shlex.split(args.extra_args) == words  # word for word, JSON included
    assert str(args.write_args) == f"{ARGS_DIR}/{name}.args"
    env = env_of(init)
    assert env["HF_HUB_OFFLINE"] == "0" and env["HF_HOME"] == "/cache/huggingface"
    mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert mounts[ARGS_DIR]["name"] == "engine-args" and not mounts[ARGS_DIR].get("readOnly")
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "engine-args"]
    assert "emptyDir" in volume


@pytest.mark.parametrize("path", ENGINE_FILES, ids=ids)
def test_server_runs_the_engines_image_and_nothing_of_vllm(path: Path) -> None:
    name, device, _, _ = chosen(path)
    rendered = render_file(path)
    deployment = rendered.one("Deployment")
    server = container(deployment)
    assert server["name"] == name
    assert server["image"] == docker_ref(load_engine(name).image(device))
    assert server["command"][:2] == ["/bin/sh", "-c"] and server["args"] == [name]  # $0: which args file
    env = env_of(server)
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"] == env_of(container(deployment, "fetch", init=True))["HF_HOME"]
    assert not {"GEMMA4_PROFILE", "GEMMA4_EXTRA_ARGS", "VLLM_API_KEY_FILE"} & set(env)
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts[ARGS_DIR] == {"name": "engine-args", "mountPath": ARGS_DIR, "readOnly": True}
    assert mounts["/cache"]["name"] == "cache"  # the same path as the fetch step's, so its paths resolve
    assert server["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    gpu = {"nvidia.com/gpu": "1"}
    for kind in ("requests", "limits"):
        assert (gpu.items() <= server["resources"][kind].items()) == (device == "gpu"), kind
    [smoke] = rendered.one("Pod")["spec"]["containers"]
    assert env_of(smoke)["SMOKE_SERVER"] == name


@pytest.mark.parametrize("path", ENGINE_FILES, ids=ids)
def test_probes_wait_for_the_engine_to_load(path: Path) -> None:
    name = chosen(path)[0]
    deployment = render_file(path).one("Deployment")
    server = container(deployment)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    startup = server["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= STARTUP_NEEDS_S[name]
    assert deployment["spec"]["progressDeadlineSeconds"] > budget
    assert server["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def test_offline_engine_pods_only_verify_and_have_no_egress(tmp_path: Path) -> None:
    values = {"engine": {"name": "llamacpp"}, "serving": {"offline": True}, "cache": {"type": "existingClaim"}}
    values["cache"]["existingClaim"] = "models"
    rendered = render_values(values, tmp_path)
    assert rendered.ok, rendered.stderr
    assert env_of(container(rendered.one("Deployment"), "fetch", init=True))["HF_HUB_OFFLINE"] == "1"
    policy = rendered.one("NetworkPolicy", FULLNAME)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy["spec"]


def test_vllm_pods_have_no_engine_parts() -> None:
    deployment = template().one("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert "engine-args" not in {v["name"] for v in spec["volumes"]}
    assert container(deployment)["name"] == "vllm"
    assert container(deployment, "fetch", init=True)["image"].startswith("ghcr.io/gemma4-serve/vllm:")


@pytest.mark.parametrize("name", list_engines())
def test_the_chart_spells_no_engine_flag(name: str) -> None:
    """deploy/engines/<name>.yaml is the one source: the chart's files and what it renders name no flag of it."""
    flags = engine_flags(name)
    sources = [CHART / "values.yaml", *CHART.glob("templates/**/*.yaml"), *CHART.glob("templates/*.tpl")]
    copies = {str(p.relative_to(CHART)): engine_flag_copies(p.read_text(), flags) for p in sources}
    for path in ENGINE_FILES:
        # The user's own words after --extra-args are theirs to choose; everything else must be flag-free.
        text = re.sub(r"(?m)^(\s*- --extra-args\n\s*- ).*$", r"\1(user overrides)", rendered_text(path))
        copies[path.name] = engine_flag_copies(text, flags)
    assert not any(copies.values()), copies


# ---- the pod, run: the init container's CLI, then the server's script ----------------------------------


def fill_cache(hub: Path, name: str, variant: str | None) -> None:
    """Put the engine's pinned files into ``hub`` (GGUFs at their pinned sizes, sparse; a tiny snapshot)."""
    engine = load_engine(name)
    if engine.snapshot is not None:
        write_snapshot(hub, engine.repo, engine.revision, engine.snapshot["model_type"])
    for spec in engine.files(variant):
        assert spec.sha256 is None, f"{spec.name} has a pinned SHA-256 that no stand-in file can match"
        write_gguf(cache_file(hub, engine.repo, spec.name, engine.revision), spec.architecture, spec.size)


def run_server_script(server: dict[str, Any], root: Path) -> subprocess.CompletedProcess[str]:
    """The server container's script with /bin/sh, its paths moved under ``root``; it prints what it would exec."""
    script = server["command"][2]
    assert script.endswith('exec "$@"')
    script = script.replace(ARGS_DIR, str(root / "run")).replace(SECRETS_DIR, str(root / "secrets"))
    script = script.removesuffix('exec "$@"') + "exec printf '%s\\n' \"$@\""
    return subprocess.run(
        ["/bin/sh", "-c", script, *server["args"]], capture_output=True, text=True, timeout=10, check=False
    )


@pytest.mark.parametrize("values", ["engine-sglang", "engine-llamacpp-cpu"])
def test_the_pod_fetches_then_serves_the_written_command(values: str, tmp_path: Path) -> None:
    path = CI / f"{values}-values.yaml"
    name, device, variant, words = chosen(path)
    assert words, f"{path.name} sets no engine.extraArgs: their place in the command would go unchecked"
    deployment = render_file(path).one("Deployment")
    init, server = container(deployment, "fetch", init=True), container(deployment)
    root = tmp_path / "pod"
    (root / "run").mkdir(parents=True)
    (root / "secrets").mkdir()

    def moved(value: str) -> str:  # the pod's volumes, under root
        for mount, local in (("/cache", "cache"), (ARGS_DIR, "run"), (SECRETS_DIR, "secrets")):
            value = value.replace(mount, str(root / local))
        return value

    env = {k: moved(v) for k, v in env_of(init).items() if isinstance(v, str)}
    if "HF_TOKEN_FILE" in env:  # the mounted Secret, with a stand-in token (the cache needs none)
        Path(env["HF_TOKEN_FILE"]).write_text("hf_stand_in_token_for_tests\n")
    hub = Path(env["HF_HOME"]) / "hub"
    fill_cache(hub, name, variant)
    env["HF_HUB_OFFLINE"] = "1"  # no Hub here: the step finds everything in the cache
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "engine", *map(moved, init["args"])],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PATH": os.environ["PATH"], "PYTHONPATH": str(CHART.parents[1])},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    engine = load_engine(name)
    paths = fetch(engine, variant, cache_dir=hub, local_files_only=True)
    expected = render_argv(engine, paths, device, shlex.join(words))

    ran = run_server_script(server, root)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == expected
    assert expected[-len(words) :] == words
    for local in paths.values():  # the server sees the fetch step's files at the same paths
        assert Path(local).exists() and local.startswith(str(root / "cache/huggingface/hub/"))

    (root / "secrets/api-key").write_text("sk-chart-test-0123\n")
    assert run_server_script(server, root).stdout.splitlines() == [*expected, "--api-key", "sk-chart-test-0123"]
    (root / "secrets/api-key").write_text(" \n")
    assert run_server_script(server, root).stdout.splitlines() == expected  # a blank key is no key


def test_the_server_stops_when_the_fetch_step_wrote_nothing(tmp_path: Path) -> None:
    server = container(render_file(CI / "engine-llamacpp-values.yaml").one("Deployment"))
    (tmp_path / "run").mkdir()
    ran = run_server_script(server, tmp_path)
    assert ran.returncode != 0 and ran.stdout == ""


def test_a_pinned_size_mismatch_stops_the_pod_before_the_server(tmp_path: Path) -> None:
    """The init container fails (exit 2, the reason on stderr) and writes no command: the server never starts."""
    init = container(render_file(CI / "engine-llamacpp-cpu-values.yaml").one("Deployment"), "fetch", init=True)
    engine = load_engine("llamacpp")
    hub = tmp_path / "huggingface/hub"
    for spec in engine.files(None):
        write_gguf(cache_file(hub, engine.repo, spec.name, engine.revision), spec.architecture)  # tiny: wrong size
    args = [a.replace(ARGS_DIR, str(tmp_path)) for a in init["args"]]
    env = {"HF_HOME": str(tmp_path / "huggingface"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(CHART.parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "engine", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PATH": os.environ["PATH"]},
        check=False,
    )
    assert proc.returncode == 2 and "at the pinned revision has" in proc.stderr, proc.stderr
    assert not (tmp_path / "llamacpp.args").exists()
