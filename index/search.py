"""Searching one consistent view of the store (a SQLite read transaction and its generation's FAISS index).

Filters are applied before ranking: the FAISS search is restricted to the allowed ids with an IDSelector and
the BM25 query to the allowed rows, so top-k is taken among allowed chunks only.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import faiss
import numpy as np

from index import keyword as keywords
from index.records import Hit
from index.sqlite_schema import HIT_SELECT, chunk_from_row
from index.store import SearchFilter


def acl_clause(table: str, principals: frozenset[str]) -> tuple[str, list[str]]:
    """SQL (and its parameters) true for a row of `table` whose access list holds one of `principals`."""
    marks = ",".join("?" * len(principals))
    return f"EXISTS (SELECT 1 FROM json_each({table}.acl) a WHERE a.value IN ({marks}))", sorted(principals)


def allowed_rowids(db: sqlite3.Connection, flt: SearchFilter | None) -> np.ndarray | None:
    if flt is None or flt.empty:
        return None
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
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    fetch = min(pool, 2 * k)  # identical passages collapse into one hit
    params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
    scores, ids = index.search(q, fetch, params=params)
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
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
    if not pairs:
        return []
    marks = ",".join("?" * len(pairs))
    rows = {r[0]: r for r in db.execute(f"{HIT_SELECT} WHERE c.rowid IN ({marks})", [i for i, _ in pairs])}
    hits: list[Hit] = []
    by_text: dict[str, int] = {}
    for rowid, score in pairs:
        row = rows[rowid]
        th = row[10]
        if th in by_text:  # the same passage at another path: one hit, the other sources listed
            prev = hits[by_text[th]]
            hits[by_text[th]] = Hit(prev.chunk, prev.score, prev.source, prev.title, (*prev.also_in, row[11]))
            continue
        by_text[th] = len(hits)
        hits.append(Hit(chunk_from_row(row), score, row[11], row[12]))
    return hits[:k]
