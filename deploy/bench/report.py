"""Benchmark results: the JSON document (every sample kept), the card's Markdown table and a fuller one.

A result document is ``{"tool", "schema", "runs": [run, ...]}``; one run is one (engine, format, batch,
context, images) cell with its settings, metrics, GPU memory and samples. Documents from several
``deploy bench`` invocations (vLLM, SGLang, llama.cpp, other GPUs) merge by concatenating their runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = 1
TOOL = "gemma4-serve bench"
CARD_HEADER = ("Engine", "Format", "Batch", "ctx", "tok/s", "TTFT p50", "TTFT p99", "VRAM")


class ReportError(Exception):
    """A result file cannot be read or merged; the message names the file and the problem."""


def document(runs: list[dict[str, Any]], *, interrupted: bool = False) -> dict[str, Any]:
    """The JSON document for ``runs``."""
    return {"tool": TOOL, "schema": SCHEMA, "interrupted": interrupted, "runs": runs}


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The runs of several result files, in order; :class:`ReportError` for a file that is not one."""
    runs: list[dict[str, Any]] = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ReportError(f"{path}: cannot read a bench result ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("tool") != TOOL or not isinstance(doc.get("runs"), list):
            raise ReportError(f"{path}: not a `python -m deploy bench --json` result file")
        if doc.get("schema") != SCHEMA:
            raise ReportError(f"{path}: result schema {doc.get('schema')} is not the supported {SCHEMA}")
        runs.extend(doc["runs"])
    return runs


def ctx_label(tokens: int) -> str:
    """32768 -> '32k', 8000 -> '8000'."""
    return f"{tokens // 1024}k" if tokens >= 1024 and tokens % 1024 == 0 else str(tokens)


def vram_label(mib: float | None) -> str:
    """GPU memory as 'x.x GiB', or 'not measured'."""
    return "not measured" if mib is None else f"{mib / 1024:.1f} GiB"


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _ctx_cell(run: dict[str, Any]) -> str:
    cell = ctx_label(int(run["ctx"]))
    if run.get("images"):
        cell += f" + {run['images']} img"
    return cell


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _sorted(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        runs, key=lambda r: (r["engine"], r["format"], int(r.get("images", 0)), int(r["ctx"]), int(r["batch"]))
    )


def card_table(runs: list[dict[str, Any]]) -> str:
    """The model card's table: Engine | Format | Batch | ctx | tok/s | TTFT p50 | TTFT p99 | VRAM."""
    lines = [_row(CARD_HEADER), _row("---" for _ in CARD_HEADER)]
    for run in _sorted(runs):
        m = run["metrics"]
        lines.append(
            _row(
                (
                    run["engine"],
                    run["format"],
                    run["batch"],
                    _ctx_cell(run),
                    f"{m['output_throughput']:.1f}",
                    _ms(m["ttft_ms"]["p50"]),
                    _ms(m["ttft_ms"]["p99"]),
                    vram_label(run["vram"]["mib"]),
                )
            )
        )
    return "\n".join(lines)


def full_table(runs: list[dict[str, Any]]) -> str:
    """Every headline number of every run, one row each."""
    header = (
        "Engine",
        "Format",
        "Batch",
        "Prompt tok",
        "Output tok",
        "Images",
        "OK/failed",
        "req/s",
        "out tok/s",
        "peak tok/s",
        "TTFT p50/p90/p99 (ms)",
        "TPOT p50/p99 (ms)",
        "ITL p50/p99 (ms)",
        "E2EL p50/p99 (ms)",
        "goodput req/s",
        "VRAM",
    )
    lines = [_row(header), _row("---" for _ in header)]
    for run in _sorted(runs):
        m = run["metrics"]
        goodput = "-" if m.get("request_goodput") is None else f"{m['request_goodput']:.2f}"
        lines.append(
            _row(
                (
                    run["engine"],
                    run["format"],
                    run["batch"],
                    run["prompt_tokens_label"],
                    run["max_tokens"],
                    run.get("images", 0),
                    f"{m['completed']}/{m['failed']}",
                    f"{m['request_throughput']:.2f}",
                    f"{m['output_throughput']:.1f}",
                    f"{m['max_output_tokens_per_s']:.0f}",
                    "/".join(f"{m['ttft_ms'][p]:.1f}" for p in ("p50", "p90", "p99")),
                    "/".join(f"{m['tpot_ms'][p]:.2f}" for p in ("p50", "p99")),
                    "/".join(f"{m['itl_ms'][p]:.2f}" for p in ("p50", "p99")),
                    "/".join(f"{m['e2el_ms'][p]:.0f}" for p in ("p50", "p99")),
                    goodput,
                    vram_label(run["vram"]["mib"]),
                )
            )
        )
    return "\n".join(lines)


def markdown(runs: list[dict[str, Any]], *, interrupted: bool = False) -> str:
    """The Markdown report: the card's table, then the full one, then where each run's numbers came from."""
    parts = ["## Benchmarks", "", card_table(runs), "", "### All metrics", "", full_table(runs), ""]
    notes = []
    for run in _sorted(runs):
        host = run.get("gpu") or "GPU not recorded"
        notes.append(
            f"- {run['engine']} {run['format']} batch {run['batch']} {_ctx_cell(run)}: {run['requests']} requests "
            f"on {host}; prompt lengths {run['prompt_tokens_method']}; VRAM {run['vram']['source']}; "
            f"measured {run['created']}{' (INTERRUPTED: partial)' if run.get('interrupted') else ''}"
        )
    parts += [
        "Measured with `python -m deploy bench` (vLLM 0.21.0 metric definitions, docs/benchmarks.md):",
        "",
        *notes,
    ]
    if interrupted:
        parts += ["", "**Interrupted with Ctrl-C: the numbers above cover only the requests that finished.**"]
    return "\n".join(parts) + "\n"


def write(runs: list[dict[str, Any]], *, json_path: Path | None, markdown_path: Path | None, interrupted: bool) -> None:
    """Write the JSON and/or Markdown report (folders are created)."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document(runs, interrupted=interrupted), indent=1) + "\n")
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(markdown(runs, interrupted=interrupted))
