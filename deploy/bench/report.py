"""Benchmark results: the JSON document (every request kept), the card's Markdown table and a fuller one.

A result document (schema 2) is::

    {"tool": "gemma4-serve bench", "schema": 2, "created": ..., "complete": true, "interrupted": false,
     "versions": {"gemma4-serve": ..., "python": ..., "aiohttp": ..., "numpy": ...},
     "server": {"base_url", "model", "engine", "format", "max_model_len", "version": {/version's JSON}},
     "config": {every option of the run, the API key left out},
     "summary": [{one line of headline numbers per stage}],
     "runs": [stage, ...]}

A stage ("run", for compatibility with schema 1) is one (engine, format, batch or request rate, context,
images) cell: its settings, ``metrics`` (vLLM's definitions, plus ``failures`` grouped by cause and
``estimated_output_tokens``), GPU memory and ``samples``, one record per request. Documents from several
``deploy bench`` invocations (vLLM, SGLang, llama.cpp, other GPUs) merge by concatenating their runs;
schema 1 files (before goodput SLOs and sweeps) still load.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deploy.errors import UsageError

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
TOOL = "gemma4-serve bench"
CARD_HEADER = ("Engine", "Format", "Batch", "ctx", "tok/s", "TTFT p50", "TTFT p99", "VRAM")
# Where `--fill-card` puts the card's table in a Markdown file.
CARD_BEGIN = "<!-- gemma4-serve bench: card table -->"
CARD_END = "<!-- /gemma4-serve bench: card table -->"


class ReportError(UsageError):
    """A result file cannot be read, merged or written; the message names the file and the problem."""


def summary_row(run: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one stage, for the document's ``summary``."""
    m = run["metrics"]
    return {
        "engine": run.get("engine"),
        "format": run.get("format"),
        "batch": run.get("batch"),
        "request_rate": run.get("request_rate"),
        "ctx": run.get("ctx"),
        "images": run.get("images", 0),
        "completed": m["completed"],
        "failed": m["failed"],
        "incomplete": bool(run.get("interrupted")),
        "request_throughput": m["request_throughput"],
        "output_throughput": m["output_throughput"],
        "ttft_p50_ms": m["ttft_ms"]["p50"],
        "ttft_p99_ms": m["ttft_ms"]["p99"],
        "tpot_p50_ms": m["tpot_ms"]["p50"],
        "itl_p50_ms": m["itl_ms"]["p50"],
        "e2el_p50_ms": m["e2el_ms"]["p50"],
        "request_goodput": m.get("request_goodput"),
    }


def document(
    runs: list[dict[str, Any]],
    *,
    interrupted: bool = False,
    config: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    versions: dict[str, Any] | None = None,
    created: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document for ``runs``."""
    doc: dict[str, Any] = {
        "tool": TOOL,
        "schema": SCHEMA,
        "created": created,
        "complete": not interrupted,
        "interrupted": interrupted,
        "versions": versions or {},
        "server": server or {},
        "config": config or {},
        "summary": [summary_row(r) for r in runs],
        "runs": runs,
    }
    doc.update(extra or {})
    return doc


def load_documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The result documents at ``paths``; :class:`ReportError` for a file that is not one."""
    docs = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ReportError(f"{path}: cannot read a bench result ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("tool") != TOOL or not isinstance(doc.get("runs"), list):
            raise ReportError(f"{path}: not a `python -m deploy bench --json` result file")
        if doc.get("schema") not in READABLE_SCHEMAS:
            raise ReportError(
                f"{path}: result schema {doc.get('schema')} is not one this version reads {READABLE_SCHEMAS}"
            )
        docs.append(doc)
    return docs


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The runs of several result files, in order; :class:`ReportError` for a file that is not one."""
    return [run for doc in load_documents(paths) for run in doc["runs"]]


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, renamed over it when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private; a report gets the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: Path) -> str | None:
    """Why ``path`` could not be written (checked before a run, so a long run never ends in a lost report)."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {path}: {parent} is not a writable folder"
    return None


def fill_card(card: str, runs: list[dict[str, Any]]) -> str:
    """``card`` (Markdown) with the text between the card-table markers replaced by the card's table."""
    pattern = re.compile(re.escape(CARD_BEGIN) + r".*?" + re.escape(CARD_END), re.DOTALL)
    if not pattern.search(card):
        raise ReportError(
            f"the card has no table markers: put {CARD_BEGIN} and {CARD_END} on their own lines where the table belongs"
        )
    return pattern.sub(lambda _: f"{CARD_BEGIN}\n{card_table(runs)}\n{CARD_END}", card, count=1)


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


def load_label(run: dict[str, Any]) -> str:
    """The load a stage ran under: its batch (closed loop), or its request rate and concurrency limit."""
    rate = run.get("request_rate")
    if rate is None:
        return str(run["batch"])
    return f"{rate:g} req/s" + (f", max {run['batch']}" if run.get("batch") else "")


def _sort_key(run: dict[str, Any]) -> tuple[Any, ...]:
    rate = run.get("request_rate")
    return (
        run["engine"],
        run["format"],
        int(run.get("images", 0)),
        int(run["ctx"]),
        rate is not None,
        rate or 0.0,
        int(run.get("batch") or 0),
    )


def _sorted(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(runs, key=_sort_key)


def _pcts(summary: dict[str, Any], names: Iterable[str], fmt: str) -> str:
    """``p50/p99`` cells; ``-`` when nothing was measured (e.g. TPOT of one-token answers)."""
    if summary.get("count", 1) == 0:
        return "-"
    return "/".join(format(summary[p], fmt) for p in names)


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
                    load_label(run),
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
        goodput = "-"
        if m.get("request_goodput") is not None:
            goodput = f"{m['request_goodput']:.2f}"
            if m.get("slo_met") is not None and m["completed"]:
                goodput += f" ({100 * m['slo_met'] / m['completed']:.0f} % met)"
        ok = f"{m['completed']}/{m['failed']}"
        if m.get("estimated_output_tokens"):
            ok += f" ({m['estimated_output_tokens']} estimated)"
        if run.get("interrupted"):
            ok += " INCOMPLETE"
        lines.append(
            _row(
                (
                    run["engine"],
                    run["format"],
                    load_label(run),
                    run["prompt_tokens_label"],
                    run["max_tokens"],
                    run.get("images", 0),
                    ok,
                    f"{m['request_throughput']:.2f}",
                    f"{m['output_throughput']:.1f}",
                    f"{m['max_output_tokens_per_s']:.0f}",
                    _pcts(m["ttft_ms"], ("p50", "p90", "p99"), ".1f"),
                    _pcts(m["tpot_ms"], ("p50", "p99"), ".2f"),
                    _pcts(m["itl_ms"], ("p50", "p99"), ".2f"),
                    _pcts(m["e2el_ms"], ("p50", "p99"), ".0f"),
                    goodput,
                    vram_label(run["vram"]["mib"]),
                )
            )
        )
    return "\n".join(lines)


def failures_table(runs: list[dict[str, Any]]) -> str:
    """Failed requests grouped by cause, per stage; empty when nothing failed."""
    lines = []
    for run in _sorted(runs):
        for group in run["metrics"].get("failures", []):
            lines.append(_row((run["engine"], load_label(run), group["count"], group["cause"])))
    if not lines:
        return ""
    header = ("Engine", "Batch", "Failed", "Cause")
    return "\n".join([_row(header), _row("---" for _ in header), *lines])


def markdown(runs: list[dict[str, Any]], *, interrupted: bool = False) -> str:
    """The Markdown report: the card's table, then the full one, then where each run's numbers came from."""
    parts = ["## Benchmarks", "", card_table(runs), "", "### All metrics", "", full_table(runs), ""]
    if failures := failures_table(runs):
        parts += ["### Failed requests", "", failures, ""]
    if any(run.get("compare_vllm") for run in runs):
        from deploy.bench.compare import comparison_table

        parts += ["### Against `vllm bench serve` (same prompts, same server)", "", comparison_table(runs)]
    slos = {json.dumps(run["metrics"].get("slo"), sort_keys=True) for run in runs if run["metrics"].get("slo")}
    if slos:
        parts += [f"Goodput: requests per second that met every SLO of {', '.join(sorted(slos))}.", ""]
    notes = []
    for run in _sorted(runs):
        host = run.get("gpu") or "GPU not recorded"
        notes.append(
            f"- {run['engine']} {run['format']} batch {load_label(run)} {_ctx_cell(run)}: {run['requests']} "
            f"requests on {host}; prompt lengths {run['prompt_tokens_method']}; VRAM {run['vram']['source']}; "
            f"measured {run['created']}{' (INTERRUPTED: incomplete)' if run.get('interrupted') else ''}"
        )
    parts += [
        "Measured with `python -m deploy bench` (vLLM 0.21.0 metric definitions, docs/benchmarks.md):",
        "",
        *notes,
    ]
    if interrupted:
        parts += ["", "**Interrupted with Ctrl-C: the numbers above cover only the requests that finished.**"]
    return "\n".join(parts) + "\n"


def write(
    runs: list[dict[str, Any]],
    *,
    json_path: Path | None,
    markdown_path: Path | None,
    interrupted: bool,
    **meta: Any,
) -> None:
    """Write the JSON and/or Markdown report, each whole or not at all (folders are created).

    ``meta``: the document's ``config``, ``server``, ``versions``, ``created`` and ``extra`` (see :func:`document`).
    """
    if json_path is not None:
        doc = document(runs, interrupted=interrupted, **meta)
        write_atomic(json_path, json.dumps(doc, indent=1) + "\n")
    if markdown_path is not None:
        write_atomic(markdown_path, markdown(runs, interrupted=interrupted))
