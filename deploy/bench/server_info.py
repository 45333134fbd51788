"""What the benchmark is talking to: the served model, the engine label and a format guess.

Labels are what make rows from different engines merge into one table, so they follow one spelling:
``vLLM v0.21.0``, ``SGLang v0.5.11``, ``llama.cpp b9297``; ``--engine`` and ``--format`` override them.
"""

from __future__ import annotations

import re
from typing import Any

from deploy.bench.client import BenchError, ServerClient
from deploy.prometheus_text import sample_sums

_OWNER_LABEL = {"vllm": "vLLM", "sglang": "SGLang", "llamacpp": "llama.cpp", "llama.cpp": "llama.cpp"}
# Checkpoint format spelled in the model id, most specific first.
_FORMATS = (
    "W8A16",
    "W4A16",
    "W8A8",
    "FP8",
    "NVFP4",
    "AWQ",
    "GPTQ",
    "IQ4_XS",
    "Q4_K_M",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
    "Q4_0",
    "BF16",
    "FP16",
)


def pick_model(models: list[dict[str, Any]], requested: str | None, base_url: str) -> dict[str, Any]:
    """The model card to benchmark: the one named ``requested``, or the only one served."""
    ids = [str(m.get("id")) for m in models]
    if requested:
        for card in models:
            if card.get("id") == requested:
                return card
        raise BenchError(f"{base_url} does not serve model {requested!r}; it serves {ids or 'nothing'}: fix --model")
    if not models:
        raise BenchError(f"{base_url}/v1/models lists no model; is the server still loading?")
    if len(models) > 1:
        raise BenchError(f"{base_url} serves several models {ids}: choose one with --model")
    return models[0]


def guess_format(model_id: str) -> str:
    """The quantisation format named in a model id (``...-W8A16`` -> ``W8A16``), else ``?``."""
    upper = model_id.upper()
    for name in _FORMATS:
        if re.search(rf"(^|[^A-Z0-9]){re.escape(name)}($|[^A-Z0-9])", upper):
            return f"{name} GGUF" if name.startswith(("Q", "IQ")) else name
    return "?"


async def detect_engine(client: ServerClient, card: dict[str, Any]) -> str:
    """The engine label, e.g. ``vLLM v0.21.0``.

    Read from ``/version`` (vLLM), ``/get_server_info`` (SGLang), ``/props`` (llama.cpp) or ``/v1/models``'
    ``owned_by``; the bare owner name when nothing says the version.
    """
    owner = str(card.get("owned_by") or "")
    name = _OWNER_LABEL.get(owner.lower())
    if name in (None, "vLLM") and (version := await _json_field(client, "/version", "version")):
        return f"vLLM v{version}"
    if name in (None, "SGLang") and (version := await _json_field(client, "/get_server_info", "version")):
        return f"SGLang v{version}"
    if name in (None, "llama.cpp"):
        build = await _json_field(client, "/props", "build_info")
        if match := re.match(r"(b\d+)", str(build or "")):
            return f"llama.cpp {match[1]}"
    return name or owner or "unknown"


async def detect_format(client: ServerClient, card: dict[str, Any]) -> str:
    """The format label, e.g. ``W8A16`` or ``Q8_0 GGUF``; ``?`` when nothing names it.

    Read from the model id, vLLM's ``root`` (the checkpoint behind a served name), llama.cpp's ``/props``
    ``model_path`` or SGLang's ``/get_server_info`` ``model_path``.
    """
    for name in (card.get("id"), card.get("root")):
        if name and (label := guess_format(str(name))) != "?":
            return label
    for path in ("/props", "/get_server_info"):
        value = await _json_field(client, path, "model_path")
        if value and (label := guess_format(str(value))) != "?":
            return label
    return "?"


async def _json_field(client: ServerClient, path: str, key: str) -> Any:
    """``key`` of the JSON object at ``path``, or None when the endpoint is missing, fails or is not JSON."""
    reply = await client.try_get(path)
    if reply is None or reply.status != 200:
        return None
    try:
        return reply.json().get(key)
    except (ValueError, AttributeError):
        return None


# Counters read around a client's run (vLLM 0.21.0 names), summed over label sets.
COUNTERS = (
    "prefix_cache_hits_total",
    "prefix_cache_queries_total",
    "time_to_first_token_seconds_sum",
    "time_to_first_token_seconds_count",
)


def vllm_counters(metrics_url: str, api_key: str | None = None) -> dict[str, float] | None:
    """The prefix-cache token counters and the TTFT histogram's sum and count of vLLM's ``/metrics``.

    Keys: ``prefix_cache_hits_total``, ``prefix_cache_queries_total``, ``time_to_first_token_seconds_sum`` and
    ``..._count`` (summed over label sets); None where the server exposes none of them (not a vLLM). Read
    before and after a client's run, they say how much of its prompts the server found cached and the mean
    TTFT the server itself measured for those requests, which a client's TTFT can only exceed.
    """
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(metrics_url, headers=headers, timeout=5.0, trust_env=False)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    found = sample_sums(response.text, (f"vllm:{name}" for name in COUNTERS))
    return {name.removeprefix("vllm:"): value for name, value in found.items()} or None


def counter_deltas(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float | None]:
    """Between two :func:`vllm_counters` readings: ``prefix_cache_hit_share`` and ``server_ttft_mean_ms``.

    Each is None where a reading or the counter is missing, or nothing was counted in between.
    """

    def delta(name: str) -> float | None:
        if before is None or after is None or name not in before or name not in after:
            return None
        return after[name] - before[name]

    hits, queries = delta("prefix_cache_hits_total"), delta("prefix_cache_queries_total")
    ttft_sum, ttft_count = delta("time_to_first_token_seconds_sum"), delta("time_to_first_token_seconds_count")
    return {
        "prefix_cache_hit_share": hits / queries if hits is not None and queries else None,
        "server_ttft_mean_ms": 1000.0 * ttft_sum / ttft_count if ttft_sum is not None and ttft_count else None,
    }
