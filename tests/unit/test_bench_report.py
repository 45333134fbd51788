"""Report rendering, merging runs from several engines, labels, and the exact-length prompt fit."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
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


def test_an_overshoot_past_the_servers_context_is_stepped_back_from() -> None:
    from deploy.bench.workload import TOO_LONG

    inner = fake_counter(4, base=7)  # a small tokenizer: 4 tokens per word; the server takes 1024 at most

    async def count(messages: list[dict[str, Any]]) -> int:
        tokens = await inner(messages)
        return TOO_LONG if tokens > 1024 else tokens

    for target in (256, 1000):
        *_, tokens = asyncio.run(fit_prompt(count, lambda w, p: make_messages(1, w, [], 0, p), target, 0))
        assert tokens == target


def test_a_target_below_the_template_cost_is_refused() -> None:
    with pytest.raises(BenchError, match="shorter than the 7 tokens"):
        asyncio.run(fit_prompt(fake_counter(1, 7), lambda w, p: make_messages(1, w, [], 0, p), 5, 0))


class CannedClient:
    """A ServerClient whose requests are answered from a table (path -> (status, JSON))."""

    def __new__(cls, answers: dict[str, tuple[int, Any]]) -> Any:
        from deploy.bench.client import Reply, ServerClient

        class _Client(ServerClient):
            async def request(self, method: str, path: str, **_: Any) -> Reply:
                status, body = answers.get(path, (404, {"detail": "Not Found"}))
                return Reply(status, json.dumps(body).encode())

        return _Client("http://test")


def test_format_falls_back_to_vllms_root_and_llamacpps_model_path() -> None:
    from deploy.bench.server_info import detect_format

    client = CannedClient({"/props": (200, {"model_path": "/models/gemma-4-E2B-it-Q4_0.gguf", "build_info": "b1-x"})})
    assert asyncio.run(detect_format(client, {"id": "gemma-4-e2b-it", "root": "88plug/Gemma4-E2B-it-W8A16"})) == "W8A16"
    assert asyncio.run(detect_format(client, {"id": "gemma-4-e2b-it"})) == "Q4_0 GGUF"
    assert asyncio.run(detect_format(CannedClient({}), {"id": "gemma-4-e2b-it"})) == "?"


def test_engine_label_from_version_endpoints() -> None:
    from deploy.bench.server_info import detect_engine

    vllm = CannedClient({"/version": (200, {"version": "0.21.0"})})
    assert asyncio.run(detect_engine(vllm, {"id": "m", "owned_by": "vllm"})) == "vLLM v0.21.0"
    llamacpp = CannedClient({"/props": (200, {"build_info": "b11312-abc"})})
    assert asyncio.run(detect_engine(llamacpp, {"id": "m", "owned_by": "llamacpp"})) == "llama.cpp b11312"


def test_the_document_carries_summary_stages_requests_config_server_and_versions(tmp_path: Path) -> None:
    runs = [run("vLLM v0.21.0", "W8A16", 1, ttft=0.1), run("vLLM v0.21.0", "W8A16", 8, ttft=0.3)]
    path = tmp_path / "r.json"
    report.write(
        runs,
        json_path=path,
        markdown_path=None,
        interrupted=True,
        config={"concurrency": [1, 8]},
        server={"engine": "vLLM v0.21.0"},
        versions={"aiohttp": "3.14.5"},
        created="2026-01-01T00:00:00Z",
    )
    doc = json.loads(path.read_text())
    assert doc["schema"] == 2 and doc["complete"] is False and doc["interrupted"] is True
    assert (doc["config"], doc["server"], doc["versions"]) == (
        {"concurrency": [1, 8]},
        {"engine": "vLLM v0.21.0"},
        {"aiohttp": "3.14.5"},
    )
    assert [row["batch"] for row in doc["summary"]] == [1, 8]
    assert doc["summary"][1]["ttft_p50_ms"] == pytest.approx(300.0)
    assert len(doc["runs"][0]["samples"]) == 4
    assert report.load([path]) == doc["runs"]


def test_schema_1_files_still_merge(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(
        json.dumps({"tool": report.TOOL, "schema": 1, "interrupted": False, "runs": [run("e", "f", 1, ttft=0.1)]})
    )
    assert len(report.load([old])) == 1
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"tool": report.TOOL, "schema": 9, "runs": []}))
    with pytest.raises(report.ReportError, match="schema 9"):
        report.load([future])


def test_writes_are_whole_or_absent(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "r.json"
    report.write_atomic(path, "{}\n")
    assert path.read_text() == "{}\n"
    assert path.stat().st_mode & 0o777 == 0o666 & ~report._umask()  # not the temporary file's 0600

    class WriteFailedError(Exception):
        pass

    import os

    real_fdopen = os.fdopen

    def failing_fdopen(*args: Any, **kwargs: Any) -> Any:
        handle = real_fdopen(*args, **kwargs)
        handle.write = lambda _data: (_ for _ in ()).throw(WriteFailedError())  # type: ignore[method-assign]
        return handle

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fdopen", failing_fdopen)
        with pytest.raises(WriteFailedError):
            report.write_atomic(path, "new content")
    assert path.read_text() == "{}\n"  # the old file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]  # no temporary file left behind


def test_output_paths_are_checked_before_a_run(tmp_path: Path) -> None:
    assert report.check_writable(tmp_path / "new" / "dir" / "r.json") is None
    assert "is a folder" in (report.check_writable(tmp_path) or "")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "not a writable folder" in (report.check_writable(blocker / "r.json") or "")


def test_the_card_table_is_filled_between_markers() -> None:
    card = f"# Card\n\nintro\n\n{report.CARD_BEGIN}\n| old | table |\n{report.CARD_END}\n\nafter\n"
    filled = report.fill_card(card, [run("vLLM v0.21.0", "W8A16", 1, ttft=0.1)])
    assert "| old | table |" not in filled and filled.startswith("# Card\n\nintro\n\n")
    assert filled.endswith(f"{report.CARD_END}\n\nafter\n")
    assert "| vLLM v0.21.0 | W8A16 | 1 | 32k | 20.0 | 100 ms | 100 ms | not measured |" in filled
    assert report.fill_card(filled, [run("vLLM v0.21.0", "W8A16", 8, ttft=0.2)]).count(report.CARD_BEGIN) == 1
    with pytest.raises(report.ReportError, match="no table markers"):
        report.fill_card("# Card without markers\n", [])


def test_open_loop_stages_are_labelled_by_rate() -> None:
    closed = run("vLLM v0.21.0", "W8A16", 4, ttft=0.1)
    rated = {**run("vLLM v0.21.0", "W8A16", 4, ttft=0.1), "request_rate": 2.5}
    unlimited = {**rated, "batch": None}
    assert [report.load_label(r) for r in (closed, rated, unlimited)] == ["4", "2.5 req/s, max 4", "2.5 req/s"]
    assert "| 2.5 req/s, max 4 |" in report.card_table([rated])


def test_markdown_groups_failures_and_names_the_slo() -> None:
    samples = [RequestSample(index=0, success=True, ttft=0.1, latency=0.2, output_tokens=2, itl=[0.1])]
    samples += [RequestSample(index=i, error="HTTP 503: overloaded") for i in (1, 2)]
    r = run("vLLM v0.21.0", "W8A16", 1, ttft=0.1)
    from deploy.bench.metrics import Slo

    r["metrics"] = compute_metrics(samples, 1.0, slo=Slo(ttft_ms=300))
    md = report.markdown([r])
    assert "| vLLM v0.21.0 | 1 | 2 | HTTP 503: overloaded |" in md
    assert 'Goodput: requests per second that met every SLO of {"ttft_ms": 300}' in md
    assert "| 1.00 (100 % met) |" in md


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([(10, 100), (20, 200), (30, 150), (40, 300)], [0, 1, 3]),
        ([(10, 100), (10, 120), (5, 120)], [2]),  # same throughput at a lower latency dominates
        ([(50, 10)], [0]),
        ([], []),
    ],
)
def test_pareto_front(points: list[tuple[float, float]], front: list[int]) -> None:
    from deploy.bench.plot import pareto_front

    assert pareto_front(points) == front


def test_the_sweep_plot_is_a_png(tmp_path: Path) -> None:
    from deploy.bench.plot import plot_sweep

    runs = [run("vLLM v0.21.0", "W8A16", b, ttft=0.05 * b) for b in (1, 2, 4)]
    path = tmp_path / "sweep.png"
    plot_sweep(runs, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_poisson_arrivals_are_seeded_and_have_the_rate() -> None:
    import math

    from deploy.bench.runner import arrival_times

    times = arrival_times(2000, 50.0, seed=1)
    assert times == arrival_times(2000, 50.0, seed=1) and times != arrival_times(2000, 50.0, seed=2)
    assert times[0] == 0.0 and all(b >= a for a, b in itertools.pairwise(times))
    assert 2000 / times[-1] == pytest.approx(50.0, rel=0.1)
    assert arrival_times(3, math.inf, seed=0) == [0.0, 0.0, 0.0]


def test_comparison_table_puts_both_clients_side_by_side() -> None:
    from deploy.bench.compare import comparison_table

    r = run("vLLM v0.21.0", "W8A16", 4, ttft=0.1)
    theirs = json.loads(json.dumps(r["metrics"]))
    theirs["ttft_ms"]["p50"] = 80.0
    r["compare_vllm"] = {"tool": "vllm bench serve 0.21.0", "metrics": theirs, "error": None}
    table = comparison_table([r])
    assert "| TTFT p50 (ms) | 100 | 80 | +25.0 % |" in table
    assert "| completed requests | 4 | 4 | +0.0 % |" in table
    r["compare_vllm"] = {"tool": "vllm bench serve 0.21.0", "metrics": None, "error": "boom\nlast line"}
    assert "vllm bench serve failed: last line" in comparison_table([r])


def test_the_agreement_check_pools_requests_of_rounds_and_skips_held_back_rounds() -> None:
    from tests.fixtures.bench_agreement import agreement

    def stage(ttft: float, theirs_ttft: float, held: int = 0) -> dict[str, Any]:
        r = run("vLLM v0.21.0", "W8A16", 4, ttft=ttft)
        r["metrics"]["held_back_requests"] = held
        theirs = json.loads(json.dumps(r["metrics"]))
        records = [dict(s, ttft=theirs_ttft) for s in r["samples"]]
        r["compare_vllm"] = {"metrics": theirs, "samples": records, "server_ttft_mean_ms": 1000 * theirs_ttft - 1}
        r["server_ttft_mean_ms"] = 1000 * ttft - 0.5
        return r

    # pooled: ours 4 x 100 ms + 4 x 100 ms, theirs 4 x 98 ms + 4 x 102 ms -> p50 100 vs 100
    table, ok = agreement([[stage(0.100, 0.102)], [stage(0.100, 0.098)], [stage(0.5, 0.1, held=4)]], 5.0)
    assert ok, table
    assert "2 of 3 rounds" in table and "8 and 8 requests pooled" in table
    rows: dict[str, str] = {}  # the pooled table's rows (the summary table below repeats some labels)
    for line in table.splitlines():
        rows.setdefault(line.split(" | ")[0], line)
    assert rows["| TTFT p50 (ms)"].startswith("| TTFT p50 (ms) | 100.000 | 100.000 | +0.0 % | ")
    assert rows["| TTFT p50 (ms)"].endswith(" | yes |")
    # the other pooled metrics come from the same records: 9 gaps of 10 ms -> ITL 10 ms, TPOT 10 ms, E2E 190 ms;
    # every ITL is 10 ms in both, so no resample can make them differ
    assert rows["| ITL p99 (ms)"] == "| ITL p99 (ms) | 10.000 | 10.000 | +0.0 % | +0.0 .. +0.0 % | yes |"
    assert rows["| E2E to the last token p50 (ms)"].startswith("| E2E to the last token p50 (ms) | 190.000 | 190.000 |")
    # the server's own TTFT mean beside each client's: ours 0.5 ms above it, vLLM's client 1 ms
    assert "99.500 ms during ours, 99.000 ms during vLLM's" in table
    assert "deploy bench +0.500 ms, vllm bench serve +1.000 ms" in table
    table, ok = agreement([[stage(0.100, 0.120)]], 5.0)
    assert not ok and "| TTFT p50 (ms) | 100.000 | 120.000 | -16.7 % | -16.7 .. -16.7 % | NO |" in table
    table, ok = agreement([[stage(0.5, 0.1, held=4)]], 5.0)
    assert not ok and "no comparison" in table


def test_the_agreement_interval_tells_a_real_difference_from_sampling_noise() -> None:
    from tests.fixtures.bench_agreement import difference_interval

    def records(ttfts: list[float]) -> list[dict[str, Any]]:
        return [{"success": True, "ttft": t, "itl": [0.01] * 9, "output_tokens": 10} for t in ttfts]

    rng = np.random.default_rng(7)
    same = rng.lognormal(np.log(0.02), 0.3, 200).tolist()
    other = rng.lognormal(np.log(0.02), 0.3, 200).tolist()
    # two samples of one distribution: the interval of the p99 difference is wide and holds zero
    lo, hi = difference_interval(records(same), records(other), "ttft_ms", 99.0, resamples=500)
    assert lo < 0 < hi and hi - lo > 10
    # a client that adds 20 % to every TTFT: the interval of the median difference holds 20 and excludes zero
    lo, hi = difference_interval(records([t * 1.2 for t in same]), records(same), "ttft_ms", 50.0, resamples=500)
    assert 0 < lo < 20 < hi


def test_vllm_counters_sum_the_series_and_give_the_cache_share_and_server_ttft_between_two_readings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    from deploy.bench.server_info import counter_deltas, vllm_counters

    text = (
        "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.\n"
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 96.0\n'
        'vllm:prefix_cache_hits_total{engine="1",model_name="m"} 32.0\n'
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 256.0\n'
        'vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e9\n'
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0\n'
        'vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.5\n'
        'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 20.0\n'
    )
    answers = iter([httpx.Response(200, text=text), httpx.Response(200, text="other 1\n"), httpx.Response(404)])
    monkeypatch.setattr(httpx, "get", lambda *a, **k: next(answers))
    first = vllm_counters("http://x/metrics")
    assert first == {
        "prefix_cache_hits_total": 128.0,
        "prefix_cache_queries_total": 256.0,
        "time_to_first_token_seconds_sum": 0.5,
        "time_to_first_token_seconds_count": 20.0,
    }
    assert vllm_counters("http://x/metrics") is None  # no such series: not a vLLM
    assert vllm_counters("http://x/metrics") is None
    later = {
        "prefix_cache_hits_total": 228.0,
        "prefix_cache_queries_total": 456.0,
        "time_to_first_token_seconds_sum": 0.9,
        "time_to_first_token_seconds_count": 30.0,
    }
    assert counter_deltas(first, later) == pytest.approx({"prefix_cache_hit_share": 0.5, "server_ttft_mean_ms": 40.0})
    assert counter_deltas(first, first) == {"prefix_cache_hit_share": None, "server_ttft_mean_ms": None}
    assert counter_deltas(None, later) == {"prefix_cache_hit_share": None, "server_ttft_mean_ms": None}
