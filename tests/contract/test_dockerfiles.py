"""The Dockerfiles against hadolint (under .hadolint.yaml) and structured checks with dockerfile-parse.

No image is built here (no Docker engine); docs/workstation.md says what only a real build can show.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import require_tool

pytestmark = pytest.mark.contract

VLLM_PIN = "vllm/vllm-openai:v0.21.0-cu129-ubuntu2404"
# The base image line: the tag, plus the digest only when VLLM_BASE_DIGEST is given (tag@digest).
VLLM_FROM = f"{VLLM_PIN}${{VLLM_BASE_DIGEST:+@${{VLLM_BASE_DIGEST}}}} AS runtime"
LAUNCHER = ["python3", "-m", "deploy", "launch"]
OCI_LABELS = {"title", "description", "version", "revision", "source", "licenses", "base.name"}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL", re.IGNORECASE)


@dataclass
class Stage:
    """One build stage: its FROM line and its instructions as (INSTRUCTION, value) pairs."""

    source: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    def pairs(self, instruction: str) -> dict[str, str]:
        """KEY=VALUE pairs of every ENV, ARG or LABEL in the stage (quotes removed, as Docker does)."""
        found = {}
        for value in self.values(instruction):
            for word in shlex.split(value):
                key, _, val = word.partition("=")
                found[key] = val
        return found


def stages(path: Path) -> tuple[list[str], list[Stage]]:
    """The ARG lines before the first FROM, and the stages of the Dockerfile at ``path``."""
    with path.open("rb") as f:
        structure = DockerfileParser(fileobj=f).structure
    global_args: list[str] = []
    result: list[Stage] = []
    for item in structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            result.append(Stage(value))
        elif instruction == "COMMENT":
            continue
        elif result:
            result[-1].instructions.append((instruction, value))
        elif instruction == "ARG":
            global_args.append(value)
    return global_args, result


def dockerfiles(repo: Path) -> list[Path]:
    return sorted(repo.glob("docker/*/Dockerfile"))


@pytest.fixture(scope="module")
def vllm_dockerfile(repo: Path) -> tuple[list[str], list[Stage]]:
    return stages(repo / "docker/vllm/Dockerfile")


def hadolint(repo: Path, *paths: Path) -> subprocess.CompletedProcess:
    """hadolint from the repository root, so .hadolint.yaml applies exactly as in `make lint`."""
    return subprocess.run(
        [require_tool("hadolint"), "--no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=repo,
    )


def test_hadolint_passes_on_every_dockerfile(repo: Path) -> None:
    files = dockerfiles(repo)
    assert repo / "docker/vllm/Dockerfile" in files
    proc = hadolint(repo, *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_policy_rejects_what_it_should(repo: Path, tmp_path: Path) -> None:
    """The committed policy is not toothless: a floating tag and an untrusted registry fail."""
    assert yaml.safe_load((repo / ".hadolint.yaml").read_text())["failure-threshold"] == "warning"
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nFROM quay.example.com/x/y:1.0\n")
    proc = hadolint(repo, bad)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3026" in proc.stdout, proc.stdout


def test_base_image_is_the_pinned_vllm_release(vllm_dockerfile: tuple[list[str], list[Stage]]) -> None:
    global_args, all_stages = vllm_dockerfile
    assert all_stages[0].source == VLLM_FROM
    assert global_args == ['VLLM_BASE_DIGEST=""']  # empty: the tag alone, unless a digest is passed
    # Every later stage builds on ours; nothing else is pulled.
    assert [s.source for s in all_stages[1:]] == ["runtime AS baked"]


def test_no_floating_tags_in_any_dockerfile(repo: Path) -> None:
    for path in dockerfiles(repo):
        for stage in stages(path)[1]:
            image = stage.source.split()[0]
            assert not re.search(r":(latest|nightly)\b", image), f"{path}: {image}"
            internal = {s.source.split()[-1] for s in stages(path)[1] if " AS " in s.source.upper()}
            assert ":" in image or image in internal, f"{path}: untagged base image {image}"


def test_entrypoint_is_the_launcher_in_exec_form(vllm_dockerfile: tuple[list[str], list[Stage]]) -> None:
    runtime = vllm_dockerfile[1][0]
    [entrypoint] = runtime.values("ENTRYPOINT")
    assert json.loads(entrypoint) == LAUNCHER
    assert json.loads(runtime.values("CMD")[-1]) == []


def test_healthcheck_is_the_probe_with_compose_timings(
    repo: Path, vllm_dockerfile: tuple[list[str], list[Stage]]
) -> None:
    [healthcheck] = vllm_dockerfile[1][0].values("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD")
    assert json.loads(command) == ["python3", "-m", "deploy", "probe", "--timeout", "5"]
    opts = dict(o.lstrip("-").split("=") for o in options.split())
    # `docker run` without compose gets the same behaviour as the compose service.
    service = yaml.safe_load((repo / "compose.yaml").read_text())["services"]["vllm"]["healthcheck"]
    assert service["test"] == ["CMD", *json.loads(command)]
    assert (opts["start-period"], opts["interval"], opts["timeout"]) == (
        service["start_period"],
        service["interval"],
        service["timeout"],
    )


def test_runtime_adds_only_the_deploy_package(vllm_dockerfile: tuple[list[str], list[Stage]]) -> None:
    runtime = vllm_dockerfile[1][0]
    assert runtime.values("COPY") == ["deploy/ /opt/gemma4-serve/deploy/"]
    assert runtime.values("RUN") == [], "the runtime stage installs nothing (no transformers upgrade, no pip)"
    env = runtime.pairs("ENV")
    assert env["PYTHONPATH"] == "/opt/gemma4-serve"
    # compose.yaml and the Helm chart mount their caches at exactly these paths.
    assert env["HF_HOME"] == "/root/.cache/huggingface"
    assert env["VLLM_CACHE_ROOT"] == "/root/.cache/vllm"
    assert env["GEMMA4_PROFILE"] == "auto"


def test_no_dockerfile_upgrades_transformers_or_bakes_a_secret(repo: Path) -> None:
    for path in dockerfiles(repo):
        for stage in stages(path)[1]:
            for run in stage.values("RUN"):
                assert not re.search(r"pip3?\s+install[^&;|]*\btransformers\b", run), f"{path}: {run}"
                assert not re.search(r"pip3?\s+install[^&;|]*(\s-U\b|--upgrade\b)", run), f"{path}: {run}"
            for instruction in ("ENV", "ARG"):
                for key, value in stage.pairs(instruction).items():
                    if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                        pytest.fail(f"{path}: {instruction} {key} would put a secret in the image (value {value!r})")


def test_secret_check_catches_a_token_argument(tmp_path: Path) -> None:
    """The check above can fail: an ARG HF_TOKEN is what it looks for."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:3.12-slim\nARG HF_TOKEN=""\nENV VLLM_API_KEY=abc\n')
    [stage] = stages(bad)[1]
    flagged = [k for ins in ("ENV", "ARG") for k in stage.pairs(ins) if SECRET_NAME.search(k)]
    assert flagged == ["VLLM_API_KEY", "HF_TOKEN"]


def test_oci_labels(repo: Path, vllm_dockerfile: tuple[list[str], list[Stage]]) -> None:
    runtime = vllm_dockerfile[1][0]
    labels = runtime.pairs("LABEL")
    prefix = "org.opencontainers.image."
    assert {k.removeprefix(prefix) for k in labels if k.startswith(prefix)} >= OCI_LABELS
    assert labels[prefix + "base.name"] == f"docker.io/{VLLM_PIN}"
    version = re.search(r'(?m)^version = "([^"]+)"$', (repo / "pyproject.toml").read_text()).group(1)
    assert runtime.pairs("ARG")["VERSION"] == version
    assert labels[prefix + "version"] == "${VERSION}"


def test_baked_target_carries_the_checkpoint_offline(vllm_dockerfile: tuple[list[str], list[Stage]]) -> None:
    baked = vllm_dockerfile[1][1]
    env = baked.pairs("ENV")
    assert env["HF_HUB_OFFLINE"] == "1"
    # Not under a cache path compose or the chart mount a volume on, where the volume would hide it.
    assert not env["HF_HUB_CACHE"].startswith(("/root/.cache/", "/cache/", "/tmp/"))
    [run] = baked.values("RUN")
    assert "--mount=type=secret,id=hf_token" in run  # a build secret: never a layer, never the history
    assert "python3 -m deploy fetch" in run and "python3 -m deploy verify" in run
    # The offline switch comes after the download, or the download could not happen.
    order = [i for i, _ in baked.instructions]
    assert order.index("RUN") < len(order) - 1 - order[::-1].index("ENV")


def test_dockerignore_keeps_secrets_and_history_out_of_the_context(repo: Path) -> None:
    patterns = [
        line.strip()
        for line in (repo / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".env", "docker/secrets"} <= set(patterns)
    # What the images COPY must stay in the context.
    for needed in ("deploy", "smoke_tests", "pyproject.toml", "README.md"):
        assert not [p for p in patterns if p in {needed, needed + "/", "*"}], needed


def hub_cache(vllm_python: str, environ: dict[str, str]) -> str:
    """Where huggingface_hub (the vLLM venv's, as in the image) reads and writes the hub under ``environ``."""
    code = "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)"
    env = {"PATH": os.environ["PATH"], "HOME": "/root", **environ}
    return subprocess.run([vllm_python, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()


def test_every_deployment_of_the_baked_image_finds_its_snapshot(
    repo: Path, vllm_python: str, vllm_dockerfile: tuple[list[str], list[Stage]]
) -> None:
    """The chart and compose set HF_HOME to their own volumes; with the baked image, huggingface_hub (and so vLLM
    and `deploy verify`) must still look where the build put the snapshot."""
    from tests.contract.helm_chart import CHART, container, env_of, template

    runtime, baked = vllm_dockerfile[1]
    image_env = {**runtime.pairs("ENV"), **baked.pairs("ENV")}
    [run] = baked.values("RUN")
    exported = dict(re.findall(r"export (HF_HOME|HF_HUB_CACHE)=(\S+?);", run))
    written = hub_cache(vllm_python, {**image_env, **exported})
    assert written.startswith("/opt/gemma4-serve/")

    deployments: dict[str, dict[str, str]] = {}
    for values in ("default", "offline"):
        deployment = template(CHART / "ci" / f"{values}-values.yaml").one("Deployment")
        for ctr in (container(deployment), container(deployment, "fetch", init=True)):
            deployments[f"helm {values} {ctr['name']}"] = {k: v for k, v in env_of(ctr).items() if isinstance(v, str)}
    compose = yaml.safe_load((repo / "compose.yaml").read_text())["services"]
    for name in ("prefetch", "vllm"):
        listed = compose[name].get("environment", [])
        deployments[f"compose {name}"] = dict(e.split("=", 1) for e in listed if "=" in e and "${" not in e)
    for where, environ in deployments.items():
        assert hub_cache(vllm_python, {**image_env, **environ}) == written, where
