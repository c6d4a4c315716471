"""Keyword search in the embedded store: BM25 over the SQLite FTS5 table of each chunk's terms (cut by Quelle's
own analyzers, index/keyword.py), within one read transaction.

A filter is applied before ranking: the query runs over the allowed rows only, and when they are not every
chunk, BM25's statistics are theirs too (`subset_bm25`).
"""

from __future__ import annotations

import sqlite3

import numpy as np

from index import keyword as keywords
from index.embedded.schema import hits
from index.records import Hit


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
