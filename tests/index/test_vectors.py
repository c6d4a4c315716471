"""The index type follows the collection's size (index/embedded/vectors.py), through the real store."""

from __future__ import annotations

import numpy as np
import pytest

from index.embedded import FaissSqliteStore
from index.embedded.vectors import VectorPolicy, recall
from index.records import ChunkRecord, DocumentRecord, chunk_id, document_id, text_hash
from index.store import SearchFilter

DIM = 32


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def put_docs(store: FaissSqliteStore, vecs: np.ndarray, per_doc: int = 50, start: int = 0) -> list[str]:
    doc_ids = []
    for d in range(0, len(vecs), per_doc):
        source = f"/c/{start + d:06d}.txt"
        doc = DocumentRecord(document_id(source), source, source, "text", f"h{start + d}", 1, 0)
        chunks = [ChunkRecord(chunk_id(source, i, f"passage {start + i}"), doc.id, i - d, f"passage {start + i}",
                              0, 1, 1) for i in range(d, min(len(vecs), d + per_doc))]
        store.put(doc, chunks, vecs[d : d + len(chunks)])
        doc_ids.append(doc.id)
    return doc_ids


def rowids_of(store: FaissSqliteStore, hits) -> list[int]:
    return [int(h.chunk.text.split()[1]) + 1 for h in hits]  # passage i was the (i+1)-th row written


def exact_top(vecs: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-(vecs[rows - 1] @ q), kind="stable")[:k]
    return rows[order].tolist()


def test_past_the_threshold_the_index_is_an_inverted_file_with_high_recall(tmp_path):
    vecs = clustered(3000)
    policy = VectorPolicy(exact_up_to=2000)
    with FaissSqliteStore(tmp_path, model_id="m", dim=DIM, writable=True, vector_policy=policy) as w:
        put_docs(w, vecs[:1500])
        w.commit()
        assert w.stats().vector_index == "exact"
        doc_ids = put_docs(w, vecs[1500:], start=1500)
        w.commit()
        kind = w.stats().vector_index
    assert kind.startswith("ivf") and int(kind.split(",")[0][3:]) == int(2 * np.sqrt(3000))
    reader = FaissSqliteStore(tmp_path, model_id=None, dim=None, writable=False)  # maps the file
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((60, DIM)).astype(np.float32)
    queries = vecs[rng.choice(3000, 60, replace=False)] + 0.6 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    rows = np.arange(1, 3001)
    got = [rowids_of(reader, reader.search(q, 10)) for q in queries]
    truth = [exact_top(vecs, rows, q, 10) for q in queries]
    assert recall(np.array(got), np.array(truth)) >= 0.95
    # a filter to one document (50 vectors: scored exactly) and to half the documents (a wider probe)
    one = SearchFilter(document_ids=frozenset({doc_ids[3]}))
    one_rows = np.arange(1500 + 3 * 50 + 1, 1500 + 4 * 50 + 1)
    for q in queries[:10]:
        assert rowids_of(reader, reader.search(q, 10, one)) == exact_top(vecs, one_rows, q, 10)
    half = SearchFilter(document_ids=frozenset(doc_ids[::2]))
    half_rows = np.concatenate([np.arange(1501 + i * 50, 1551 + i * 50) for i in range(0, len(doc_ids), 2)])
    got = [rowids_of(reader, reader.search(q, 10, half)) for q in queries]
    assert all(set(g) <= set(half_rows.tolist()) and len(g) == 10 for g in got)
    assert recall(np.array(got), np.array([exact_top(vecs, half_rows, q, 10) for q in queries])) >= 0.95
    reader.close()


def test_deleting_and_shrinking_keep_the_index_consistent_and_go_back_to_exact(tmp_path):
    vecs = clustered(2400)
    policy = VectorPolicy(exact_up_to=2000)
    with FaissSqliteStore(tmp_path, model_id="m", dim=DIM, writable=True, vector_policy=policy) as w:
        doc_ids = put_docs(w, vecs)
        w.commit()
        assert w.stats().vector_index.startswith("ivf")
        gone = doc_ids[0]
        w.delete(gone)
        w.commit()
        assert w.vector_count() == 2350 and w.stats().vector_index.startswith("ivf")
        q = vecs[10]  # its own document was deleted: never a hit again
        assert all(h.chunk.document_id != gone for h in w.search(q, 20))
        # vectors are found again by passage (re-ingesting reuses them), from the inverted file's lists
        assert np.allclose(w.vectors_for([text_hash("passage 60")])[text_hash("passage 60")], vecs[60])
        for d in doc_ids[1:29]:  # down to 1,050 vectors: below half the threshold
            w.delete(d)
        w.commit()
        assert w.stats().vector_index == "exact" and w.vector_count() == 2400 - 29 * 50
        rows = sorted(r[0] for r in w._db.execute("SELECT rowid FROM chunks"))
        assert sorted(w.vector_ids().tolist()) == rows


@pytest.mark.parametrize("n", [0, 1, 5])
def test_tiny_collections_may_use_an_inverted_file_when_told_to(tmp_path, n):
    policy = VectorPolicy(exact_up_to=0, ivf_min=1, calibrate_to=1.0)
    vecs = clustered(max(n, 1))[:n]
    with FaissSqliteStore(tmp_path, model_id="m", dim=DIM, writable=True, vector_policy=policy) as w:
        put_docs(w, vecs, per_doc=2)
        w.commit()
        assert w.stats().vector_index.startswith("exact" if n == 0 else "ivf")
        hits = w.search(vecs[0], 3) if n else []
        assert [h.chunk.text for h in hits][:1] == (["passage 0"] if n else [])
