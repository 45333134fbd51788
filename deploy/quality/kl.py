"""KL divergence of a candidate's next-token distributions from a reference's, from top-k logprobs.

Servers return only the top k log-probabilities of each position, so each distribution is reduced to k + 1
buckets: the reference's top-k tokens, and "other" for all the remaining mass. On those buckets

    KL(P || Q) = sum_t p_t log(p_t / q_t) + p_other log(p_other / q_other)

with P the reference and Q the candidate. A reference token that is not in the candidate's top k gets the
candidate's remaining mass shared equally with "other", capped by the candidate's smallest top-k
probability (it ranks below all of them). Q stays a distribution, so the value is >= 0, and it is exactly 0
when both sides return the same numbers. Bucketing merges the tail, so this is a lower bound of the
full-vocabulary KL (the tail's own disagreement is not seen); a larger k tightens it.

Tokens are matched by their text; two ids that decode to the same text are merged (their probabilities add
up), on both sides alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

TARGET = 0.005  # the model card's "KL divergence vs BF16 < 0.005"


def merge_duplicates(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """``[(token, logprob), ...]`` as a dict, adding up the probabilities of tokens with the same text."""
    out: dict[str, float] = {}
    for token, logprob in pairs:
        out[token] = float(np.logaddexp(out[token], logprob)) if token in out else float(logprob)
    return out


def kl_topk(reference: Mapping[str, float], candidate: Mapping[str, float]) -> float:
    """KL(reference || candidate) over the reference's top-k buckets plus "other" (logprobs in, nats out)."""
    if not reference or not candidate:
        raise ValueError("both distributions need at least one token")
    p = {t: math.exp(lp) for t, lp in reference.items()}
    known = {t: math.exp(lp) for t, lp in candidate.items()}
    missing = [t for t in p if t not in known]
    share = 0.0
    if missing:
        leftover = max(0.0, 1.0 - sum(known.values()))
        share = min(min(known.values()), leftover / (len(missing) + 1))
    q = {t: known.get(t, share) for t in p}
    p_other = max(0.0, 1.0 - sum(p.values()))
    q_other = max(0.0, 1.0 - sum(q.values()))
    tiny = 1e-12  # a probability the candidate rounds to zero still gets a finite, large penalty
    kl = sum(pt * (math.log(pt) - math.log(max(q[t], tiny))) for t, pt in p.items() if pt > 0)
    if p_other > 0:
        kl += p_other * (math.log(p_other) - math.log(max(q_other, tiny)))
    return kl


def top_token(distribution: Mapping[str, float]) -> str:
    """The most likely token of a top-k distribution."""
    return max(distribution.items(), key=lambda item: item[1])[0]


def overlap(reference: Mapping[str, float], candidate: Mapping[str, float]) -> float:
    """Share of the reference's top-k tokens that the candidate's top-k also holds (0..1)."""
    return len(set(reference) & set(candidate)) / len(reference)


def summarize(kls: Sequence[float], same_top: Sequence[bool], *, target: float = TARGET) -> dict[str, Any]:
    """Mean with standard error, percentiles, max, the same-top-token rate, and the verdict against ``target``."""
    values = np.asarray(kls, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("no KL values to summarise")
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    mean = float(values.mean())
    return {
        "n": n,
        "mean": mean,
        "stderr": stderr,
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
        "same_top_token_rate": float(np.mean(same_top)),
        "target": target,
        "passes": mean < target,
    }
