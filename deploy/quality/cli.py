"""``python -m deploy quality kl|eval``: the model card's quality targets, measured on your deployment.

- ``kl``: KL divergence of a candidate's next-token distributions from a reference's (card target < 0.005),
  over the bundled text and image+text prompt set; each side is a server URL or a checkpoint folder.
- ``eval``: accuracy recovery (candidate / reference, card target >= 99.7 %) on MMLU by default, through
  lm-evaluation-harness (optional extra).

Exit status: 0 when the target is met, 1 when it is missed or a side fails, 2 for bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from deploy.quality.kl import TARGET


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quality`` subcommand with ``kl`` and ``eval``."""
    p = subparsers.add_parser(
        "quality",
        help="quality vs a reference: KL divergence (kl) and accuracy recovery (eval)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="quality_command", required=True, metavar="CHECK")

    kl = sub.add_parser("kl", help="KL divergence of next-token distributions (top-k logprobs + other)")
    kl.add_argument("--reference", required=True, help="reference server URL (e.g. BF16) or checkpoint folder")
    kl.add_argument("--candidate", required=True, help="candidate server URL (e.g. W8A16) or checkpoint folder")
    kl.add_argument("--reference-model", help="model name on the reference server (default: its only model)")
    kl.add_argument("--candidate-model", help="model name on the candidate server (default: its only model)")
    kl.add_argument("--prompts", type=Path, help="JSON Lines prompt file (default: the bundled set)")
    kl.add_argument("--top-k", type=int, default=20, help="logprobs per position (default 20, vLLM's maximum)")
    kl.add_argument(
        "--target", type=float, default=TARGET, help=f"pass when the mean KL is below this (default {TARGET})"
    )
    kl.add_argument("--api-key", help="API key for both servers (default: $VLLM_API_KEY)")
    kl.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    kl.add_argument("--device", default="cpu", help="torch device for a checkpoint folder side (default cpu)")
    kl.add_argument("--json", type=Path, help="write every prompt's values here")
    kl.add_argument("--markdown", type=Path, help="write the report here")
    kl.add_argument("--no-progress", action="store_true", help="no progress bar")
    kl.set_defaults(handler=run_kl)

    ev = sub.add_parser("eval", help="accuracy recovery with lm-evaluation-harness (optional extra)")
    ev.add_argument("--candidate", required=True, help="candidate server URL (root, no /v1)")
    ev.add_argument("--reference", help="reference server URL (or give --reference-score)")
    ev.add_argument("--reference-score", type=float, help="a reference score measured before (0..1)")
    ev.add_argument("--candidate-model", help="model name on the candidate server (default: its only model)")
    ev.add_argument("--reference-model", help="model name on the reference server (default: its only model)")
    ev.add_argument("--task", default="mmlu", help="lm-eval task (default mmlu)")
    ev.add_argument(
        "--num-fewshot", type=int, default=5, help="few-shot examples (default 5, as MMLU is usually quoted)"
    )
    ev.add_argument(
        "--limit", type=float, help="examples per subtask (a number) or fraction (below 1), for a quick run"
    )
    ev.add_argument("--tokenizer", help="tokenizer id or folder for lm-eval (default: the server's checkpoint id)")
    ev.add_argument("--concurrency", type=int, default=8, help="requests in flight per server (default 8)")
    ev.add_argument("--target", type=float, default=0.997, help="pass when recovery is at least this (default 0.997)")
    ev.add_argument("--api-key", help="API key for both servers (default: $VLLM_API_KEY)")
    ev.add_argument("--json", type=Path, help="write the scores and recovery here")
    ev.set_defaults(handler=run_eval)


def _write(path: Path | None, text: str) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run_kl(args: argparse.Namespace) -> int:
    """Compare the two sources over the prompt set and print the report."""
    from deploy.quality.compare import compare, render
    from deploy.quality.prompts import DEFAULT_PROMPTS, PromptFileError, load_prompts
    from deploy.quality.sources import SourceError, open_source

    if not 1 <= args.top_k <= 100:
        print(f"error: --top-k must be between 1 and 100, not {args.top_k}", file=sys.stderr)
        return 2
    try:
        prompts = load_prompts(args.prompts or DEFAULT_PROMPTS)
    except PromptFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    api_key = args.api_key or os.environ.get("VLLM_API_KEY") or None
    sources: list[Any] = []
    try:
        from tqdm import tqdm

        for where, model in ((args.reference, args.reference_model), (args.candidate, args.candidate_model)):
            sources.append(open_source(where, model=model, api_key=api_key, timeout_s=args.timeout, device=args.device))
        with tqdm(total=len(prompts), desc="KL", unit="prompt", file=sys.stderr, disable=args.no_progress) as bar:
            result = compare(*sources, prompts, top_k=args.top_k, target=args.target, on_prompt=lambda: bar.update(1))
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for source in sources:
            source.close()
    report = render(result)
    print(report)
    _write(args.json, json.dumps(result, indent=1) + "\n")
    _write(args.markdown, report)
    return 0 if result["summary"]["passes"] else 1


def run_eval(args: argparse.Namespace) -> int:
    """Score the candidate (and the reference unless its score is given) and print the recovery."""
    from deploy.quality import eval as lm_eval_runner
    from deploy.quality.sources import HttpSource, SourceError

    if args.reference is None and args.reference_score is None:
        print("error: give --reference URL or --reference-score SCORE", file=sys.stderr)
        return 2
    if args.reference_score is not None and not 0 < args.reference_score <= 1:
        print(f"error: --reference-score is a fraction between 0 and 1, not {args.reference_score}", file=sys.stderr)
        return 2
    api_key = args.api_key or os.environ.get("VLLM_API_KEY") or None
    try:
        lm_eval_runner.import_lm_eval()
        scores: dict[str, Any] = {}
        sides = [("candidate", args.candidate, args.candidate_model)]
        if args.reference_score is None:
            sides.append(("reference", args.reference, args.reference_model))
        for side, url, model in sides:
            probe = HttpSource(url, model=model, api_key=api_key)  # checks reachability and picks the model
            probe.close()
            score, metric, _ = lm_eval_runner.evaluate(
                url,
                probe.model,
                task=args.task,
                num_fewshot=args.num_fewshot,
                limit=args.limit,
                tokenizer=args.tokenizer or probe.root,
                concurrency=args.concurrency,
                api_key=api_key,
            )
            scores[side] = {"url": url, "model": probe.model, "score": score, "metric": metric}
            print(f"{side}: {args.task} {metric} = {score:.4f} ({probe.model} at {url})")
        reference = scores["reference"]["score"] if "reference" in scores else args.reference_score
        result = lm_eval_runner.recovery(scores["candidate"]["score"], reference, args.target)
    except (lm_eval_runner.EvalError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verdict = "PASS" if result["passes"] else "FAIL"
    print(f"recovery = {result['recovery']:.2%} (target >= {args.target:.1%}): {verdict}")
    _write(
        args.json,
        json.dumps({"tool": "gemma4-serve quality eval", "task": args.task, **scores, **result}, indent=1) + "\n",
    )
    return 0 if result["passes"] else 1
