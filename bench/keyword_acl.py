"""What BM25 over the caller's readable chunks costs: keyword search latency for a caller who reads half of
the index (statistics over that half, index/embedded/keyword.py `subset_bm25`) against one who reads everything (FTS5's
own bm25()), in one run.

    python bench/keyword_acl.py [--chunks 100000]

The chunks are real text: the English answer set's index (bench/answer_sets.py builds it) cut into ~120-word
pieces and repeated with shuffled words up to --chunks, in documents of 100 chunks, every other document
readable by the caller's group only. The queries are that set's 60 questions. Vectors are random (only the
keyword path is timed).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu  # noqa: E402

SOURCE = ROOT / "bench" / ".cache" / "answers" / "en" / "index" / "quelle.sqlite"
QUESTIONS = ROOT / "bench" / "answers" / "en.jsonl"




def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    args = ap.parse_args()
    from index.embedded import FaissSqliteStore
    from index.records import ChunkRecord, DocumentRecord, chunk_id, document_id
    from index.store import SearchFilter

    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing: run python bench/answer_sets.py first")
    texts = [r[0] for r in sqlite3.connect(SOURCE).execute("SELECT text FROM chunks")]
    pieces = [" ".join(w[i:i + 120]) for t in texts if (w := t.split()) for i in range(0, len(w), 120)]
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = FaissSqliteStore(Path(tmp), model_id="bench/random-16", dim=16, writable=True)
        started = time.perf_counter()
        n, d = 0, 0
        while n < args.chunks:
            source = f"/bench/doc{d}.txt"
            chunks = []
            for i in range(100):
                words = pieces[(n + i) % len(pieces)].split()
                if n + i >= len(pieces):
                    rng.shuffle(words)
                text = " ".join(words)
                chunks.append(ChunkRecord(id=chunk_id(source, i, text), document_id=document_id(source), ordinal=i,
                                          text=text, char_start=i, char_end=i + 1, n_tokens=len(words)))
            doc = DocumentRecord(id=document_id(source), source=source, title=source, kind="text",
                                 content_hash=str(d), size=1, mtime_ns=1, acl=("group:a",) if d % 2 else ("public",))
            vecs = np.random.default_rng(d).standard_normal((len(chunks), 16)).astype("float32")
            store.put(doc, chunks, vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
            n, d = n + len(chunks), d + 1
        store.commit()
        store.close()
        built = time.perf_counter() - started
        reader = FaissSqliteStore(Path(tmp), model_id="bench/random-16", dim=16, writable=False)
        everyone = SearchFilter(principals=frozenset({"public", "group:a"}))  # reads every chunk: FTS5's bm25()
        half = SearchFilter(principals=frozenset({"public"}))  # reads half: BM25 over that half
        timings: dict[str, list[float]] = {"everything": [], "half": []}
        for flt in (everyone, half):
            reader.retrieve(None, questions[0], 10, flt)  # the filter's rowids and mean length are cached
        for _ in range(3):
            for q in questions:
                for name, flt in (("everything", everyone), ("half", half)):
                    t = time.perf_counter()
                    reader.retrieve(None, q, 10, flt)
                    timings[name].append(time.perf_counter() - t)
        reader.close()
    p50 = {k: statistics.median(v) * 1000 for k, v in timings.items()}
    p95 = {k: float(np.percentile(v, 95)) * 1000 for k, v in timings.items()}
    print(f"CPU: {cpu()}; {n} chunks in {d} documents (built in {built:.0f} s); {len(questions)} questions x 3")
    for k in timings:
        print(f"  reads {k:10s} keyword search p50 {p50[k]:7.2f} ms  p95 {p95[k]:7.2f} ms")
    print(f"  ratio half / everything: p50 {p50['half'] / p50['everything']:.2f}x, "
          f"p95 {p95['half'] / p95['everything']:.2f}x")


if __name__ == "__main__":
    main()
