"""Checkpoint headers, `deploy fetch` (offline cache) and `deploy verify` on tiny real Gemma 4 checkpoints."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deploy.checkpoint.verify import VerifyError, verify
from deploy.checkpoint.weights import read_header, snapshot_tensors, weights_by_component
from deploy.planner.model import GemmaModel
from tests.fixtures.fake_hub import COMMIT, hub_app
from tests.fixtures.servers import layout_hf_cache, run_asgi

REPO = Path(__file__).resolve().parents[2]
DTYPE_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "I32": 4, "I64": 8, "I8": 1}


def deploy_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, **env: str
) -> subprocess.CompletedProcess:
    """`python -m deploy ARGS` in this process (verify imports torch via compressed-tensors: seconds per process)."""
    from deploy.__main__ import main

    for key in [k for k in os.environ if k.startswith(("GEMMA4_", "HF_HUB_OFFLINE", "HF_TOKEN"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def deploy(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GEMMA4_", "HF_"))}
    environ.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-m", "deploy", *args], capture_output=True, text=True, env=environ, timeout=120, check=False
    )


@pytest.mark.parametrize("which", ["tiny_checkpoint", "tiny_w8a16_checkpoint"])
def test_header_sizes_match_the_files(which: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which) / "model.safetensors"
    tensors, expected_size = read_header(path)
    assert expected_size == path.stat().st_size
    for name, info in tensors.items():
        assert info.nbytes == math.prod(info.shape) * DTYPE_BYTES[info.dtype], name
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert sum(t.nbytes for t in tensors.values()) == path.stat().st_size - 8 - header_len


def test_component_counts_from_headers_match_the_config_model(tiny_checkpoint: Path) -> None:
    """deploy.planner.model's arithmetic, on the tiny config, equals the elements transformers wrote."""
    model = GemmaModel.load(tiny_checkpoint / "config.json")
    elements: dict[str, int] = {}
    for name, info in snapshot_tensors(tiny_checkpoint).items():
        comp = weights_by_component({name: info}).popitem()[0]
        elements[comp] = elements.get(comp, 0) + math.prod(info.shape)
    expected = {c: s.params for c, s in model.components.items() if s.params}
    expected["decoder_other"] += model.num_layers  # one layer_scalar per layer: a buffer in transformers
    assert elements == expected


def test_w8a16_decoder_linears_are_int8_plus_scales(tiny_w8a16_checkpoint: Path) -> None:
    model = GemmaModel.load(tiny_w8a16_checkpoint / "config.json")
    weights = weights_by_component(snapshot_tensors(tiny_w8a16_checkpoint))
    lin = model.components["decoder_linears"]
    # int8 packed four to an int32, one fp32 scale per output channel (the tiny model is fp32), the shape as 2 x int64.
    assert weights["decoder_linears"] == lin.linear_params + 4 * lin.out_channels + 16 * lin.linear_modules


def test_verify_accepts_the_w8a16_snapshot(
    tiny_w8a16_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = deploy_in_process(monkeypatch, capsys, "verify", "--model", str(tiny_w8a16_checkpoint))
    assert proc.returncode == 0, proc.stderr
    assert "scheme: W8A16 int channel, pack-quantized" in proc.stdout
    assert "vision_tower" in proc.stdout.split("left unquantized:")[1]


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_verify_rejects_a_quantized_vision_tower(tiny_w8a16_checkpoint: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    snap = _copy(tiny_w8a16_checkpoint, tmp_path / "snap")
    tensors = load_file(snap / "model.safetensors")
    name = next(n for n in tensors if "vision_tower" in n and n.endswith("up_proj.linear.weight"))
    weight = tensors.pop(name)
    module = name[: -len(".weight")]
    tensors[f"{module}.weight_packed"] = torch.zeros(weight.shape[0], weight.shape[1] // 4, dtype=torch.int32)
    tensors[f"{module}.weight_scale"] = torch.ones(weight.shape[0], 1)
    tensors[f"{module}.weight_shape"] = torch.tensor(list(weight.shape))
    save_file(tensors, snap / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(VerifyError, match=r"quantized, e\.g\. model\.vision_tower"):
        verify(snap)


def test_verify_rejects_a_missing_shard(
    tiny_w8a16_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = _copy(tiny_w8a16_checkpoint, tmp_path / "snap")
    tensors, _ = read_header(snap / "model.safetensors")
    (snap / "model.safetensors").rename(snap / "model-00001-of-00002.safetensors")
    weight_map = dict.fromkeys(tensors, "model-00001-of-00002.safetensors")
    weight_map["model.language_model.extra.weight"] = "model-00002-of-00002.safetensors"
    (snap / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    proc = deploy_in_process(monkeypatch, capsys, "verify", "--model", str(snap))
    assert proc.returncode == 1
    assert "model-00002-of-00002.safetensors: missing shard" in proc.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_bits": 4}, "int 4-bit, expected int 8-bit"),
        ({"strategy": "tensor"}, "strategy 'tensor'"),
        ({"symmetric": False}, "asymmetric"),
    ],
)
def test_verify_rejects_a_wrong_scheme(tiny_w8a16_checkpoint: Path, tmp_path: Path, change: dict, message: str) -> None:
    snap = _copy(tiny_w8a16_checkpoint, tmp_path / "snap")
    config = json.loads((snap / "config.json").read_text())
    config["quantization_config"]["config_groups"]["group_0"]["weights"].update(change)
    (snap / "config.json").write_text(json.dumps(config))
    with pytest.raises(VerifyError, match=message):
        verify(snap)


def test_verify_accepts_w4a16_only_for_a_checkpoint_other_than_the_bundles(
    tiny_w8a16_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GEMMA4_MODEL may name a W4A16 checkpoint (vLLM's same WNA16 scheme); the bundle's own must be W8A16."""
    snap = _copy(tiny_w8a16_checkpoint, tmp_path / "snap")
    config = json.loads((snap / "config.json").read_text())
    config["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 4
    (snap / "config.json").write_text(json.dumps(config))
    proc = deploy_in_process(monkeypatch, capsys, "verify", "--model", str(snap))
    assert proc.returncode == 0, proc.stderr
    assert "scheme: W4A16 int channel, pack-quantized" in proc.stdout
    with pytest.raises(VerifyError, match="int 4-bit, expected int 8-bit"):
        verify(snap)  # the bundle's expectation
    config["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 2
    (snap / "config.json").write_text(json.dumps(config))
    proc = deploy_in_process(monkeypatch, capsys, "verify", "--model", str(snap))
    assert proc.returncode == 1 and "int 2-bit, expected int 4-bit or 8-bit" in proc.stderr


def test_verify_rejects_a_truncated_file_and_the_bf16_checkpoint(
    tiny_w8a16_checkpoint: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    snap = _copy(tiny_w8a16_checkpoint, tmp_path / "snap")
    data = (snap / "model.safetensors").read_bytes()
    (snap / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(VerifyError, match="incomplete or corrupted"):
        verify(snap)
    with pytest.raises(VerifyError, match="no quantization_config"):
        verify(tiny_checkpoint)


def test_offline_fetch_and_verify_use_the_cache(
    tiny_w8a16_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    snap_dir = layout_hf_cache(tiny_w8a16_checkpoint, tmp_path, "gemma4-serve/tiny-w8a16")
    cache = tmp_path / "hub"
    args = ("--model", "gemma4-serve/tiny-w8a16", "--revision", "main", "--cache-dir", str(cache))
    fetched = deploy("fetch", *args, HF_HUB_OFFLINE="1")
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(snap_dir)
    verified = deploy_in_process(monkeypatch, capsys, "verify", *args, HF_HUB_OFFLINE="1")
    assert verified.returncode == 0, verified.stderr

    # Same size, one byte changed: only the sha256 against the LFS blob name can tell.
    blob = (snap_dir / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    corrupted = deploy_in_process(monkeypatch, capsys, "verify", *args, HF_HUB_OFFLINE="1")
    assert corrupted.returncode == 1 and "differs from the Hub's LFS hash" in corrupted.stderr
    assert deploy_in_process(monkeypatch, capsys, "verify", *args, "--no-hash", HF_HUB_OFFLINE="1").returncode == 0


def test_offline_fetch_of_a_missing_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    proc = deploy("fetch", "--model", "org/absent", "--cache-dir", str(tmp_path), HF_HUB_OFFLINE="1")
    assert proc.returncode == 1
    assert "org/absent@main is not in the Hugging Face cache" in proc.stderr and "HF_HUB_OFFLINE" in proc.stderr
    assert deploy("verify", "--model", "org/absent", "--cache-dir", str(tmp_path)).returncode == 1


def test_fetch_defaults_come_from_the_environment(tmp_path: Path) -> None:
    proc = deploy("fetch", "--cache-dir", str(tmp_path), HF_HUB_OFFLINE="1", GEMMA4_MODEL="org/x", GEMMA4_REVISION="v1")
    assert proc.returncode == 1 and "org/x@v1" in proc.stderr


def test_fit_reads_weights_from_a_local_snapshot(
    tiny_w8a16_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = deploy_in_process(
        monkeypatch, capsys, "fit", "--gpu-memory", "8GiB", "--checkpoint", str(tiny_w8a16_checkpoint), "--json"
    )
    doc = json.loads(proc.stdout)
    expected = weights_by_component(snapshot_tensors(tiny_w8a16_checkpoint))
    assert doc["weights_by_component"] == expected and doc["weights_bytes"] == sum(expected.values())
    bad = deploy_in_process(monkeypatch, capsys, "fit", "--gpu-memory", "8GiB", "--checkpoint", "/nonexistent/x/y")
    assert bad.returncode == 2 and "--checkpoint /nonexistent/x/y" in bad.stderr


@pytest.fixture
def fake_hub(tiny_w8a16_checkpoint: Path, tmp_path: Path) -> Iterator[tuple[str, list, Path]]:
    """A stub Hub serving the tiny W8A16 checkpoint (plus a README vLLM does not need) as org/tiny-w8a16."""
    repo = shutil.copytree(tiny_w8a16_checkpoint, tmp_path / "repo")
    (repo / "README.md").write_text("# not needed by vLLM\n")
    requests: list = []
    with run_asgi(hub_app("org/tiny-w8a16", repo, requests)) as url:
        yield url, requests, repo


def test_fetch_downloads_only_what_vllm_needs_then_verify_passes(
    fake_hub: tuple[str, list, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url, requests, repo = fake_hub
    cache = tmp_path / "cache"
    proc = deploy("fetch", "--model", "org/tiny-w8a16", "--cache-dir", str(cache), HF_ENDPOINT=url)
    assert proc.returncode == 0, proc.stderr
    snapshot = Path(proc.stdout.strip())
    assert snapshot.name == COMMIT
    assert {p.name for p in snapshot.iterdir()} == {p.name for p in repo.iterdir()} - {"README.md"}
    assert not any(path.endswith("README.md") and method == "GET" for method, path, _ in requests)
    args = ("--model", "org/tiny-w8a16", "--cache-dir", str(cache))
    assert deploy_in_process(monkeypatch, capsys, "verify", *args, HF_HUB_OFFLINE="1").returncode == 0
    # Offline, fetch is only a cache check and succeeds without a request.
    before = len(requests)
    assert deploy("fetch", *args, HF_HUB_OFFLINE="1", HF_ENDPOINT=url).returncode == 0
    assert len(requests) == before


def test_fetch_and_verify_name_the_commit_a_branch_resolved_to(
    fake_hub: tuple[str, list, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`main` moves: fetch and verify say which commit it was and how to pin it; a pinned commit is checked."""
    url, _, _ = fake_hub
    cache = tmp_path / "cache"
    proc = deploy("fetch", "--model", "org/tiny-w8a16", "--cache-dir", str(cache), HF_ENDPOINT=url)
    assert proc.returncode == 0, proc.stderr
    assert f"resolved to commit {COMMIT}. Pin it: GEMMA4_REVISION={COMMIT}" in proc.stderr
    args = ("verify", "--model", "org/tiny-w8a16", "--cache-dir", str(cache), "--no-hash", "--json")
    branch = deploy_in_process(monkeypatch, capsys, *args, HF_HUB_OFFLINE="1")
    assert branch.returncode == 0, branch.stderr
    assert json.loads(branch.stdout).items() >= {"revision": "main", "commit": COMMIT, "pinned": False}.items()
    assert f"GEMMA4_REVISION={COMMIT}" in branch.stderr
    pinned = deploy_in_process(monkeypatch, capsys, *args, "--revision", COMMIT, HF_HUB_OFFLINE="1")
    assert pinned.returncode == 0 and json.loads(pinned.stdout)["pinned"] is True
    assert "Pin it" not in pinned.stderr
    other = "d" * 40
    missing = deploy_in_process(monkeypatch, capsys, *args, "--revision", other, HF_HUB_OFFLINE="1")
    assert missing.returncode == 1 and f"org/tiny-w8a16@{other} is not in the Hugging Face cache" in missing.stderr


def test_fetch_retries_a_dropped_download_and_reruns_fetch_only_what_is_missing(
    tiny_w8a16_checkpoint: Path, tmp_path: Path
) -> None:
    requests: list = []
    cache = tmp_path / "cache"
    data = (tiny_w8a16_checkpoint / "model.safetensors").read_bytes()
    with run_asgi(hub_app("org/tiny", tiny_w8a16_checkpoint, requests, cut_once={"model.safetensors"})) as url:
        proc = deploy("fetch", "--model", "org/tiny", "--cache-dir", str(cache), HF_ENDPOINT=url)
        assert proc.returncode == 0, proc.stderr
        gets = [r for method, path, r in requests if method == "GET" and path.endswith("model.safetensors")]
        assert len(gets) == 2  # dropped once, retried by huggingface_hub
        assert (Path(proc.stdout.strip()) / "model.safetensors").read_bytes() == data
        requests.clear()
        assert deploy("fetch", "--model", "org/tiny", "--cache-dir", str(cache), HF_ENDPOINT=url).returncode == 0
        assert not [path for method, path, _ in requests if method == "GET" and "/resolve/" in path]


def test_fetch_of_an_unknown_repository_says_so(fake_hub: tuple[str, list, Path], tmp_path: Path) -> None:
    url, _, _ = fake_hub
    proc = deploy("fetch", "--model", "org/nope", "--cache-dir", str(tmp_path), HF_ENDPOINT=url)
    assert proc.returncode == 1
    assert "org/nope does not exist on the Hub or needs a token" in proc.stderr


def test_fit_reads_weights_from_hub_headers_without_downloading(fake_hub: tuple[str, list, Path]) -> None:
    url, requests, repo = fake_hub
    proc = deploy("fit", "--gpu-memory", "8GiB", "--checkpoint", "org/tiny-w8a16", "--json", HF_ENDPOINT=url)
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(proc.stdout)["weights_by_component"] == weights_by_component(snapshot_tensors(repo))
    full_gets = [r for method, path, r in requests if method == "GET" and path.endswith(".safetensors") and not r]
    assert not full_gets  # headers only, by range requests


def test_the_charts_download_step_honours_its_extra_env(fake_hub: tuple[str, list, Path], tmp_path: Path) -> None:
    """The vLLM pod's init container as Helm renders it, run for real: `fetch.extraEnv` points HF_ENDPOINT at a
    mirror (here the stub Hub), and the step downloads from it and verifies, with no other change."""
    from tests.contract.helm_chart import container, env_of, template

    url, requests, _ = fake_hub
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"serving": {"model": "org/tiny-w8a16"}, "fetch": {"extraEnv": [{"name": "HF_ENDPOINT", "value": url}]}}
        )
    )
    rendered = template(values)
    assert rendered.ok, rendered.stderr
    init = container(rendered.one("Deployment"), "fetch", init=True)
    root = tmp_path / "pod"

    def moved(value: str) -> str:  # the pod's volumes (/cache, /tmp), under root
        return re.sub(r"^/(cache|tmp)(?=/|$)", lambda m: str(root / m.group(1)), value)

    environ = {k: moved(v) for k, v in env_of(init).items() if isinstance(v, str)}
    assert environ["HF_ENDPOINT"] == url and environ["HF_HUB_OFFLINE"] == "0"
    (root / "tmp").mkdir(parents=True)
    script = init["args"][0].replace("python3", sys.executable)
    proc = subprocess.run(
        [*init["command"], script],
        capture_output=True,
        text=True,
        timeout=180,
        env={**environ, "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verified org/tiny-w8a16@main" in proc.stdout
    assert any(method == "GET" and "/resolve/" in path for method, path, _ in requests)
    assert (root / "cache/huggingface/hub/models--org--tiny-w8a16/snapshots" / COMMIT).is_dir()
