"""vLLM arguments as the planner sees them: a profile mapping (plus extra command-line flags) -> ServeArgs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from deploy.planner.budget import FitError, ServeArgs

# Every flag that changes the memory budget; the rest of a profile does not matter to the planner.
_FLAGS: dict[str, str] = {
    "max-model-len": "max_model_len",
    "kv-cache-dtype": "kv_cache_dtype",
    "max-num-seqs": "max_num_seqs",
    "max-num-batched-tokens": "max_num_batched_tokens",
    "cpu-offload-gb": "cpu_offload_gb",
    "enforce-eager": "enforce_eager",
    "gpu-memory-utilization": "gpu_memory_utilization",
    "limit-mm-per-prompt": "limit_mm_per_prompt",
    "mm-processor-kwargs": "mm_processor_kwargs",
    "language-model-only": "language_model_only",
}


def parse_tokens(value: Any) -> int:
    """A token count the way vLLM reads it: ``32768``, ``32K``/``32k`` (x1024 / x1000), ``1M``/``1m``."""
    text = str(value).strip()
    units = {"k": 1000, "K": 1024, "m": 1000**2, "M": 1024**2}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError as exc:
        raise FitError(f"max-model-len {value!r} is not a token count (for example 32768 or 32K)") from exc


def parse_limit_mm(value: Any) -> dict[str, int]:
    """``--limit-mm-per-prompt`` as JSON text or mapping -> {modality: count}."""
    if isinstance(value, dict):
        data = value
    else:
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise FitError(
                f'--limit-mm-per-prompt {value!r} is not JSON: write it like \'{{"image": 2, "audio": 0}}\''
            ) from exc
    if not isinstance(data, dict):
        raise FitError(f"--limit-mm-per-prompt {value!r} must be a JSON object of modality counts")
    out = {}
    for k, v in data.items():
        count = v.get("count") if isinstance(v, dict) else v
        if not isinstance(count, int):
            raise FitError(f"--limit-mm-per-prompt {k}: {v!r} is not a count")
        out[str(k)] = count
    return out


def from_mapping(config: dict[str, Any], base: ServeArgs | None = None) -> ServeArgs:
    """ServeArgs from a profile mapping (vLLM flag names); keys the planner does not model are ignored."""
    fields: dict[str, Any] = {}
    for key, value in config.items():
        name = _FLAGS.get(key)
        if name is None:
            continue
        if name == "max_model_len":
            fields[name] = parse_tokens(value)
        elif name == "limit_mm_per_prompt":
            fields[name] = parse_limit_mm(value)
        elif name == "mm_processor_kwargs":
            kwargs = value if isinstance(value, dict) else json.loads(value)
            if "max_soft_tokens" in kwargs:
                fields["image_soft_tokens"] = int(kwargs["max_soft_tokens"])
        elif name in ("enforce_eager", "language_model_only"):
            fields[name] = bool(value)
        elif name == "kv_cache_dtype":
            fields[name] = str(value)
        elif name in ("cpu_offload_gb", "gpu_memory_utilization"):
            fields[name] = float(value)
        else:
            fields[name] = int(value)
    base = base or ServeArgs()
    merged = {**base.__dict__, **fields}
    return ServeArgs(**merged)


def overrides_from_argv(argv: list[str]) -> dict[str, Any]:
    """The memory flags in a ``vllm serve`` argument list (GEMMA4_EXTRA_ARGS), as profile keys.

    Dotted forms (``--limit-mm-per-prompt.image 2``) are merged into one mapping, as vLLM does.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in _FLAGS:
        if flag in ("enforce-eager", "language-model-only"):
            parser.add_argument(f"--{flag}", action="store_true", default=None)
        else:
            parser.add_argument(f"--{flag}")
    dotted: dict[str, int] = {}
    rest = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--limit-mm-per-prompt."):
            key, _, inline = arg[len("--limit-mm-per-prompt.") :].partition("=")
            if inline:
                dotted[key] = int(inline)
            elif i + 1 < len(argv):
                dotted[key] = int(argv[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    known, _ = parser.parse_known_args(rest)
    out = {flag: getattr(known, attr) for flag, attr in ((f, f.replace("-", "_")) for f in _FLAGS)}
    out = {k: v for k, v in out.items() if v is not None}
    if dotted:
        out["limit-mm-per-prompt"] = {**parse_limit_mm(out.get("limit-mm-per-prompt", "{}")), **dotted}
    return out
