"""Retrieval metrics, computed the way trec_eval (and so ir-measures / pytrec-eval) computes them.

`ranked` is a list of document ids, best first (chunks already collapsed to their documents); `qrels` maps
a document id to its graded relevance (> 0 is relevant).
"""

from __future__ import annotations

import math
import re
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


_CLOSE_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "\u00a0": " "})
_CJK_GAP = re.compile(r"(?<=[\u3040-\u30ff\u3400-\u9fff])\s+(?=[\u3040-\u30ff\u3400-\u9fff])")


def normalise_for_facts(text: str) -> str:
    """The text a fact is looked for in: [n] markers out, quotes straightened, runs of white space one space
    (none between two CJK characters, which a PDF or a wrapped line may leave)."""
    from service.citations import MARKER

    text = MARKER.sub(" ", text).translate(_CLOSE_QUOTES)
    return _CJK_GAP.sub("", " ".join(text.split()))


def fact_matches(facts: Sequence[str], text: str) -> bool:
    """Whether every regex of `facts` occurs in `text`: case-insensitive, and a space in a pattern stands for
    any run of white space, or none (a PDF may lose a space, and a wrapped line gain one)."""
    bare = normalise_for_facts(text)
    return bool(facts) and all(re.search(f.replace(" ", r"\s*"), bare, re.IGNORECASE) for f in facts)


def _facts_of(row: Mapping) -> list[str]:  # type: ignore[type-arg]
    if row.get("fact"):
        return list(row["fact"])
    literal = row.get("answer_contains")  # a literal: its words escaped, its spaces tolerant as in a pattern
    return [" ".join(re.escape(w) for w in literal.split())] if literal else []


def _files_of(row: Mapping) -> list[str]:  # type: ignore[type-arg]
    return list(row.get("files") or ([row["source"]] if row.get("source") else []))


def cited_segments(answer: str) -> list[list[int]]:
    """The block numbers each claim of an answer cites: a claim runs up to a marker group (markers one after
    another, or at the start of the next sentence) from the previous group; text after the last one is a claim
    citing nothing."""
    from service.citations import MARKER, marker_numbers

    out: list[list[int]] = []
    pos = 0
    for m in MARKER.finditer(answer):
        nums = marker_numbers(m.group(0))
        if any(ch.isalnum() for ch in answer[pos:m.start()]) or not out:
            out.append(nums)
        else:
            out[-1] += nums
        pos = m.end()
    if any(ch.isalnum() for ch in answer[pos:]):
        out.append([])
    return out


def answer_metrics(rows: Sequence[Mapping], answers: Sequence) -> dict[str, float]:  # type: ignore[type-arg]
    """Answer-level quality on a question set. `rows` have "answerable", and for answerable questions "fact"
    (regexes that must all occur, `fact_matches`) and "files" (the file names that hold it); the older golden
    form "answer_contains" (a literal) and "source" (one file name) is read as the same. `answers` are
    service.answering.Answer objects in the same order.

    - fact_hit: answerable questions whose answer holds the fact (abstentions count as misses)
    - supported_citation: of those that name their files, the ones where each fact (or each of the row's
      "cited" regexes, when the answer computes the fact from them) is held by a quote of a citation whose
      document is one of the expected files: the fact is shown where it comes from
    - abstention_precision / abstention_recall: of the abstentions, the share on unanswerable questions; of the
      unanswerable questions, the share abstained (recall is "abstention accuracy")
    - answered_rate: answerable questions not abstained
    - answer_chars: mean length of the answers given, to any question (markers left out)
    - citation_precision: citations whose chunk supports the sentence that cites it
    - citation_recall: claims that carry at least one supporting citation; a claim is the text up to a marker
      group since the previous one (one sentence of a generated answer, a whole quoted passage of an
      extractive one), or text after the last marker
    - groundedness: answered questions whose every claim is supported
    - source_hit: answered questions citing an expected file (where one is given)
    """
    from service.citations import MARKER

    cites = supported = claims = claimed = 0
    unanswerable = abstained_right = abstained_all = answerable = answered = grounded = 0
    with_source = source_hits = with_fact = fact_hits = fact_placed = fact_cited = 0
    chars: list[int] = []
    for row, ans in zip(rows, answers, strict=True):
        abstained_all += ans.abstained
        if not ans.abstained:
            chars.append(len(" ".join(MARKER.sub("", ans.checked.answer).split())))
        if not row.get("answerable", True):
            unanswerable += 1
            abstained_right += ans.abstained
            continue
        answerable += 1
        facts, files = _facts_of(row), _files_of(row)
        with_fact += bool(facts)
        if ans.abstained:
            continue
        answered += 1
        grounded += ans.checked.grounded
        cites += len(ans.checked.citations)
        supported += sum(c.supported for c in ans.checked.citations)
        ok = {c.n for c in ans.checked.citations if c.supported}
        for ns in cited_segments(ans.checked.answer):
            claims += 1
            claimed += bool(ok & set(ns))
        if files:
            with_source += 1
            source_hits += any(c.source.rsplit("/", 1)[-1] in files for c in ans.checked.citations)
        if facts and fact_matches(facts, ans.checked.answer):
            fact_hits += 1
            fact_placed += bool(files)
            quotes = [q for c in ans.checked.citations if c.source.rsplit("/", 1)[-1] in files
                      for q in (c.quotes or (c.quote,))]
            # each fact the documents hold ("cited": not a number the answer computed from them) in a quote
            fact_cited += bool(files) and all(any(fact_matches([f], q) for q in quotes)
                                              for f in row.get("cited") or facts)

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {
        "fact_hit": ratio(fact_hits, with_fact), "supported_citation": ratio(fact_cited, fact_placed),
        "abstention_precision": ratio(abstained_right, abstained_all),
        "abstention_recall": ratio(abstained_right, unanswerable),
        "abstention_accuracy": ratio(abstained_right, unanswerable), "answered_rate": ratio(answered, answerable),
        "answer_chars": sum(chars) / len(chars) if chars else 0.0,
        "citation_precision": ratio(supported, cites), "citation_recall": ratio(claimed, claims),
        "groundedness": ratio(grounded, answered), "source_hit": ratio(source_hits, with_source),
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
