"""Our numbers next to ``vllm bench serve``'s for the same cells (``--compare-vllm``).

Both clients sent the same prompts to the same server under the same load, one after the other, and both
use vLLM's metric definitions with token counts from the server's usage, so a difference is a difference
in measurement (or in the server between the two runs), not in definitions.
"""

from __future__ import annotations

from typing import Any

# (label, metrics key, summary key or None) of every compared number.
COMPARED: tuple[tuple[str, str, str | None], ...] = (
    ("completed requests", "completed", None),
    ("failed requests", "failed", None),
    ("request throughput (req/s)", "request_throughput", None),
    ("output throughput (tok/s)", "output_throughput", None),
    ("TTFT p50 (ms)", "ttft_ms", "p50"),
    ("TTFT p99 (ms)", "ttft_ms", "p99"),
    ("TPOT p50 (ms)", "tpot_ms", "p50"),
    ("TPOT p99 (ms)", "tpot_ms", "p99"),
    ("ITL p50 (ms)", "itl_ms", "p50"),
    ("ITL p99 (ms)", "itl_ms", "p99"),
    ("E2EL p50 (ms)", "e2el_ms", "p50"),
    ("E2EL p99 (ms)", "e2el_ms", "p99"),
    ("goodput (req/s)", "request_goodput", None),
    ("answers held back to the end", "held_back_requests", None),
    ("tokens per streamed message", "tokens_per_message", None),
)


def value(metrics: dict[str, Any], key: str, part: str | None) -> float | None:
    """One number out of a metrics dictionary (ours, or vLLM's in the same layout)."""
    item = metrics.get(key)
    if part is not None:
        item = item.get(part) if isinstance(item, dict) else None
    return None if item is None else float(item)


def difference(ours: float | None, theirs: float | None) -> float | None:
    """Relative difference of ours from theirs, in percent; None when either is missing or theirs is 0."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return 100.0 * (ours - theirs) / theirs


def rows(run: dict[str, Any]) -> list[tuple[str, float | None, float | None, float | None]]:
    """(label, ours, vLLM's, difference %) for one cell that was compared."""
    theirs = (run.get("compare_vllm") or {}).get("metrics") or {}
    out = []
    for label, key, part in COMPARED:
        a, b = value(run["metrics"], key, part), value(theirs, key, part)
        if a is None and b is None:
            continue
        out.append((label, a, b, difference(a, b)))
    return out


def _cell(number: float | None) -> str:
    if number is None:
        return "-"
    return f"{number:.0f}" if abs(number) >= 100 or number == int(number) else f"{number:.2f}"


def comparison_table(runs: list[dict[str, Any]]) -> str:
    """A Markdown table per compared cell: metric | deploy bench | vllm bench serve | difference."""
    parts = []
    for run in runs:
        compared = run.get("compare_vllm")
        if not compared:
            continue
        load = f"batch {run['batch']}" if run.get("request_rate") is None else f"{run['request_rate']:g} req/s"
        parts.append(f"{load}, {run['requests']} requests, same prompts, same server ({compared['tool']}):")
        parts.append("")
        if compared.get("error"):
            parts += [f"vllm bench serve failed: {compared['error'].splitlines()[-1]}", ""]
            continue
        parts += ["| metric | deploy bench | vllm bench serve | difference |", "| --- | --- | --- | --- |"]
        for label, ours, theirs, diff in rows(run):
            shown = "-" if diff is None else f"{diff:+.1f} %"
            parts.append(f"| {label} | {_cell(ours)} | {_cell(theirs)} | {shown} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"
