"""Recovery arithmetic and lm-eval result reading for ``quality eval`` (lm-eval itself is an optional extra)."""

from __future__ import annotations

import pytest

from deploy.quality.eval import EvalError, model_args, recovery, task_score


def test_recovery_against_the_cards_target() -> None:
    r = recovery(0.5985, 0.6000)
    assert r["recovery"] == pytest.approx(0.9975)
    assert r["passes"] is True
    assert recovery(0.5970, 0.6000)["passes"] is False  # 99.5 %
    with pytest.raises(EvalError, match="undefined"):
        recovery(0.5, 0.0)


def test_task_score_reads_groups_then_results() -> None:
    results = {
        "results": {"mmlu": {"acc,none": 0.61, "acc_stderr,none": 0.004}},
        "groups": {"mmlu": {"acc,none": 0.62}},
    }
    assert task_score(results, "mmlu") == (0.62, "acc")
    assert task_score({"results": {"gsm8k": {"exact_match,strict-match": 0.4}}}, "gsm8k") == (0.4, "exact_match")
    with pytest.raises(EvalError, match="no accuracy for task 'mmlu'"):
        task_score({"results": {"arc": {"acc,none": 0.3}}}, "mmlu")


def test_model_args_point_lm_eval_at_the_completions_endpoint() -> None:
    args = model_args("http://h:8000/", "m", tokenizer=None, concurrency=4, api_key=None)
    assert args["base_url"] == "http://h:8000/v1/completions"
    assert args["tokenizer"] == "m" and args["num_concurrent"] == 4 and "api_key" not in args
