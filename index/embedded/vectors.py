"""The FAISS index type follows the collection's size.

Up to `VectorPolicy.exact_up_to` vectors (200,000 by default, ~25 ms per query on 2 cores) the index is exact:
`IndexIDMap2(IndexFlatIP)`. Past it, a commit rebuilds it as an inverted file, `IndexIVFFlat` with about
2 * sqrt(n) lists: a query compares itself with the list centroids, then with every vector of the `nprobe`
nearest lists. IVF-Flat keeps each vector whole, so every candidate is scored exactly (the candidates are the
approximation, not their scores), and it supports removal, which re-ingesting a changed document needs (HNSW
does not). `nprobe` is calibrated at build time: the smallest one whose recall@10 against exact search, on
queries placed as far from the collection as real questions are, reaches `calibrate_to`. It is saved in the
file.

An index rebuilds when it has grown past 4x, or shrunk below 1/4 of, the size its lists were made for, and
goes back to exact below half the threshold. A filtered search over few allowed vectors is exact (scoring the
allowed vectors directly costs less than probing); over many, it probes proportionally more lists.

Readers map the file instead of reading it (`IO_FLAG_MMAP`): a service starts in well under a second at a
million chunks and shares the page cache with other readers.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.embedded.schema import hits
from index.records import Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorPolicy:
    exact_up_to: int = 200_000
    ivf_min: int = 1024  # never fewer vectors than this in an inverted file (its lists need training points)
    calibrate_to: float = 0.97  # recall@10 on calibration queries (a margin over the 0.95 promised)
    calibration_queries: int = 200
    seed: int = 0


def flat(dim: int) -> Any:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def ivf_of(index: Any) -> Any | None:
    """The inverted-file index inside `index`, or None for an exact one."""
    return index if isinstance(index, faiss.IndexIVF) else None


def kind(index: Any) -> str:
    ivf = ivf_of(index)
    return f"ivf{ivf.nlist},nprobe={ivf.nprobe}" if ivf is not None else "exact"


def contents(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every vector in the index, copied out."""
    ids = ids_of(index)
    if not len(ids):
        return ids, np.zeros((0, index.d), np.float32)
    if ivf_of(index) is None:  # the flat codes are in the id map's order
        return ids, np.ascontiguousarray(index.index.reconstruct_n(0, index.ntotal), dtype=np.float32)
    return ids, np.ascontiguousarray(index.reconstruct_batch(ids), dtype=np.float32)  # by the id hashtable


def ids_of(index: Any) -> np.ndarray:
    ivf = ivf_of(index)
    if ivf is None:
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(ivf.nlist) if lists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def nlist_for(n: int) -> int:
    return max(1, min(n, int(2 * math.sqrt(n))))


def built_for(ivf: Any) -> int:
    """The collection size an IVF's list count was chosen for (inverse of `nlist_for`)."""
    return int((ivf.nlist / 2) ** 2)


def adapt(index: Any, policy: VectorPolicy) -> Any:
    """The index this collection size calls for: `index` itself when it still fits, else a rebuilt one."""
    n = int(index.ntotal)
    ivf = ivf_of(index)
    if ivf is None:
        if n <= policy.exact_up_to or n < policy.ivf_min:
            return index
        ids, vecs = contents(index)
        return build_ivf(vecs, ids, policy)
    if n >= max(1, policy.exact_up_to // 2, policy.ivf_min // 2):  # IVF while above half the threshold
        if built_for(ivf) / 4 <= n <= 4 * built_for(ivf):
            return index
        ids, vecs = contents(index)
        return build_ivf(vecs, ids, policy)
    ids, vecs = contents(index)
    out = flat(index.d)
    if n:
        out.add_with_ids(vecs, ids)
    log.info("vector index: %d vectors, back to exact search", n)
    return out


def build_ivf(vecs: np.ndarray, ids: np.ndarray, policy: VectorPolicy) -> Any:
    n, dim = vecs.shape
    nlist = nlist_for(n)
    rng = np.random.default_rng(policy.seed)
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]
    sample = vecs[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    ivf.train(np.ascontiguousarray(sample))
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # reconstruct, remove by id
    ivf.add_with_ids(vecs, ids)
    ivf.nprobe = calibrate(ivf, vecs, ids, policy, rng)
    log.info("vector index: %d vectors in %d lists, nprobe %d", n, nlist, ivf.nprobe)
    return ivf


def calibrate(ivf: Any, vecs: np.ndarray, ids: np.ndarray, policy: VectorPolicy, rng: np.random.Generator) -> int:
    """Smallest nprobe (doubling) whose recall@10 against exact search reaches the policy's bar, on queries
    as far from the collection as real questions are. A query is a stored vector moved by 1.5x a unit step
    along the difference of two other stored vectors (noise inside the collection's own subspace: random
    noise in 384 dimensions is nearly orthogonal to it and makes calibration too easy). Its nearest stored
    vector then sits at cosine ~0.63, as real questions' do (median 0.60 on the evaluation sets' 600
    questions); at a million chunks this picks the nprobe real questions need (bench/million.py)."""
    n, dim = vecs.shape
    k = min(10, n)
    m = min(n, policy.calibration_queries)
    base = vecs[rng.choice(n, size=m, replace=False)]
    step = vecs[rng.integers(0, n, m)] - vecs[rng.integers(0, n, m)]
    norms = np.linalg.norm(step, axis=1, keepdims=True)
    step = np.where(norms > 0, step / np.maximum(norms, 1e-12), 0) * 1.5 * np.linalg.norm(base, axis=1, keepdims=True)
    queries = base + step
    queries = np.ascontiguousarray(queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12),
                                   dtype=np.float32)
    exact = faiss.IndexFlatIP(dim)
    exact.add(vecs)
    _, positions = exact.search(queries, k)
    truth = ids[positions]
    nprobe = 1
    while nprobe < ivf.nlist:
        _, got = ivf.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))  # type: ignore[call-arg]
        if recall(got, truth) >= policy.calibrate_to:
            break
        nprobe *= 2
    return min(nprobe, ivf.nlist)


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` found in the same row of `got`."""
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got.tolist(), truth.tolist(), strict=True)]))


def search(index: Any, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the top `k` among `allowed` (None: all), best first; ids -1 pad a short result."""
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    ivf = ivf_of(index)
    if ivf is None:
        params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
        scores, ids = index.search(q, k, params=params)
        return scores[0], ids[0]
    if allowed is None:
        scores, ids = ivf.search(q, k)
        return scores[0], ids[0]
    share = len(allowed) / max(1, ivf.ntotal)
    if len(allowed) <= ivf.ntotal * ivf.nprobe / ivf.nlist:  # fewer than a probe would scan: score them all
        vecs = ivf.reconstruct_batch(allowed)
        scores = vecs @ q[0]
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top], allowed[top]
    nprobe = min(ivf.nlist, math.ceil(ivf.nprobe / share))  # as many allowed candidates as an open search
    params = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(allowed), nprobe=nprobe)  # type: ignore[call-arg]
    scores, ids = ivf.search(q, k, params=params)
    return scores[0], ids[0]


def read(path: Path, *, mmap: bool) -> Any:
    """The index in `path`; mapped rather than read when `mmap` (a reader's: it never modifies it)."""
    flags = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap else 0
    return faiss.read_index(str(path), flags)


def dense(db: sqlite3.Connection, index: Any, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[Hit]:
    pool = index.ntotal if allowed is None else len(allowed)
    if pool == 0 or k <= 0:
        return []
    fetch = min(pool, 2 * k)  # identical passages collapse into one hit
    scores, ids = search(index, query, fetch, allowed)
    pairs = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if i >= 0]
    return hits(db, pairs, k)
