"""Each install profile works on its own, and the fetch image's command runs with exactly its lock.

A fresh venv per profile gets the project (a real, non-editable install of this checkout) with only that
extra, its versions held to the dev lock (the ones the rest of the tests ran with). In each, the console
scripts run `--help` and one real command; a subcommand whose extra is missing exits 2 and names the extra
to install, never a traceback. The fetch image is rehearsed the way its Dockerfile builds it: a venv holding
requirements/fetch.txt alone, the package on PYTHONPATH, its ENTRYPOINT run against a Hugging Face cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.engines import load_engine
from tests.fixtures.engine_cache import cache_file, write_gguf

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused at once
DEV_LOCK = str(REPO / "requirements/dev.txt")
ENGINE_FETCH = ["engine", "fetch", "llamacpp", "--device", "cpu"]


def uv() -> str:
    path = os.environ.get("UV") or shutil.which("uv")
    if not path:
        pytest.fail("uv is not available: run the tests through `make test` (it sets UV from scripts/bootstrap.sh)")
    return path


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    # The machine's environment (certificates, proxies, uv's cache) minus what would leak this checkout or
    # the dev venv into the venv under test.
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    full_env.update({"PATH": "/usr/bin:/bin", **(env or {})})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=full_env)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's package files, so building it leaves nothing in the repository."""
    dest = tmp_path_factory.mktemp("src") / "gemma4-serve"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("deploy", "smoke_tests"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    return dest


def make_venv(root: Path, source: Path, extra: str | None) -> Path:
    """A venv with gemma4-serve (and ``extra``) installed, versions constrained to the dev lock."""
    venv = root / (extra or "base")
    proc = run([uv(), "venv", "--quiet", "--python", "python3", str(venv)])
    assert proc.returncode == 0, proc.stderr
    target = f"{source}[{extra}]" if extra else str(source)
    proc = run(
        [uv(), "pip", "install", "--quiet", "--python", str(venv / "bin/python"), "--constraint", DEV_LOCK, target],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return venv


def offline(hf_home: Path) -> dict[str, str]:
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


def assert_needs_extra(proc: subprocess.CompletedProcess[str], extra: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"install 'gemma4-serve[{extra}]'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def fill_llamacpp_cache(hub: Path) -> None:
    """The CPU llama.cpp default's pinned files, as sparse GGUFs of their pinned sizes."""
    engine = load_engine("llamacpp")
    for spec in engine.files(engine.variant("")):
        write_gguf(cache_file(hub, engine.repo, spec.name, engine.revision), spec.architecture, spec.size)


def test_base_install_runs_the_smoke_suite_and_names_missing_extras(tmp_path: Path, source: Path) -> None:
    venv = make_venv(tmp_path, source, None)
    smoke, deploy = str(venv / "bin/gemma4-smoke"), str(venv / "bin/gemma4-deploy")
    assert run([smoke, "--help"]).returncode == 0
    proc = run([smoke, "--base-url", DEAD_URL, "--wait", "0"], env={"HOME": str(tmp_path)})
    assert proc.returncode == 3, proc.stdout + proc.stderr  # exit 3: the server never became ready
    help_ = run([deploy, "--help"])
    assert help_.returncode == 0 and "unavailable" in help_.stdout, help_.stdout + help_.stderr
    profiles = run([deploy, "profiles"])
    assert profiles.returncode == 0 and "gpu-24gb" in profiles.stdout, profiles.stderr
    # Their help may come without the extra; running them names it.
    for command in ("bench", "quality"):
        shown = run([deploy, command, "--help"])
        assert shown.returncode in (0, 2) and "Traceback" not in shown.stderr, shown.stderr
    assert_needs_extra(run([deploy, "bench", "--base-url", DEAD_URL, "--requests", "1"]), "bench")
    # These parse on the base install; their handlers' deferred imports name the extra.
    assert_needs_extra(run([deploy, "fetch"], {"HF_HUB_OFFLINE": "1"}), "deploy")
    assert_needs_extra(run([deploy, *ENGINE_FETCH], {"HF_HUB_OFFLINE": "1"}), "engines")


def test_deploy_extra_runs_the_planner_and_checkpoint_tools(tmp_path: Path, source: Path) -> None:
    venv = make_venv(tmp_path, source, "deploy")
    deploy = str(venv / "bin/gemma4-deploy")
    for command in ("fit", "fetch", "verify"):
        assert run([deploy, command, "--help"]).returncode == 0, command
    fit = run([deploy, "fit", "--gpu-memory", "24GiB", "--compute-capability", "8.9"])
    assert fit.returncode == 0 and "GiB" in fit.stdout, fit.stdout + fit.stderr
    hf_home = tmp_path / "hf"
    (hf_home / "hub").mkdir(parents=True)
    verify = run([deploy, "verify"], env=offline(hf_home))
    assert verify.returncode != 0 and "is not in the Hugging Face cache" in verify.stderr, verify.stderr
    assert "Traceback" not in verify.stderr
    # gguf comes with the engines extra only: the engine step's GGUF check names it.
    fill_llamacpp_cache(hf_home / "hub")
    fetch = run([deploy, *ENGINE_FETCH], offline(hf_home))
    assert_needs_extra(fetch, "engines")


def test_bench_extra_runs_the_bench_client(tmp_path: Path, source: Path) -> None:
    venv = make_venv(tmp_path, source, "bench")
    deploy = str(venv / "bin/gemma4-deploy")
    assert run([deploy, "bench", "--help"]).returncode == 0
    assert run([deploy, "quality", "--help"]).returncode == 0
    proc = run([deploy, "bench", "--base-url", DEAD_URL, "--requests", "1"], env={"HOME": str(tmp_path)})
    assert proc.returncode != 0 and "cannot connect" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    hf_home = tmp_path / "hf"
    fill_llamacpp_cache(hf_home / "hub")
    engine = run([deploy, *ENGINE_FETCH], offline(hf_home))
    assert_needs_extra(engine, "engines")  # gguf is not in the bench extra


def test_engines_extra_verifies_an_engine_cache(tmp_path: Path, source: Path) -> None:
    venv = make_venv(tmp_path, source, "engines")
    deploy = str(venv / "bin/gemma4-deploy")
    assert run([deploy, "engine", "--help"]).returncode == 0
    hf_home = tmp_path / "hf"
    fill_llamacpp_cache(hf_home / "hub")
    proc = run([deploy, *ENGINE_FETCH], offline(hf_home))
    assert proc.returncode == 0 and "/app/llama-server" in proc.stdout, proc.stderr


def test_fetch_image_command_runs_with_exactly_its_lock(tmp_path: Path) -> None:
    """docker/fetch/Dockerfile, rehearsed: its lock alone (hashes, no deps), deploy/ on PYTHONPATH, its ENTRYPOINT."""
    venv = tmp_path / "venv"
    assert run([uv(), "venv", "--quiet", "--python", "python3", str(venv)]).returncode == 0
    python = str(venv / "bin/python")
    lock = str(REPO / "requirements/fetch.txt")
    proc = run([uv(), "pip", "sync", "--quiet", "--require-hashes", "--python", python, lock], timeout=300)
    assert proc.returncode == 0, proc.stderr
    opt = tmp_path / "opt"
    shutil.copytree(REPO / "deploy", opt / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    hf_home = tmp_path / "hf"
    fill_llamacpp_cache(hf_home / "hub")
    env = {"PYTHONPATH": str(opt), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    entrypoint = [python, "-m", "deploy", "engine"]  # the Dockerfile's ENTRYPOINT, with the venv's python
    assert run([*entrypoint, "--help"], env).returncode == 0
    out = tmp_path / "run/llamacpp.args"
    proc = run([*entrypoint, "fetch", "llamacpp", "--device", "cpu", "--write-args", str(out)], env)
    assert proc.returncode == 0, proc.stderr
    assert "\nset -- /app/llama-server " in out.read_text(), out.read_text()
    # The image stays small: no torch came in with the lock.
    assert "No module named 'torch'" in run([python, "-c", "import torch"], env).stderr
