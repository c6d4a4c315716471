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
    """The chunk rowids a (non-empty) filter allows."""
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
        "SELECT c.rowid FROM chunks c JOIN documents d ON d.id = c.document_id WHERE " + " AND ".join(where),
        params,
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
            analyzer: str = keywords.ANALYZER) -> list[Hit]:
    expr = keywords.match_expression(text, analyzer)
    if expr is None or k <= 0 or (allowed is not None and len(allowed) == 0):
        return []
    sql = "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?"
    params: list[Any] = [expr]
    if allowed is not None:
        sql += " AND rowid IN (SELECT value FROM json_each(?))"
        params.append("[" + ",".join(map(str, allowed.tolist())) + "]")
    rows = db.execute(sql + " ORDER BY bm25(chunks_fts) LIMIT ?", [*params, 2 * k]).fetchall()
    return hits(db, [(int(r), -float(s)) for r, s in rows], k)

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
