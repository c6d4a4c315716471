"""Searching the PostgreSQL index inside one read transaction: dense search by the HNSW index with the access
filter inside the scan (pgvector's iterative scan keeps going until k rows pass it), and BM25 over the
postings table with the statistics of the chunks the caller may read.

BM25 is FTS5's formula (the embedded store's), so both backends score alike: idf = ln((N - n + 0.5) / (n +
0.5)), at least 1e-6; k1 = 1.2, b = 0.75; N, n and the mean length over the allowed chunks only, so no score
or order depends on a document the caller may not read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from index import keyword as keywords
from index.postgres.schema import CHUNK_COLS, chunk_from_row
from index.records import Hit, collapse
from index.store import SearchFilter

BM25_K1, BM25_B = 1.2, 0.75
EF_SEARCH = 200  # recall@10 0.93 at 100k chunks with 100 (docs/performance.md); raised to 2k when k asks more


def where(flt: SearchFilter | None, alias: str = "c") -> tuple[str, list[Any]]:
    """SQL true for the chunks (`alias`) a filter allows, and its parameters; ("TRUE", []) for none."""
    if flt is None or flt.empty:
        return "TRUE", []
    clauses: list[str] = []
    params: list[Any] = []
    if flt.document_ids is not None:
        clauses.append(f"{alias}.document_id = ANY(%s)")
        params.append(sorted(flt.document_ids))
    if flt.kinds is not None or flt.source_prefix is not None:
        inner: list[str] = []
        inner_params: list[Any] = []
        if flt.kinds is not None:
            inner.append("d.kind = ANY(%s)")
            inner_params.append(sorted(flt.kinds))
        if flt.source_prefix is not None:
            inner.append("left(d.source, %s) = %s")
            inner_params += [len(flt.source_prefix), flt.source_prefix]
        clauses.append(f"{alias}.document_id IN (SELECT d.id FROM {{s}}.documents d WHERE {' AND '.join(inner)})")
        params += inner_params
    if flt.principals is not None:
        clauses.append(f"{alias}.acl && %s::text[]")
        params.append(sorted(flt.principals))
    return " AND ".join(clauses), params


def dense(cur: Any, schema: str, query: np.ndarray, k: int, flt: SearchFilter | None) -> list[Hit]:
    if k <= 0:
        return []
    fetch = 2 * k  # identical passages collapse into one hit
    cond, params = where(flt)
    cur.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, min(fetch, 1000))}")
    cur.execute("SET LOCAL hnsw.iterative_scan = strict_order")
    vec = np.asarray(query, dtype=np.float32).reshape(-1)
    cur.execute(f"SELECT c.rowid, c.text_hash, -(v.embedding <#> %s) FROM {schema}.vectors v "
                f"JOIN {schema}.chunks c ON c.rowid = v.rowid WHERE {cond.format(s=schema)} "
                "ORDER BY v.embedding <#> %s LIMIT %s", [vec, *params, vec, fetch])
    rows = cur.fetchall()
    return hits(cur, schema, [(r[0], float(r[2])) for r in rows], {r[0]: r[1] for r in rows}, k)


def collection(cur: Any, schema: str, flt: SearchFilter | None) -> tuple[float, float]:
    """BM25's collection statistics over the chunks a filter allows: their number and mean length in terms
    (the store keeps them per generation and filter: they cost a scan of the allowed chunks)."""
    cond, params = where(flt)
    n, mean = cur.execute(f"SELECT count(*)::float8, coalesce(avg(c.n_terms), 0)::float8 FROM {schema}.chunks c "
                          f"WHERE {cond.format(s=schema)}", params).fetchone()
    return float(n), float(mean)


def keyword(cur: Any, schema: str, text: str, k: int, flt: SearchFilter | None, analyzer: str,
            stats: tuple[float, float]) -> list[Hit]:
    """BM25 over the postings of the query's terms in the allowed chunks only; `stats` = `collection(...)`."""
    terms = keywords.query_terms(text, analyzer)
    n, mean = stats
    if not terms or k <= 0 or n == 0:
        return []
    cond, params = where(flt)
    # the chunks table is joined only to apply a filter: the postings carry each chunk's length
    source = f"{schema}.postings p" if cond == "TRUE" else \
        f"{schema}.postings p JOIN {schema}.chunks c ON c.rowid = p.chunk"
    cur.execute(f"""
        WITH matched AS (
            SELECT p.term, p.chunk, p.tf::float8 AS tf, p.n_terms FROM {source}
            WHERE p.term = ANY(%s) AND {cond.format(s=schema)}),
        df AS (SELECT term, count(*)::float8 AS df FROM matched GROUP BY term)
        SELECT m.chunk,
               sum(greatest(ln((%s - df.df + 0.5) / (df.df + 0.5)), 1e-6)
                   * m.tf * {BM25_K1 + 1} / (m.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * m.n_terms / %s))
                   ORDER BY m.term) AS score  -- summed in one order: equal inputs, equal scores to the last bit
        FROM matched m JOIN df USING (term)
        GROUP BY m.chunk ORDER BY score DESC, m.chunk LIMIT %s""",
                [terms, *params, n, max(mean, 1e-9), 2 * k])
    rows = cur.fetchall()
    if not rows:
        return []
    text_hash = dict(cur.execute(f"SELECT rowid, text_hash FROM {schema}.chunks WHERE rowid = ANY(%s)",
                                 [[r[0] for r in rows]]).fetchall())
    return hits(cur, schema, [(r[0], float(r[1])) for r in rows], text_hash, k)


def hits(cur: Any, schema: str, pairs: list[tuple[int, float]], text_hash: dict[int, str], k: int) -> list[Hit]:
    """The first `k` distinct passages of `pairs`, whole rows read only for those kept."""
    if not pairs:
        return []
    kept, also = collapse(pairs, text_hash, k)
    wanted = [r for r, _ in kept] + [d for ds in also.values() for d in ds]
    cur.execute(f"SELECT {CHUNK_COLS}, d.source, d.title FROM {schema}.chunks c "
                f"JOIN {schema}.documents d ON d.id = c.document_id WHERE c.rowid = ANY(%s)", [wanted])
    rows = {r[0]: r for r in cur.fetchall()}
    return [Hit(chunk_from_row(rows[r]), score, rows[r][10], rows[r][11], tuple(rows[d][10] for d in also[r]))
            for r, score in kept]
