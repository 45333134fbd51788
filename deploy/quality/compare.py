"""Runs the KL comparison of two logprob sources over a prompt set and renders the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy.quality.kl import TARGET, kl_topk, overlap, summarize, top_token
from deploy.quality.prompts import KLPrompt
from deploy.quality.sources import LogprobSource, SourceError

# After this many prompts with no shared top-k token at all, the two sides are not the same model.
_MISMATCH_AFTER = 4


def compare(
    reference: LogprobSource,
    candidate: LogprobSource,
    prompts: list[KLPrompt],
    *,
    top_k: int,
    target: float = TARGET,
    on_prompt: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """KL(reference || candidate) for every prompt, the summary overall and per kind (text, image)."""
    rows: list[dict[str, Any]] = []
    for prompt in prompts:
        ref = reference.next_token(prompt, top_k)
        cand = candidate.next_token(prompt, top_k)
        rows.append(
            {
                "id": prompt.id,
                "kind": "image" if prompt.image is not None else "text",
                "kl": kl_topk(ref, cand),
                "same_top_token": top_token(ref) == top_token(cand),
                "topk_overlap": overlap(ref, cand),
                "reference_top": top_token(ref),
                "candidate_top": top_token(cand),
            }
        )
        if len(rows) == _MISMATCH_AFTER and all(r["topk_overlap"] == 0 for r in rows):
            raise SourceError(
                f"{reference.label} and {candidate.label} share no top-{top_k} token on the first {_MISMATCH_AFTER} "
                "prompts: they are different models or tokenizers; compare a checkpoint with its own quantized copy"
            )
        if on_prompt is not None:
            on_prompt()
    result: dict[str, Any] = {
        "tool": "gemma4-serve quality kl",
        "reference": reference.label,
        "candidate": candidate.label,
        "top_k": top_k,
        "summary": summarize([r["kl"] for r in rows], [r["same_top_token"] for r in rows], target=target),
        "by_kind": {},
        "prompts": rows,
    }
    for kind in ("text", "image"):
        subset = [r for r in rows if r["kind"] == kind]
        if subset:
            result["by_kind"][kind] = summarize(
                [r["kl"] for r in subset], [r["same_top_token"] for r in subset], target=target
            )
    return result


def render(result: dict[str, Any]) -> str:
    """A short Markdown report: verdict, mean with standard error, percentiles, same-top rate, per kind."""
    s = result["summary"]
    verdict = "PASS" if s["passes"] else "FAIL"
    lines = [
        f"## KL divergence: {verdict} (mean {s['mean']:.3g} vs target < {s['target']:g})",
        "",
        f"Reference: {result['reference']}  ",
        f"Candidate: {result['candidate']}  ",
        f"KL(reference || candidate) of the next-token distribution from top-{result['top_k']} logprobs "
        f"and an 'other' bucket, {s['n']} prompts.",
        "",
        "| Prompts | n | mean ± s.e. | p50 | p90 | p99 | max | same top token |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in [("all", s), *result["by_kind"].items()]:
        lines.append(
            f"| {name} | {m['n']} | {m['mean']:.3g} ± {m['stderr']:.2g} | {m['p50']:.3g} | "
            f"{m['p90']:.3g} | {m['p99']:.3g} | {m['max']:.3g} | {m['same_top_token_rate']:.1%} |"
        )
    return "\n".join(lines) + "\n"
