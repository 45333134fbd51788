"""Report rendering, merging runs from several engines, labels, and the exact-length prompt fit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deploy.bench import report
from deploy.bench.client import BenchError
from deploy.bench.gpu_memory import parse_metrics_mib, parse_nvidia_smi_mib
from deploy.bench.metrics import RequestSample, compute_metrics
from deploy.bench.server_info import guess_format, pick_model
from deploy.bench.workload import fit_prompt, make_messages


def run(
    engine: str, fmt: str, batch: int, *, ttft: float, vram: float | None = None, images: int = 0
) -> dict[str, Any]:
    samples = [
        RequestSample(index=i, success=True, start=i, ttft=ttft, itl=[0.01] * 9, latency=ttft + 0.09, output_tokens=10)
        for i in range(4)
    ]
    return {
        "engine": engine,
        "format": fmt,
        "batch": batch,
        "ctx": 32768,
        "images": images,
        "prompt_tokens_label": "32512",
        "prompt_tokens_method": "/tokenize",
        "max_tokens": 256,
        "requests": 4,
        "gpu": "NVIDIA L4, 23034 MiB",
        "created": "2026-01-01T00:00:00Z",
        "vram": {"mib": vram, "source": "nvidia-smi" if vram else "not measured"},
        "metrics": compute_metrics(samples, 2.0),
        "samples": [s.to_json() for s in samples],
    }


def test_card_table_has_the_cards_columns_and_one_row_per_run() -> None:
    table = report.card_table(
        [run("vLLM v0.21.0", "W8A16", 8, ttft=0.25, vram=7 * 1024), run("vLLM v0.21.0", "W8A16", 1, ttft=0.1)]
    )
    lines = table.splitlines()
    assert lines[0] == "| Engine | Format | Batch | ctx | tok/s | TTFT p50 | TTFT p99 | VRAM |"
    assert lines[2] == "| vLLM v0.21.0 | W8A16 | 1 | 32k | 20.0 | 100 ms | 100 ms | not measured |"
    assert lines[3] == "| vLLM v0.21.0 | W8A16 | 8 | 32k | 20.0 | 250 ms | 250 ms | 7.0 GiB |"


def test_runs_from_three_engines_merge_into_one_table(tmp_path: Path) -> None:
    files = []
    for name, runs in {
        "vllm": [run("vLLM v0.21.0", "W8A16", 1, ttft=0.1), run("vLLM v0.21.0", "W8A16", 8, ttft=0.2, images=1)],
        "sglang": [run("SGLang v0.5.11", "BF16", 1, ttft=0.12)],
        "llamacpp": [run("llama.cpp b9297", "Q8_0 GGUF", 1, ttft=0.3)],
    }.items():
        path = tmp_path / f"{name}.json"
        report.write(runs, json_path=path, markdown_path=None, interrupted=False)
        files.append(path)
    merged = report.load(files)
    assert len(merged) == 4
    table = report.card_table(merged)
    engines = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines()[2:]]
    assert engines == ["SGLang v0.5.11", "llama.cpp b9297", "vLLM v0.21.0", "vLLM v0.21.0"]
    assert "32k + 1 img" in table
    md = report.markdown(merged)
    assert "### All metrics" in md and md.count("| vLLM v0.21.0 |") == 4  # 2 rows in each table
    # the JSON keeps every sample
    assert len(json.loads(files[0].read_text())["runs"][0]["samples"]) == 4


def test_merge_rejects_files_that_are_not_results(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(report.ReportError, match="not a `python -m deploy bench --json` result"):
        report.load([bad])
    with pytest.raises(report.ReportError, match="cannot read"):
        report.load([tmp_path / "missing.json"])


@pytest.mark.parametrize(
    ("model", "label"),
    [
        ("88plug/Gemma4-E2B-it-W8A16", "W8A16"),
        ("google/gemma-4-e2b-it", "?"),
        ("ggml-org/gemma-4-E2B-it-GGUF:Q8_0", "Q8_0 GGUF"),
        ("gemma-4-e2b-it-IQ4_XS.gguf", "IQ4_XS GGUF"),
        ("x/gemma-bf16", "BF16"),
    ],
)
def test_format_is_guessed_from_the_model_id(model: str, label: str) -> None:
    assert guess_format(model) == label


def test_model_choice_errors_name_the_fix() -> None:
    with pytest.raises(BenchError, match="fix --model"):
        pick_model([{"id": "a"}], "b", "http://x")
    with pytest.raises(BenchError, match="choose one with --model"):
        pick_model([{"id": "a"}, {"id": "b"}], None, "http://x")
    assert pick_model([{"id": "a"}], None, "http://x")["id"] == "a"


def test_gpu_memory_parsers() -> None:
    metrics = '# HELP x\nDCGM_FI_DEV_FB_USED{gpu="0"} 7321\nvllm:num_requests_running{model_name="m"} 1\n'
    assert parse_metrics_mib(metrics) == 7321.0
    assert parse_metrics_mib('nvidia_smi_memory_used_bytes{uuid="u"} 2147483648\n') == 2048.0
    assert parse_metrics_mib("vllm:kv_cache_usage_perc 0.5\n") is None
    assert parse_nvidia_smi_mib("7321\n1024\n") == 7321.0
    assert parse_nvidia_smi_mib("[N/A]\n") is None


def fake_counter(per_word: int, base: int) -> Any:
    """A server-side token count: fixed template cost, per_word tokens per filler word, one per ' .'."""

    async def count(messages: list[dict[str, Any]]) -> int:
        text = messages[0]["content"]
        body = text.split(". ", 1)[1]
        pads = body.count(" .")
        words = len(body.replace(" .", "").split())
        return base + per_word * words + pads

    return count


@pytest.mark.parametrize(("per_word", "target"), [(1, 500), (2, 501), (3, 32000), (2, 7)])
def test_prompts_are_fitted_to_the_exact_length(per_word: int, target: int) -> None:
    count = fake_counter(per_word, base=7)
    words, pad, tokens = asyncio.run(fit_prompt(count, lambda w, p: make_messages(1, w, [], 0, p), target, 0))
    assert tokens == target
    assert asyncio.run(count(make_messages(1, words, [], 0, pad))) == target


def test_a_target_below_the_template_cost_is_refused() -> None:
    with pytest.raises(BenchError, match="shorter than the 7 tokens"):
        asyncio.run(fit_prompt(fake_counter(1, 7), lambda w, p: make_messages(1, w, [], 0, p), 5, 0))


def test_format_falls_back_to_vllms_root_and_llamacpps_model_path() -> None:
    import httpx

    from deploy.bench.client import ServerClient
    from deploy.bench.server_info import detect_format

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/props":
            return httpx.Response(
                200, json={"model_path": "/models/gemma-4-E2B-it-Q4_0.gguf", "build_info": "b11312-x"}
            )
        return httpx.Response(404)

    async def detect(card: dict[str, Any]) -> str:
        client = ServerClient("http://test")
        client.http = httpx.AsyncClient(base_url="http://test", transport=httpx.MockTransport(handler))
        async with client:
            return await detect_format(client, card)

    assert asyncio.run(detect({"id": "gemma-4-e2b-it", "root": "88plug/Gemma4-E2B-it-W8A16"})) == "W8A16"
    assert asyncio.run(detect({"id": "gemma-4-e2b-it"})) == "Q4_0 GGUF"
