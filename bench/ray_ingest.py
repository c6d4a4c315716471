"""Ingestion throughput, single process vs Ray Data on this machine, in one run; and the figures a scaling model
for N machines needs.

    python bench/ray_ingest.py            # corpus A of bench/ingest.py (real Debian documentation)
    python bench/ray_ingest.py --quick    # a quarter of it

Each run is `quelle ingest FOLDER --json` in a fresh data dir, as a user runs it (`--ray`: a local cluster of
this machine's CPUs). Printed: wall time (the whole command: model load, Ray start-up), the ingestion's own time
(`seconds` in the report: from discovery to the last commit), chunks and MiniLM tokens per second of each, and
the ratio Ray / single. The same model in both (default: the multilingual default).

Scaling model: a Ray cluster of N machines embeds at about N x (one machine's embedding rate) until the one
driver's writes become the limit; the driver's ceiling is the store's write rate (bench/store_compare.py: build
time per chunk, embedded and PostgreSQL), so N_max = write rate / one machine's chunk rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(folder: Path, data_dir: Path, model: str, *flags: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_EMBEDDING_MODEL": model, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli.main", "ingest", str(folder), "--data-dir", str(data_dir),
                          "--json", *flags], capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 4):
        raise SystemExit(f"quelle ingest {' '.join(flags)} failed:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout)
    return {"wall": wall, "seconds": report["seconds"], "chunks": report["chunks_written"],
            "files": report["added"], "failed": report["failed"], "data_dir": data_dir}


def main() -> None:
    from bench.ingest import _embedded_texts, corpus, minilm_tokens
    from bench.machine import cpu

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="multilingual")
    args = ap.parse_args()
    files, _ = corpus(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        for i, f in enumerate(files):
            shutil.copy(f, folder / f"{i:04d}-{f.name}")
        runs = {"single process": run(folder, Path(tmp) / "single", args.model),
                "Ray Data (local cluster)": run(folder, Path(tmp) / "ray", args.model, "--ray")}
        tokens = minilm_tokens(_embedded_texts(Path(tmp) / "single"))
    print(f"CPU: {cpu()}; {os.cpu_count()} cores; model: {args.model}")
    single = runs["single process"]
    print(f"corpus: {single['files']} files ({single['failed']} failed), {single['chunks']} chunks, "
          f"{tokens} MiniLM tokens")
    print(f"{'run':28} {'wall s':>8} {'ingest s':>9} {'chunks/s':>9} {'tokens/s':>9} {'tokens/s wall':>14}")
    for name, r in runs.items():
        print(f"{name:28} {r['wall']:8.1f} {r['seconds']:9.1f} {r['chunks'] / r['seconds']:9.1f} "
              f"{tokens / r['seconds']:9.0f} {tokens / r['wall']:14.0f}")
    ray = runs["Ray Data (local cluster)"]
    assert ray["chunks"] == single["chunks"], (ray["chunks"], single["chunks"])  # the same index (the tests check it)
    print(f"ratio Ray / single, ingestion time: {ray['seconds'] / single['seconds']:.2f}; "
          f"wall: {ray['wall'] / single['wall']:.2f}")
    rate = ray["chunks"] / ray["seconds"]
    for store, write_rate in (("embedded", 100_000 / 24.0), ("PostgreSQL", 100_000 / 171.0)):
        print(f"scaling model, {store} store: the driver writes ~{write_rate:,.0f} chunks/s (bench/store_compare.py, "
              f"100k build); machines like this one add ~{rate:.0f} chunks/s each: N_max ~ {write_rate / rate:.0f}")


if __name__ == "__main__":
    main()
