"""The sweep plot: output throughput against latency, one point per stage, with the Pareto front marked.

Three panels share the y axis (output tokens/s, higher is better) and differ in the latency on the x axis
(TTFT p50, TPOT p50 and E2EL p50, lower is better). A point is on the Pareto front when no other point of
its series has both lower latency and higher throughput: those are the only settings worth choosing
between; the rest are dominated. Each point is labelled with its load (``c=8`` for batch 8, ``4 req/s``).
Runs with different engines, formats, contexts or image counts are separate series.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.bench.report import write_atomic

PANELS: tuple[tuple[str, str], ...] = (
    ("ttft_ms", "TTFT p50 (ms)"),
    ("tpot_ms", "TPOT p50 (ms)"),
    ("e2el_ms", "E2EL p50 (ms)"),
)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indexes of the points (latency, throughput) no other point beats on both; by rising latency.

    Ties: of two points with the same latency only the higher throughput is on the front; a point with the
    same throughput as a lower-latency one is dominated.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def point_label(run: dict[str, Any]) -> str:
    """``c=8`` for a closed loop of 8, ``4 req/s`` for an open loop."""
    if run.get("request_rate") is None:
        return f"c={run['batch']}"
    return f"{run['request_rate']:g} req/s"


def series(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped into the plot's series (same engine, format, context, output length and images)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        name = f"{run.get('engine', '?')} {run.get('format', '?')}, ctx {run.get('ctx')}, out {run.get('max_tokens')}"
        if run.get("images"):
            name += f", {run['images']} img"
        groups.setdefault(name, []).append(run)
    return groups


def _mostly_held_back(run: dict[str, Any]) -> bool:
    """Whether most answers of a stage arrived in one burst (see ``held_back_requests`` in metrics.py)."""
    m = run["metrics"]
    return bool(m.get("held_back_requests")) and m["held_back_requests"] * 2 > m["completed"]


def plot_sweep(runs: Sequence[dict[str, Any]], path: Path) -> None:
    """Write the sweep plot of ``runs`` (successful stages only) to ``path`` as a PNG, whole or not at all."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    usable = [r for r in runs if r["metrics"]["completed"]]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.2 * len(PANELS), 4.6), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, xlabel) in zip(axes, PANELS, strict=True):
        for n, (name, group) in enumerate(series(usable).items()):
            color = colors[n % len(colors)]
            points = [(r["metrics"][key]["p50"], r["metrics"]["output_throughput"]) for r in group]
            front = pareto_front(points)
            others = [i for i in range(len(points)) if i not in front]
            ax.scatter(
                [points[i][0] for i in others],
                [points[i][1] for i in others],
                facecolors="none",
                edgecolors=color,
                s=40,
                label=f"{name}: dominated" if others else None,
            )
            ax.plot(
                [points[i][0] for i in front],
                [points[i][1] for i in front],
                "o-",
                color=color,
                markersize=7,
                linewidth=1.5,
                label=f"{name}: Pareto front",
            )
            held = [i for i, r in enumerate(group) if _mostly_held_back(r)]
            if held:
                ax.scatter(
                    [points[i][0] for i in held],
                    [points[i][1] for i in held],
                    marker="o",
                    s=180,
                    facecolors="none",
                    edgecolors="red",
                    linewidths=1.2,
                    label="stream held back (TTFT near E2EL: not token by token)",
                )
            for run, (x, y) in zip(group, points, strict=True):
                ax.annotate(point_label(run), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(f"{xlabel}  (lower is better)")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.08, y=0.1)  # room for the labels of the outermost points
        ax.set_xlim(left=0)
    axes[0].set_ylabel("output throughput (tok/s, higher is better)")
    axes[0].set_ylim(bottom=0)
    legend: dict[str, Any] = {}
    for ax in axes:  # one entry per label, from whichever panel has it
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = list(legend)
    fig.legend(list(legend.values()), labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    when = max((str(r.get("created", "")) for r in usable), default="")
    fig.suptitle(f"Throughput against latency: python -m deploy bench sweep ({len(usable)} points, {when})")
    fig.tight_layout(rect=(0, 0.08 + 0.03 * max(0, len(labels) // 2 - 1), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
