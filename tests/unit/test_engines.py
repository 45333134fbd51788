"""deploy/engines/__init__.py: engine descriptions, argv rendering, and the fetch/verify step on tiny real files.

The GGUF files here are real GGUF files written with the `gguf` package (a few bytes of tensor data),
and the Hugging Face cache is a real cache layout read by huggingface_hub with downloads switched off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.engines import (
    EngineError,
    FileSpec,
    args_script,
    fetch,
    gguf_architecture,
    list_engines,
    load_engine,
    placeholder_paths,
    render_argv,
    sha256_of,
    verify_file,
    verify_snapshot,
)
from tests.conftest import REPO
from tests.fixtures import engine_cache
from tests.fixtures.engine_cache import write_gguf

REVISION = "0123456789abcdef0123456789abcdef01234567"


def cache_file(cache: Path, repo: str, name: str, revision: str = REVISION) -> Path:
    """Where huggingface_hub keeps ``repo``'s file ``name`` at ``revision`` (default: the tests' pin)."""
    return engine_cache.cache_file(cache, repo, name, revision)


@pytest.fixture
def tiny_engines(tmp_path: Path) -> Path:
    """An engines directory with a GGUF engine whose pins describe the tiny files the tests write."""
    directory = tmp_path / "engines"
    directory.mkdir()
    (directory / "tinycpp.yaml").write_text(
        yaml.safe_dump(
            {
                "engine": "tinycpp",
                "release": "b1",
                "command": ["/app/llama-server"],
                "devices": {"gpu": {"image": "x/y:server-b1", "args": {"n-gpu-layers": "all"}}},
                "checkpoint": {
                    "repo": "org/tiny-GGUF",
                    "revision": REVISION,
                    "files": {"mmproj": {"name": "mmproj.gguf", "architecture": "clip"}},
                },
                "variants": {"q8_0": {"files": {"model": {"name": "tiny-Q8_0.gguf", "architecture": "gemma4"}}}},
                "args": {"model": "{model}", "mmproj": "{mmproj}", "ctx-size": 32768, "jinja": True},
            },
            sort_keys=False,
        )
    )
    return directory


# ---- the committed engine files ---------------------------------------------------------------------


def test_the_engines_are_sglang_and_llamacpp() -> None:
    assert list_engines() == ["llamacpp", "sglang"]
    for name in list_engines():
        assert load_engine(name).name == name


def test_llamacpp_serves_a_gguf_with_its_projector_at_32k_with_all_layers_on_the_gpu() -> None:
    engine = load_engine("llamacpp")
    assert engine.variants == ["q8_0", "q4_0"]
    for variant in engine.variants:
        roles = {f.role: f for f in engine.files(variant)}
        assert set(roles) == {"model", "mmproj"}
        assert roles["model"].architecture == "gemma4" and roles["mmproj"].architecture == "clip"
        assert roles["model"].name.endswith(f"-{variant.upper()}.gguf")
    gpu = render_argv(engine, placeholder_paths(engine), "gpu")
    assert gpu[gpu.index("--ctx-size") + 1] == "32768"
    assert gpu[gpu.index("--n-gpu-layers") + 1] == "all"
    assert gpu[gpu.index("--mmproj") + 1].endswith("mmproj-gemma-4-E2B-it-Q8_0.gguf")
    cpu = render_argv(engine, placeholder_paths(engine), "cpu")
    assert "--n-gpu-layers" not in cpu and "--fit" not in cpu
    assert engine.image("gpu").endswith(":server-cuda-" + engine.data["release"])
    assert engine.image("cpu").endswith(":server-" + engine.data["release"])


def test_sglang_is_a_release_with_gemma4_serving_the_bf16_original() -> None:
    engine = load_engine("sglang")
    major, minor, patch = (int(x) for x in engine.data["release"].split("."))
    assert (major, minor, patch) >= (0, 5, 11)  # Gemma 4 model code first ships in 0.5.11
    assert engine.image("gpu") == f"lmsysorg/sglang:v{engine.data['release']}-cu129"
    assert engine.repo == "google/gemma-4-e2b-it"
    argv = render_argv(engine, placeholder_paths(engine))
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    assert argv[argv.index("--context-length") + 1] == "32768"
    assert argv[argv.index("--model-path") + 1] == "/models/google/gemma-4-e2b-it"
    with pytest.raises(EngineError, match="no device 'cpu'"):
        render_argv(engine, placeholder_paths(engine), "cpu")


def test_every_engine_serves_the_same_model_name_and_port_as_vllm() -> None:
    """Clients and the smoke suite address all engines alike: model `gemma-4-e2b-it` on port 8000."""
    vllm = yaml.safe_load((REPO / "deploy/profiles/default.yaml").read_text())
    assert load_engine("sglang").args()["served-model-name"] == vllm["served-model-name"]
    assert load_engine("llamacpp").args()["alias"] == vllm["served-model-name"]
    for name in list_engines():
        assert load_engine(name).args()["port"] == vllm["port"] == 8000


# ---- loading and rendering ---------------------------------------------------------------------------


def test_unknown_names_are_refused_with_the_choices(tiny_engines: Path) -> None:
    with pytest.raises(EngineError, match="unknown engine 'vllm': choose one of tinycpp"):
        load_engine("vllm", tiny_engines)
    engine = load_engine("tinycpp", tiny_engines)
    with pytest.raises(EngineError, match="no variant 'q2_k': choose one of q8_0"):
        engine.variant("q2_k")
    assert engine.variant(None) == engine.variant("") == "q8_0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"checkpoint": {"repo": "a/b", "revision": "main"}}, "40-character commit hash"),
        ({"devices": {"gpu": {"image": "x/y:latest"}}}, "pinned to a release tag"),
        ({"args": {"ctx_size": 1}}, "flag names like 'ctx-size'"),
        ({"engine": "other"}, "must match the file name"),
    ],
)
def test_malformed_engine_files_are_refused(tiny_engines: Path, change: dict, message: str) -> None:
    path = tiny_engines / "tinycpp.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **change}))
    with pytest.raises(EngineError, match=message):
        load_engine("tinycpp", tiny_engines)


def test_render_fills_paths_applies_device_overrides_and_appends_extra_args(tiny_engines: Path) -> None:
    engine = load_engine("tinycpp", tiny_engines)
    paths = {"model": "/c/My Models/m.gguf", "mmproj": "/c/p.gguf"}
    argv = render_argv(engine, paths, "gpu", "--parallel 2 --alias 'my model'")
    assert argv == [
        "/app/llama-server",
        *("--model", "/c/My Models/m.gguf", "--mmproj", "/c/p.gguf", "--ctx-size", "32768", "--jinja"),
        *("--n-gpu-layers", "all", "--parallel", "2", "--alias", "my model"),
    ]
    with pytest.raises(EngineError, match="needs \\{mmproj\\}"):
        render_argv(engine, {"model": "/m"})
    with pytest.raises(EngineError, match="not valid shell words"):
        render_argv(engine, paths, "gpu", "--alias 'unclosed")


def test_the_args_file_gives_the_server_exactly_the_rendered_argv(tmp_path: Path) -> None:
    """What the compose entrypoint does: source the file, then exec "$@" (here: print each word)."""
    argv = ["/app/llama-server", "--model", "/c/a b/it's.gguf", "--alias", "x;y $(z)", "--jinja"]
    script = tmp_path / "llamacpp.args"
    script.write_text(args_script(argv))
    out = subprocess.run(
        ["/bin/sh", "-c", '. "$0" && printf "%s\\n" "$@"', str(script)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert out.splitlines() == argv


# ---- verification -------------------------------------------------------------------------------------


def test_a_tiny_gguf_passes_and_each_wrong_pin_is_named(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", "gemma4")
    assert gguf_architecture(path) == "gemma4"
    size, digest = path.stat().st_size, sha256_of(path)
    verify_file(FileSpec("model", "m.gguf", size=size, sha256=digest, architecture="gemma4"), path)
    with pytest.raises(EngineError, match=f"{size} bytes, but m.gguf at the pinned revision has {size + 1}"):
        verify_file(FileSpec("model", "m.gguf", size=size + 1), path)
    with pytest.raises(EngineError, match="SHA-256 differs"):
        verify_file(FileSpec("model", "m.gguf", sha256="0" * 64), path)
    with pytest.raises(EngineError, match="architecture is 'gemma4', expected 'clip' for the mmproj file"):
        verify_file(FileSpec("mmproj", "m.gguf", architecture="clip"), path)
    with pytest.raises(EngineError, match="is missing"):
        verify_file(FileSpec("model", "m.gguf"), tmp_path / "absent.gguf")


def test_a_file_that_is_not_gguf_or_is_cut_short_is_refused(tmp_path: Path) -> None:
    html = tmp_path / "error-page.gguf"
    html.write_text("<html>rate limited</html>")
    with pytest.raises(EngineError, match="not a GGUF file"):
        gguf_architecture(html)
    good = write_gguf(tmp_path / "m.gguf", "gemma4").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good[:40])
    with pytest.raises(EngineError, match="cannot be read"):
        gguf_architecture(cut)


def test_snapshot_check_wants_the_model_type_and_every_shard(tmp_path: Path) -> None:
    spec = {"allow_patterns": ["*"], "model_type": "gemma4"}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma4"}))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"x")
    with pytest.raises(EngineError, match=r"weight shards missing: model-00002-of-00002\.safetensors"):
        verify_snapshot(spec, tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"x")
    verify_snapshot(spec, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3"}))
    with pytest.raises(EngineError, match="model_type is 'gemma3', expected 'gemma4'"):
        verify_snapshot(spec, tmp_path)


def test_fetch_from_the_cache_verifies_and_returns_paths(tiny_engines: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    engine = load_engine("tinycpp", tiny_engines)
    with pytest.raises(EngineError, match="not in the cache and downloads are off"):
        fetch(engine, cache_dir=cache, local_files_only=True)
    write_gguf(cache_file(cache, engine.repo, "tiny-Q8_0.gguf"), "gemma4")
    write_gguf(cache_file(cache, engine.repo, "mmproj.gguf"), "clip")
    paths = fetch(engine, cache_dir=cache, local_files_only=True)
    assert set(paths) == {"model", "mmproj"}
    assert Path(paths["model"]).name == "tiny-Q8_0.gguf" and REVISION in paths["model"]
    # A projector where the model should be is caught, not served.
    shutil.copy(paths["mmproj"], paths["model"])
    with pytest.raises(EngineError, match="architecture is 'clip', expected 'gemma4'"):
        fetch(engine, cache_dir=cache, local_files_only=True)


def test_cli_fetch_offline_refuses_a_wrong_file_under_the_pinned_name(tmp_path: Path) -> None:
    """The real llamacpp pins: a tiny GGUF cached under the Q8_0 name fails the size check, exit 2."""
    engine = load_engine("llamacpp")
    cache = tmp_path / "hub"
    for spec in engine.files("q8_0"):
        write_gguf(cache_file(cache, engine.repo, spec.name, engine.revision), spec.architecture)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("HF_TOKEN_FILE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "engine", "fetch", "llamacpp", "--write-args", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "at the pinned revision has 557368064" in proc.stderr or "has 4967494592" in proc.stderr, proc.stderr
    assert not (tmp_path / "a").exists()  # nothing for the server to start from


def test_cli_argv_prints_the_command_and_names_bad_choices() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "GEMMA4_LLAMACPP_QUANT": "q4_0"}
    run = [sys.executable, "-m", "deploy", "engine"]
    ok = subprocess.run([*run, "argv", "llamacpp"], capture_output=True, text=True, timeout=60, env=env, check=True)
    assert "--model /models/gemma-4-E2B-it-Q4_0.gguf" in ok.stdout
    bad = subprocess.run(
        [*run, "argv", "llamacpp", "--variant", "q3"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert bad.returncode == 2 and "no variant 'q3': choose one of q8_0, q4_0" in bad.stderr
    listing = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env, check=True).stdout
    assert "lmsysorg/sglang:v0.5.11-cu129" in listing and "server-cuda-b11312" in listing
