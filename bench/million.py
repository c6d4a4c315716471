"""A million chunks on one machine: recall of the approximate index against exact search, query latency,
bytes per vector, and how fast a service over it is ready.

    python bench/million.py [--n 1000000] [--keep DIR]

Vectors of realistic structure. Embedding a million real chunks takes days on 2 cores, so the collection
is grown from real ones: the passages of the six evaluation sets (bench/make_eval_sets.py; Debian manuals in
English, Japanese and Chinese), cut into ~200-word pieces and embedded with the bundled MiniLM, are the
seeds. Each synthetic vector lies between a seed and one of its 10 nearest seeds (a random mix of the two)
plus noise, normalised: the topic clusters and the gaps between them come from real text. The queries are
the evaluation sets' real questions (600), embedded the same way; recall@10 is measured against an exact
search of the same million vectors. Chunks go through the store's own `put` and `commit` (SQLite rows,
keyword terms, FAISS), as ingestion writes them; the vectors are given, not embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETS = ROOT / "bench" / ".cache" / "eval"
PER_DOC = 100


def seeds_and_questions() -> tuple[list[str], list[str]]:
    texts, questions = [], []
    for d in sorted(SETS.iterdir()):
        for line in (d / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
            words = json.loads(line)["text"].split()
            step = 200 if len(words) > 20 else max(1, len(words))
            # CJK text has few spaces: cut it by characters instead
            if len(words) < 20 and len(json.loads(line)["text"]) > 600:
                text = json.loads(line)["text"]
                texts += [text[i : i + 400] for i in range(0, len(text), 400)]
                continue
            texts += [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        lines = (d / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        questions += [json.loads(line)["text"] for line in lines]
    return [t for t in texts if t.strip()], questions


def grow(seeds: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n vectors between real seeds and their neighbours, plus noise; and the seed each one came from."""
    import faiss

    k = 10
    index = faiss.IndexFlatIP(seeds.shape[1])
    index.add(seeds)
    _, nn = index.search(seeds, k + 1)
    a = rng.integers(0, len(seeds), n)
    b = nn[a, rng.integers(1, k + 1, n)]
    lam = rng.random(n, dtype=np.float32)[:, None]
    out = np.empty((n, seeds.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        v = lam[s:e] * seeds[a[s:e]] + (1 - lam[s:e]) * seeds[b[s:e]]
        noise = rng.standard_normal(v.shape).astype(np.float32)
        v += 0.25 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        out[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out, a


def build(config, vecs: np.ndarray, seed_of: np.ndarray, texts: list[str]) -> tuple[dict[str, float], list[str]]:  # type: ignore[no-untyped-def]
    from index.embedders.base import BUNDLED_MINILM
    from index.records import ChunkRecord, DocumentRecord, chunk_id, document_id
    from index.store import open_store

    n = len(vecs)
    ids: list[str] = []
    t0 = time.perf_counter()
    with open_store(config, model_id=BUNDLED_MINILM, dim=vecs.shape[1], writable=True) as store:
        for d in range(0, n, PER_DOC):
            source = f"/corpus/grown/{d // PER_DOC:06d}.txt"
            doc = DocumentRecord(document_id(source), source, f"Grown document {d // PER_DOC}", "text",
                                 f"{d:064x}", 1, 0, acl=("public",) if (d // PER_DOC) % 10 else ("group:tenth",))
            chunks = []
            for i in range(d, min(n, d + PER_DOC)):
                text = f"{texts[seed_of[i]][:300]} [{i}]"
                chunks.append(ChunkRecord(chunk_id(source, i, text), doc.id, i - d, text, 0, len(text), 60))
                ids.append(chunks[-1].id)
            store.put(doc, chunks, vecs[d : d + len(chunks)])
        t1 = time.perf_counter()
        store.commit()
        t2 = time.perf_counter()
        size = store.stats().bytes_on_disk
    return {"rows_s": t1 - t0, "commit_s": t2 - t1, "bytes": size}, ids


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="build the index here and keep it (default: a temporary folder)")
    args = ap.parse_args()
    import faiss

    from index.embedded import FaissSqliteStore, vectors
    from index.embedders.factory import prepare
    from index.embedders.sbert import SentenceTransformerEmbedder
    from index.store import SearchFilter, StoreConfig

    rng = np.random.default_rng(7)
    texts, questions = seeds_and_questions()
    emb = SentenceTransformerEmbedder()
    cache = ROOT / "bench" / ".cache" / f"million-seeds-{len(texts)}-{len(questions)}.npz"
    t = time.perf_counter()
    if cache.exists():
        kept = np.load(cache)
        seeds, qv = kept["seeds"], kept["questions"]
    else:
        seeds = emb.embed_passages(texts)
        qv = np.vstack([emb.embed_query(q) for q in questions])
        np.savez(cache, seeds=seeds, questions=qv)
    print(f"{len(texts)} real seed passages and {len(questions)} real questions embedded in "
          f"{time.perf_counter() - t:.0f} s")
    vecs, seed_of = grow(seeds, args.n, rng)
    tmp = None
    if args.keep:
        data_dir = args.keep
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        tmp = tempfile.mkdtemp(prefix="quelle-million-")
        data_dir = Path(tmp) / "index"
    try:
        times, _ = build(StoreConfig(data_dir), vecs, seed_of, texts)
        prepare(emb, data_dir / "models")  # as `quelle ingest` does
        rowids = np.arange(1, args.n + 1, dtype=np.int64)  # the store's rowids, in insertion order
        exact = faiss.IndexFlatIP(vecs.shape[1])
        exact.add(vecs)
        _, truth_pos = exact.search(qv, 10)
        truth = rowids[truth_pos]
        del exact

        t = time.perf_counter()
        store = FaissSqliteStore(data_dir, model_id=None, dim=None, writable=False)  # maps the file
        open_s = time.perf_counter() - t
        stats = store.stats()
        faiss_file = max((data_dir / "vectors").iterdir(), key=lambda p: p.stat().st_mtime)
        got, lat = [], []
        for q in qv:
            t = time.perf_counter()
            hits = store.search(q, 10)
            lat.append(time.perf_counter() - t)
            got.append([store_rowid(store, h.chunk.id) for h in hits])
        recall = vectors.recall(np.array(got), truth)
        # the same queries, exact: what the index type saves
        flat = faiss.IndexFlatIP(vecs.shape[1])
        flat.add(vecs)
        exact_lat = []
        for q in qv[:100]:
            t = time.perf_counter()
            flat.search(q.reshape(1, -1), 10)
            exact_lat.append(time.perf_counter() - t)
        del flat
        # filtered: the caller may read one document in ten (an access list), and a single document
        tenth = SearchFilter(principals=frozenset({"group:tenth"}))
        allowed_docs = {i for i in range(0, args.n, PER_DOC) if (i // PER_DOC) % 10 == 0}
        allowed = np.array([r for d in sorted(allowed_docs) for r in range(d + 1, min(args.n, d + PER_DOC) + 1)])
        sub = faiss.IndexFlatIP(vecs.shape[1])
        sub.add(vecs[allowed - 1])
        _, pos = sub.search(qv[:100], 10)
        sub_truth = allowed[pos]
        t = time.perf_counter()
        store.search(qv[-1], 10, tenth)  # the first search of an access filter lists its rows (kept per generation)
        cold_filter = time.perf_counter() - t
        f_got, f_lat = [], []
        for q in qv[:100]:
            t = time.perf_counter()
            hits = store.search(q, 10, tenth)
            f_lat.append(time.perf_counter() - t)
            f_got.append([store_rowid(store, h.chunk.id) for h in hits])
        f_recall = vectors.recall(np.array(f_got), sub_truth)
        store.close()
        started = [ready_seconds(data_dir) for _ in range(3)]
        ready = [r for r, _ in started]

        def ms(xs: list[float], p: float) -> float:
            return sorted(xs)[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

        print(f"\n{args.n:,} chunks; vector index: {stats.vector_index}")
        print(f"rows + keyword terms written in {times['rows_s']:.0f} s; commit (IVF built, nprobe calibrated, "
              f"file written) {times['commit_s']:.0f} s")
        print(f"recall@10 against exact search, {len(qv)} real questions: {recall:.3f}  (target >= 0.95)")
        print(f"recall@10, filtered to one document in ten (access list), 100 questions: {f_recall:.3f}")
        print(f"search p50 / p99: {ms(lat, 50):.1f} / {ms(lat, 99):.1f} ms (exact FAISS on the same vectors: "
              f"{ms(exact_lat, 50):.1f} / {ms(exact_lat, 99):.1f} ms); filtered: {ms(f_lat, 50):.1f} / "
              f"{ms(f_lat, 99):.1f} ms (the filter's first search, which lists its 100,000 rows: "
              f"{cold_filter * 1000:.0f} ms)")
        sqlite_bytes = sum(p.stat().st_size for p in data_dir.glob("quelle.sqlite*"))
        print(f"vector file: {faiss_file.stat().st_size / args.n:.0f} bytes per vector "
              f"({faiss_file.stat().st_size / 2**20:.0f} MiB); SQLite (text, metadata, keyword index): "
              f"{sqlite_bytes / args.n:.0f} bytes per chunk ({sqlite_bytes / 2**30:.2f} GiB)")
        print(f"open the store (read-only, mapped): {open_s * 1000:.0f} ms")
        print(f"`quelle serve` process start to /readyz 200: {', '.join(f'{r:.2f}' for r in ready)} s "
              f"(target < 5 s); service RSS after a search: {started[-1][1]:.0f} MB")
        print(f"peak RSS of this benchmark process: {rss_mb():.0f} MB")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def store_rowid(store, chunk_id: str) -> int:
    with store._read() as (db, _, _):
        return int(db.execute("SELECT rowid FROM chunks WHERE id = ?", (chunk_id,)).fetchone()[0])


def ready_seconds(data_dir: Path) -> tuple[float, float]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_LOG_LEVEL": "WARNING", "QUELLE_AUTH": "off"}
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port",
                               str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    ready = time.perf_counter() - t0
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.perf_counter() - t0 > 120:
                raise SystemExit("the service did not start")
            time.sleep(0.02)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "How do I configure the network?"},
                       timeout=60)
        assert r.status_code == 200 and r.json()["results"], r.text
        status = Path(f"/proc/{server.pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024
        return ready, rss
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
