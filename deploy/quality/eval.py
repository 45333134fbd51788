"""``quality eval``: accuracy recovery of a candidate endpoint against a reference, with lm-evaluation-harness.

lm-evaluation-harness is an optional extra (``pip install 'gemma4-serve[eval]'``). Each endpoint is scored
through its ``local-completions`` model, which sends ``/v1/completions`` requests with ``echo`` and
``logprobs`` (loglikelihood tasks such as MMLU need the prompt's logprobs, which chat completions do not
give); vLLM and SGLang serve that endpoint. Recovery = candidate score / reference score, against the
card's 99.7 %. The task data comes from the Hugging Face Hub on first use (lm-eval downloads it).
"""

from __future__ import annotations

import importlib
from typing import Any

from deploy.errors import DeployError

TARGET_RECOVERY = 0.997  # the model card's "MMLU recovery >= 99.7 %"
EXTRA_HINT = "pip install 'gemma4-serve[eval]' (lm-eval[api]==0.4.13)"


class EvalError(DeployError):
    """The evaluation cannot run or its result cannot be read; the message says what to do."""


def import_lm_eval() -> Any:
    """The ``lm_eval`` module, or :class:`EvalError` naming the extra to install."""
    try:
        return importlib.import_module("lm_eval")
    except ImportError as exc:
        raise EvalError(f"lm-evaluation-harness is not installed: {EXTRA_HINT}") from exc


def model_args(
    base_url: str, model: str, *, tokenizer: str | None, concurrency: int, api_key: str | None
) -> dict[str, Any]:
    """``local-completions`` arguments for one endpoint (``base_url`` is the server root)."""
    args: dict[str, Any] = {
        "base_url": base_url.rstrip("/") + "/v1/completions",
        "model": model,
        "num_concurrent": concurrency,
        "max_retries": 3,
        "tokenized_requests": False,
        "tokenizer_backend": "huggingface",
        "tokenizer": tokenizer or model,
    }
    if api_key:
        args["api_key"] = api_key
    return args


def task_score(results: dict[str, Any], task: str) -> tuple[float, str]:
    """The task's headline score from ``simple_evaluate``'s result: ``acc`` (or ``acc_norm``, ``exact_match``)."""
    for table in ("groups", "results"):
        entry = (results.get(table) or {}).get(task)
        if not isinstance(entry, dict):
            continue
        for metric in ("acc,none", "acc_norm,none", "exact_match,strict-match", "exact_match,none"):
            if isinstance(entry.get(metric), int | float):
                return float(entry[metric]), metric.split(",")[0]
    raise EvalError(
        f"lm-eval's result has no accuracy for task {task!r}; tasks in it: {sorted(results.get('results') or {})}"
    )


def recovery(candidate: float, reference: float, target: float = TARGET_RECOVERY) -> dict[str, Any]:
    """Candidate / reference score and the verdict against ``target``."""
    if reference <= 0:
        raise EvalError(f"the reference scored {reference}: recovery is undefined; check the reference endpoint")
    ratio = candidate / reference
    return {
        "candidate": candidate,
        "reference": reference,
        "recovery": ratio,
        "target": target,
        "passes": ratio >= target,
    }


def evaluate(
    base_url: str,
    model: str,
    *,
    task: str,
    num_fewshot: int | None,
    limit: float | None,
    tokenizer: str | None,
    concurrency: int,
    api_key: str | None,
) -> tuple[float, str, dict[str, Any]]:
    """Score one endpoint on ``task``; returns (score, metric name, lm-eval's full result)."""
    lm_eval = import_lm_eval()
    try:
        results = lm_eval.simple_evaluate(
            model="local-completions",
            model_args=model_args(base_url, model, tokenizer=tokenizer, concurrency=concurrency, api_key=api_key),
            tasks=[task],
            num_fewshot=num_fewshot,
            limit=limit,
            batch_size=1,
        )
    except Exception as exc:  # lm-eval raises many kinds; the user needs the message, not the type
        raise EvalError(f"lm-eval failed on {base_url} ({model}, task {task}): {type(exc).__name__}: {exc}") from exc
    if not isinstance(results, dict):
        raise EvalError(f"lm-eval returned no result for {base_url}")
    score, metric = task_score(results, task)
    return score, metric, results
