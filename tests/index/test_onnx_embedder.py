"""The ONNX Runtime query backend: the same vectors and token cuts as PyTorch, exported once, cached."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from index.errors import ConfigError

TEXTS = ["How many days of paid annual leave do I get?", "在宅勤務は週に何日までできますか？", "出差餐补标准是多少？",
         "Badges must be worn visibly at all times. " * 3, "word " * 700, "x"]


@pytest.fixture(scope="module")
def onnx(tmp_path_factory):
    from index.embedders.onnxrt import OnnxEmbedder

    return OnnxEmbedder("all-MiniLM-L6-v2", tmp_path_factory.mktemp("models"), threads=1, batch_size=4)


def test_vectors_match_pytorch_fp32(onnx):
    from index.embedders.sbert import SentenceTransformerEmbedder

    torch_fp32 = SentenceTransformerEmbedder(precision="fp32")
    assert onnx.model_id == torch_fp32.model_id and onnx.dim == 384
    # a batch of very different lengths (padding inside a batch, truncation at 256 tokens) and one by one
    got, want = onnx.embed_passages(TEXTS), torch_fp32.embed_passages(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert (got * want).sum(axis=1).min() > 0.9999
    for text in TEXTS:
        assert float(onnx.embed_query(text) @ torch_fp32.embed_query(text)) > 0.9999
    assert onnx.embed_passages([]).shape == (0, 384)


def test_token_cuts_and_counts_match_the_pytorch_tokenizer(onnx, embedder):
    for text in [*TEXTS, "Per diem: 80 EUR. 在宅勤務", ""]:
        assert onnx.tokenizer.spans(text) == embedder.tokenizer.spans(text)
        assert onnx.tokenizer.count(text) == embedder.tokenizer.count(text)
    assert onnx.tokenizer.max_tokens == embedder.tokenizer.max_tokens


def test_exported_once_and_reused(tmp_path):
    from index.embedders.onnxrt import OnnxEmbedder

    OnnxEmbedder("all-MiniLM-L6-v2", tmp_path)
    (exported,) = tmp_path.glob("*.onnx")
    stamp = exported.stat().st_mtime_ns
    OnnxEmbedder("all-MiniLM-L6-v2", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [exported.name] and exported.stat().st_mtime_ns == stamp


def test_a_damaged_export_is_a_clear_error_and_is_redone(tmp_path):
    from index.embedders.onnxrt import OnnxEmbedder, ensure_exported

    path = ensure_exported("all-MiniLM-L6-v2", tmp_path)
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load .*onnx"):
        OnnxEmbedder("all-MiniLM-L6-v2", tmp_path)
    assert not path.exists()  # the next start exports again
    assert OnnxEmbedder("all-MiniLM-L6-v2", tmp_path).dim == 384


def test_a_model_that_is_not_mean_pooled_stays_on_pytorch(tmp_path, embedder):
    from index.embedders.factory import load_embedder
    from index.embedders.sbert import SentenceTransformerEmbedder

    model = tmp_path / "cls-model"
    embedder._model.save(str(model))
    pooling = model / "1_Pooling" / "config.json"
    cfg = json.loads(pooling.read_text())
    pooling.write_text(json.dumps(cfg | {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    with pytest.raises(ConfigError, match="only mean pooling"):
        load_embedder(str(model), backend="onnx", onnx_dir=tmp_path / "models")
    fallback = load_embedder(str(model), backend="auto", onnx_dir=tmp_path / "models")
    assert isinstance(fallback, SentenceTransformerEmbedder)
    with pytest.raises(ConfigError, match="unknown embedding backend"):
        load_embedder(str(model), backend="tensorrt")
    shutil.rmtree(model)


def test_the_service_default_takes_questions_on_onnx_and_batches_on_pytorch_once_loaded(tmp_path, onnx):
    import threading

    from index.embedders.factory import load_embedder
    from index.embedders.onnxrt import OnnxThenBatches
    from index.embedders.sbert import SentenceTransformerEmbedder

    auto = load_embedder("all-MiniLM-L6-v2", backend="auto", onnx_dir=tmp_path, threads=1, batch_runtime="torch")
    assert isinstance(auto, OnnxThenBatches)
    auto.settle()  # what `quelle eval --answers` waits for: from then on batches run on PyTorch
    assert auto.loaded.is_set() and isinstance(auto._batches, SentenceTransformerEmbedder)
    assert np.array_equal(auto.embed_passages(TEXTS[:3]), auto._batches.embed_passages(TEXTS[:3]))
    assert np.array_equal(auto.embed_query(TEXTS[0]), auto.onnx.embed_query(TEXTS[0]))

    # until PyTorch has loaded, and if it never does, ONNX Runtime serves the batches too
    release = threading.Event()

    def slow() -> SentenceTransformerEmbedder:
        release.wait(60)
        raise RuntimeError("no PyTorch here")

    waiting = OnnxThenBatches(onnx, slow)
    assert np.array_equal(waiting.embed_passages(TEXTS[:2]), onnx.embed_passages(TEXTS[:2]))
    waiting.settle(0.05)  # gives up after its timeout while the load goes on
    assert not waiting.loaded.is_set()
    release.set()
    waiting.settle(60)
    assert waiting.loaded.is_set() and waiting._batches is None
    assert np.array_equal(waiting.embed_passages(TEXTS[:2]), onnx.embed_passages(TEXTS[:2]))
