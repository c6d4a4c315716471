"""Retrieval metrics, computed the way trec_eval (and so ir-measures / pytrec-eval) computes them.

`ranked` is a list of document ids, best first (chunks already collapsed to their documents); `qrels` maps
a document id to its graded relevance (> 0 is relevant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from service.retrieval import AbstainPolicy


def recall_at(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, r in qrels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def mrr_at(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k], start=1):
        if qrels.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """nDCG with linear gain and log2(rank + 1) discount, as trec_eval's ndcg_cut."""
    dcg = sum(qrels.get(d, 0) / math.log2(i + 1) for i, d in enumerate(ranked[:k], start=1) if qrels.get(d, 0) > 0)
    ideal = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 1) for i, r in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


METRICS = {
    "R@1": lambda r, q: recall_at(r, q, 1),
    "R@5": lambda r, q: recall_at(r, q, 5),
    "R@10": lambda r, q: recall_at(r, q, 10),
    "MRR@10": lambda r, q: mrr_at(r, q, 10),
    "nDCG@10": lambda r, q: ndcg_at(r, q, 10),
}


def evaluate(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean of each metric over the queries that have relevance judgements (a missing run scores 0)."""
    judged = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    if not judged:
        return {name: 0.0 for name in METRICS}
    return {name: sum(fn(runs.get(q, []), qrels[q]) for q in judged) / len(judged) for name, fn in METRICS.items()}


def dedupe(ids: Sequence[str]) -> list[str]:
    """Document ids in order of their first (best) chunk."""
    return list(dict.fromkeys(ids))


def answer_metrics(rows: Sequence[Mapping], answers: Sequence) -> dict[str, float]:  # type: ignore[type-arg]
    """Answer-level quality on a golden set. `rows` have "answerable" and optionally "source" (a file name)
    and "answer_contains"; `answers` are service.answering.Answer objects in the same order.

    - citation_precision: citations whose chunk supports the sentence that cites it
    - citation_recall: answer sentences (claims) that carry at least one supporting citation
    - abstention_accuracy: unanswerable questions answered "not in the documents"
    - answered_rate: answerable questions not abstained
    - groundedness: answered questions whose every claim is supported
    - source_hit: answered questions citing the expected document (where one is given)
    - fact_hit: answered questions whose answer holds the expected words (where given)
    """
    from service.citations import claims_of

    cites = supported = claims = claimed = 0
    unanswerable = abstained_right = answerable = answered = grounded = 0
    with_source = source_hits = with_fact = fact_hits = 0
    for row, ans in zip(rows, answers, strict=True):
        if not row.get("answerable", True):
            unanswerable += 1
            abstained_right += ans.abstained
            continue
        answerable += 1
        if ans.abstained:
            continue
        answered += 1
        grounded += ans.checked.grounded
        cites += len(ans.checked.citations)
        supported += sum(c.supported for c in ans.checked.citations)
        ok = {c.n for c in ans.checked.citations if c.supported}
        for _, ns in claims_of(ans.checked.answer):
            claims += 1
            claimed += bool(ok & set(ns))
        if row.get("source"):
            with_source += 1
            source_hits += any(c.source.rsplit("/", 1)[-1] == row["source"] for c in ans.checked.citations)
        if row.get("answer_contains"):
            with_fact += 1
            fact_hits += row["answer_contains"] in ans.checked.answer

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {
        "citation_precision": ratio(supported, cites), "citation_recall": ratio(claimed, claims),
        "abstention_accuracy": ratio(abstained_right, unanswerable), "answered_rate": ratio(answered, answerable),
        "groundedness": ratio(grounded, answered), "source_hit": ratio(source_hits, with_source),
        "fact_hit": ratio(fact_hits, with_fact),
    }


@dataclass(frozen=True)
class AbstainPoint:
    """The evidence the abstention policy saw for one question, and whether its answer was in the index."""

    best_dense: float | None
    overlap: float
    cjk: bool
    answerable: bool


def abstention_curve(points: Sequence[AbstainPoint], policy: AbstainPolicy, knob: str,
                     values: Sequence[float]) -> list[dict[str, float]]:
    """The trade-off as one bar of the policy moves: for each value of `knob` ("dense_min", "dense_alone" or
    "overlap_min"), the share of answerable questions answered and of unanswerable ones abstained."""
    answerable = [p for p in points if p.answerable]
    unanswerable = [p for p in points if not p.answerable]
    curve = []
    for v in values:
        pol = replace(policy, **{knob: v})  # type: ignore[arg-type]
        answered = sum(pol.decide(p.best_dense, p.overlap, p.cjk) for p in answerable)
        abstained = sum(not pol.decide(p.best_dense, p.overlap, p.cjk) for p in unanswerable)
        curve.append({knob: v, "answered_rate": answered / len(answerable) if answerable else 0.0,
                      "abstention_accuracy": abstained / len(unanswerable) if unanswerable else 0.0})
    return curve
