"""Searching one consistent view of the store (a SQLite read transaction and its generation's FAISS index).

Filters are applied before ranking: the FAISS search is restricted to the allowed ids with an IDSelector and
the BM25 query to the allowed rows, so top-k is taken among allowed chunks only.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np

from index import keyword as keywords
from index import vectors
from index.records import Hit
from index.sqlite_schema import HIT_SELECT, chunk_from_row
from index.store import SearchFilter


def acl_clause(table: str, principals: frozenset[str]) -> tuple[str, list[str]]:
    """SQL (and its parameters) true for a row of `table` whose access list holds one of `principals`."""
    marks = ",".join("?" * len(principals))
    return f"EXISTS (SELECT 1 FROM json_each({table}.acl) a WHERE a.value IN ({marks}))", sorted(principals)


def allowed_rowids(db: sqlite3.Connection, flt: SearchFilter) -> np.ndarray:
    """The chunk rowids a (non-empty) filter allows, in order."""
    where: list[str] = []
    params: list[Any] = []
    if flt.document_ids is not None:
        where.append(f"d.id IN ({','.join('?' * len(flt.document_ids))})")
        params += sorted(flt.document_ids)
    if flt.kinds is not None:
        where.append(f"d.kind IN ({','.join('?' * len(flt.kinds))})")
        params += sorted(flt.kinds)
    if flt.source_prefix is not None:
        where.append("substr(d.source, 1, ?) = ?")
        params += [len(flt.source_prefix), flt.source_prefix]
    if flt.principals is not None:
        clause, names = acl_clause("d", flt.principals)
        where.append(clause)
        params += names
    rows = db.execute(
        "SELECT c.rowid FROM chunks c JOIN documents d ON d.id = c.document_id WHERE " + " AND ".join(where)
        + " ORDER BY c.rowid", params,
    ).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

def dense(db: sqlite3.Connection, index: Any, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[Hit]:
    pool = index.ntotal if allowed is None else len(allowed)
    if pool == 0 or k <= 0:
        return []
    fetch = min(pool, 2 * k)  # identical passages collapse into one hit
    scores, ids = vectors.search(index, query, fetch, allowed)
    pairs = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if i >= 0]
    return hits(db, pairs, k)

def keyword(db: sqlite3.Connection, text: str, k: int, allowed: np.ndarray | None,
            analyzer: str = keywords.ANALYZER, mean_length: float | None = None) -> list[Hit]:
    """BM25 over the chunks searched: FTS5's bm25() over the whole table when every chunk is allowed, else the
    same formula with statistics (chunk count, document frequencies, mean length) of the allowed chunks only
    (`subset_bm25`), so no score or order depends on a document the caller may not read. `mean_length` is
    the allowed chunks' mean length in terms (`mean_length(db, allowed)`; computed here when not given)."""
    expr = keywords.match_expression(text, analyzer)
    if expr is None or k <= 0 or (allowed is not None and len(allowed) == 0):
        return []
    if allowed is not None:
        if mean_length is None:
            mean_length = mean_terms(db, allowed)
        return hits(db, subset_bm25(db, keywords.query_terms(text, analyzer), allowed, mean_length)[:2 * k], k)
    rows = db.execute("SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
                      "ORDER BY bm25(chunks_fts) LIMIT ?", [expr, 2 * k]).fetchall()
    return hits(db, [(int(r), -float(s)) for r, s in rows], k)


BM25_K1, BM25_B = 1.2, 0.75  # FTS5's bm25() defaults


def subset_bm25(db: sqlite3.Connection, query_terms: list[str], allowed: np.ndarray,
                mean_length: float) -> list[tuple[int, float]]:
    """(rowid, score) of the allowed chunks holding a query term, best first: FTS5's bm25() formula (sqlite
    ext/fts5/fts5_aux.c: idf = ln((N - n + 0.5) / (n + 0.5)), at least 1e-6; k1 = 1.2, b = 0.75) with N, n and
    the mean length taken over `allowed` (sorted rowids). Term counts come from FTS5's own index (an fts5vocab
    `instance` table), chunk lengths from its docsize table."""
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_fts_instances "
               "USING fts5vocab(main, chunks_fts, instance)")
    n_allowed = len(allowed)
    per_term: list[tuple[np.ndarray, np.ndarray]] = []
    for term in query_terms:
        rows = db.execute("SELECT doc, count(*) FROM temp.chunks_fts_instances WHERE term = ? GROUP BY doc",
                          [term]).fetchall()
        if not rows:
            continue
        docs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        tf = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        keep = _member(docs, allowed)
        if keep.any():
            per_term.append((docs[keep], tf[keep]))
    if not per_term:
        return []
    candidates = np.unique(np.concatenate([d for d, _ in per_term]))
    lengths = chunk_terms(db, candidates)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / max(mean_length, 1e-9))
    scores = np.zeros(len(candidates))
    for docs, tf in per_term:
        n = len(docs)
        idf = max(float(np.log((n_allowed - n + 0.5) / (n + 0.5))), 1e-6)
        at = np.searchsorted(candidates, docs)
        scores[at] += idf * tf * (BM25_K1 + 1) / (tf + norm[at])
    order = np.lexsort((candidates, -scores))  # best first; ties by rowid, as FTS5 gives them
    return [(int(candidates[i]), float(scores[i])) for i in order]


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    at = np.searchsorted(sorted_set, values)
    at[at >= len(sorted_set)] = 0
    return sorted_set[at] == values  # type: ignore[no-any-return]


def chunk_terms(db: sqlite3.Connection, rowids: np.ndarray) -> np.ndarray:
    """How many terms FTS5 holds for each chunk (its docsize table: one varint per chunk, one column)."""
    rows = dict(db.execute("SELECT id, sz FROM chunks_fts_docsize WHERE id IN (SELECT value FROM json_each(?))",
                           ["[" + ",".join(map(str, rowids.tolist())) + "]"]).fetchall())
    return np.fromiter((_varint(rows.get(int(r), b"\x00")) for r in rowids), dtype=np.float64, count=len(rowids))


def mean_terms(db: sqlite3.Connection, allowed: np.ndarray) -> float:
    """The mean length, in terms, of the allowed chunks."""
    if len(allowed) == 0:
        return 0.0
    total = sum(_varint(sz) for (sz,) in db.execute(
        "SELECT sz FROM chunks_fts_docsize WHERE id IN (SELECT value FROM json_each(?))",
        ["[" + ",".join(map(str, allowed.tolist())) + "]"]))
    return total / len(allowed)


def _varint(blob: bytes) -> int:
    """SQLite's varint (as FTS5 writes it): 7 bits a byte, high bit set while more follow; a 9th byte gives 8."""
    value = 0
    for i, byte in enumerate(blob[:9]):
        if i == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value
    return value


def hits(db: sqlite3.Connection, pairs: list[tuple[int, float]], k: int) -> list[Hit]:
    """The first `k` distinct passages of `pairs` (rowid, score), best first: a passage found again at another
    path is one hit listing the other sources. Whole rows are read only for the hits kept (a search asks for
    twice the candidates it returns, to have k after collapsing)."""
    if not pairs:
        return []
    marks = ",".join("?" * len(pairs))
    text_hash = dict(db.execute(f"SELECT rowid, text_hash FROM chunks WHERE rowid IN ({marks})",
                                [i for i, _ in pairs]).fetchall())
    kept: list[tuple[int, float]] = []
    first: dict[str, int] = {}  # passage -> rowid of its first occurrence
    also: dict[int, list[int]] = {}  # rowid kept -> rowids of its other occurrences
    for rowid, score in pairs:
        th = text_hash[rowid]
        if th in first:
            if first[th] in also:
                also[first[th]].append(rowid)
            continue
        first[th] = rowid
        if len(kept) < k:
            kept.append((rowid, score))
            also[rowid] = []
    wanted = [r for r, _ in kept] + [d for ds in also.values() for d in ds]
    marks = ",".join("?" * len(wanted))
    rows = {r[0]: r for r in db.execute(f"{HIT_SELECT} WHERE c.rowid IN ({marks})", wanted)}
    return [Hit(chunk_from_row(rows[r]), score, rows[r][11], rows[r][12], tuple(rows[d][11] for d in also[r]))
            for r, score in kept]
