"""What each server is documented to do, where it differs from vLLM 0.21.0: the suite's only engine switch.

Checks never test ``settings.server`` themselves; they ask the :class:`Engine` for the expectation, and a
``None`` expectation means "not checked on this server" with the reason in :attr:`Engine.not_checked`.
Sources for every value are listed in docs/smoke-tests.md ("Server modes").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

# Finish reasons the OpenAI chat API defines.
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


@dataclass(frozen=True)
class Engine:
    """One server's documented HTTP behaviour, as far as the checks depend on it."""

    name: str
    title: str
    # GET path answering 200 once the model is ready (503 while loading on SGLang and llama.cpp).
    health_path: str | None
    # The JSON body /health answers with when ready; None = any body (vLLM and SGLang send none).
    health_body: dict[str, Any] | None
    # /v1/models entries carry the served context length as `max_model_len`.
    models_max_model_len: bool
    # A completion's `model` field equals the requested model name.
    echoes_model: bool
    # "nested": {"error": {"message", "type", ...}}; "flat": {"object": "error", "message", "code", ...}.
    error_shape: str | None
    unknown_model_status: int | None
    overflow_status: int | None
    # Status codes accepted for an image URL that is not a URL at all.
    bad_image_statuses: tuple[int, int] | None
    # The stream must end with `data: [DONE]`.
    done_required: bool
    # Usage comes in its own chunk with `choices: []` (OpenAI's shape) rather than on any chunk.
    usage_own_chunk: bool
    metrics: tuple[str, ...]
    metrics_hint: str
    # /v1/models is behind the API key (llama.cpp leaves it public).
    models_need_key: bool
    not_checked: dict[str, str] = field(default_factory=dict)
    # `response_format: json_schema` is enforced by constrained decoding (vLLM, SGLang and llama-server do).
    structured_outputs: bool = True

    def require(self, expectation: str) -> Any:
        """The value of ``expectation``, or skip the calling check with the documented reason."""
        value = getattr(self, expectation)
        if value is None or value == () or value is False:
            reason = self.not_checked.get(expectation, f"not documented for {self.title}")
            pytest.skip(f"not checked on --server {self.name}: {reason}")
        return value


VLLM = Engine(
    name="vllm",
    title="vLLM 0.21.0",
    health_path="/health",
    health_body=None,
    models_max_model_len=True,
    echoes_model=True,
    error_shape="nested",
    unknown_model_status=404,
    overflow_status=400,
    bad_image_statuses=(400, 499),
    done_required=True,
    usage_own_chunk=True,
    metrics=(
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds",
    ),
    metrics_hint="vLLM serves them unless started with --disable-log-stats",
    models_need_key=True,
)

SGLANG = Engine(
    name="sglang",
    title="SGLang 0.5.11",
    health_path="/health",
    health_body=None,
    models_max_model_len=True,
    echoes_model=False,
    error_shape="flat",
    unknown_model_status=None,
    overflow_status=400,
    bad_image_statuses=(400, 599),
    done_required=True,
    usage_own_chunk=True,
    metrics=(
        "sglang:num_running_reqs",
        "sglang:num_queue_reqs",
        "sglang:token_usage",
        "sglang:time_to_first_token_seconds",
    ),
    metrics_hint="SGLang serves /metrics only when started with --enable-metrics",
    models_need_key=True,
    not_checked={
        "unknown_model_status": "SGLang's OpenAI handlers do not validate `model`; any name reaches the served model",
        "echoes_model": "SGLang's answer may name the model differently from the request",
    },
)

LLAMACPP = Engine(
    name="llamacpp",
    title="llama.cpp llama-server",
    health_path="/health",
    health_body={"status": "ok"},
    models_max_model_len=False,
    echoes_model=False,
    error_shape="nested",
    unknown_model_status=None,
    overflow_status=400,
    bad_image_statuses=(400, 599),
    done_required=True,
    usage_own_chunk=True,
    metrics=(
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
        "llamacpp:prompt_tokens_total",
        "llamacpp:tokens_predicted_total",
    ),
    metrics_hint="llama-server serves /metrics only when started with --metrics",
    models_need_key=False,
    not_checked={
        "models_max_model_len": "llama-server's /v1/models reports the trained context (meta.n_ctx_train), "
        "not the served one",
        "unknown_model_status": "a single-model llama-server ignores `model` and answers with its one model",
        "echoes_model": "llama-server's answer may name the model differently from the request",
        "models_need_key": "llama-server leaves /v1/models public (/health, /models, /v1/models are open)",
    },
)

GENERIC = Engine(
    name="generic",
    title="an OpenAI-compatible server",
    health_path=None,
    health_body=None,
    models_max_model_len=False,
    echoes_model=False,
    error_shape=None,
    unknown_model_status=None,
    overflow_status=None,
    bad_image_statuses=None,
    done_required=False,
    usage_own_chunk=False,
    metrics=(),
    metrics_hint="",
    models_need_key=False,
    not_checked={
        "health_path": "the OpenAI API defines no health endpoint",
        "models_max_model_len": "the OpenAI API does not report the context length",
        "echoes_model": "servers may name a revision or alias in `model`",
        "error_shape": "error bodies differ between servers",
        "unknown_model_status": "status codes for errors differ between servers",
        "overflow_status": "not every server rejects prompts longer than its context",
        "bad_image_statuses": "status codes for errors differ between servers",
        "done_required": "`data: [DONE]` is optional outside OpenAI's own API (checked only when sent)",
        "usage_own_chunk": "servers may attach usage to the last chunk",
        "metrics": "the OpenAI API defines no metrics endpoint",
        "models_need_key": "which paths an API key protects differs between servers",
        "structured_outputs": "not every OpenAI-compatible server enforces `response_format: json_schema`",
    },
    structured_outputs=False,
)

ENGINES = {e.name: e for e in (VLLM, SGLANG, LLAMACPP, GENERIC)}


def engine(name: str) -> Engine:
    """The :class:`Engine` for ``--server name``."""
    return ENGINES[name]


def error_shape_problem(shape: str, body: Any) -> str | None:
    """Why ``body`` is not an error body of ``shape`` ("nested" or "flat"), or None when it is."""
    if shape == "nested":
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("message"), str) or "type" not in error:
            return f'expected an OpenAI error body {{"error": {{"message": ..., "type": ...}}}}, got {_short(body)}'
        return None
    if body_is_flat_error(body):
        return None
    return f'expected an error body {{"object": "error", "message": ..., "code": ...}}, got {_short(body)}'


def body_is_flat_error(body: Any) -> bool:
    """SGLang's error shape: the ErrorResponse fields at the top level."""
    return isinstance(body, dict) and body.get("object") == "error" and isinstance(body.get("message"), str)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
