"""KL divergence from top-k logprobs with an 'other' bucket, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from deploy.quality.kl import kl_topk, merge_duplicates, overlap, summarize, top_token

L = math.log


def test_identical_distributions_give_exactly_zero() -> None:
    p = {"a": L(0.5), "b": L(0.3), "c": L(0.1)}
    assert kl_topk(p, dict(p)) == 0.0


def test_kl_over_topk_and_other_by_hand() -> None:
    ref = {"a": L(0.6), "b": L(0.3)}  # other 0.1
    cand = {"a": L(0.5), "b": L(0.3)}  # other 0.2
    expected = 0.6 * L(0.6 / 0.5) + 0.3 * L(1.0) + 0.1 * L(0.1 / 0.2)
    assert kl_topk(ref, cand) == pytest.approx(expected, rel=1e-12)


def test_a_reference_token_missing_from_the_candidate_shares_its_leftover_mass() -> None:
    ref = {"a": L(0.6), "b": L(0.3)}  # other 0.1
    cand = {"a": L(0.7), "c": L(0.2)}  # b is missing; candidate leftover 0.1, split with other -> 0.05
    q_b = min(0.2, 0.1 / 2)
    q_other = 1 - 0.7 - q_b
    expected = 0.6 * L(0.6 / 0.7) + 0.3 * L(0.3 / q_b) + 0.1 * L(0.1 / q_other)
    assert kl_topk(ref, cand) == pytest.approx(expected, rel=1e-12)
    assert kl_topk(ref, cand) > 0


def test_kl_is_never_negative_for_disagreeing_tops() -> None:
    ref = {"x": L(0.9), "y": L(0.05)}
    cand = {"y": L(0.9), "x": L(0.05)}
    assert kl_topk(ref, cand) > 1.0


def test_duplicate_token_texts_are_merged() -> None:
    merged = merge_duplicates([("\ufffd", L(0.2)), ("a", L(0.5)), ("\ufffd", L(0.1))])
    assert merged["\ufffd"] == pytest.approx(L(0.3))
    assert top_token(merged) == "a"


def test_overlap_and_summary() -> None:
    assert overlap({"a": 0, "b": 0}, {"a": 0, "c": 0}) == 0.5
    s = summarize([0.001, 0.003, 0.002, 0.006], [True, True, False, True], target=0.005)
    assert s["mean"] == pytest.approx(0.003)
    # sample standard deviation / sqrt(n)
    assert s["stderr"] == pytest.approx(math.sqrt(((0.002**2) + 0 + (0.001**2) + (0.003**2)) / 3) / 2)
    assert s["same_top_token_rate"] == 0.75
    assert s["passes"] is True
    assert summarize([0.01], [True], target=0.005)["passes"] is False


def test_empty_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        kl_topk({}, {"a": 0.0})
    with pytest.raises(ValueError):
        summarize([], [])
