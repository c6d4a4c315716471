"""Memory of the default embedder (e5 + MiniLM) as ingestion and the service load it, with the word tables
outside OpenVINO's compiled graphs (index/embedders/graphs.OpenVinoSession, memory-mapped from the model cache)
and inside them (as before 2026-12-07), measured in one run, each load in a process of its own.

    .venv/bin/python bench/embedder_memory.py

Each row: resident memory once loaded (the service: once its OpenVINO batches have loaded too), after
embedding 48 passages (English and Japanese) and a question, and the process's peak. Run it after the model
cache holds the exports (`quelle ingest` or the service's first start make them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from index.embedders import graphs
if sys.argv[3] == "inside":  # the graph compiled whole, its word table converted inside it
    graphs._split_word_table = lambda model: None
from index.embedders.factory import load_embedder
from service.config import Settings

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

e = load_embedder("multilingual", onnx_dir=Settings(_env_file=None).onnx_dir(), backend=sys.argv[2])
if hasattr(e, "settle"):
    e.settle()
loaded = rss()
english, japanese = "The quick brown fox jumps over the lazy dog " * 20, "設定ファイルを編集してください。" * 20
e.embed_passages([english] * 32 + [japanese] * 16)
e.embed_query("how do I configure apt")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"loaded": loaded, "used": rss(), "peak": peak}))
"""


def measure(backend: str, table: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), backend, table], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.machine import cpu

    print(f"CPU: {cpu()}")
    print(f"{'load':38}{'word tables':>13}{'loaded MB':>11}{'used MB':>9}{'peak MB':>9}")
    for label, backend in (("ingestion (OpenVINO batches)", "torch"),
                           ("service (ONNX Runtime + OpenVINO)", "auto")):
        rows = {t: measure(backend, t) for t in ("mapped", "inside")}
        for table, m in rows.items():
            print(f"{label:38}{table:>13}{m['loaded']:11.0f}{m['used']:9.0f}{m['peak']:9.0f}")
        print(f"{'':38}{'mapped/inside':>13}{rows['mapped']['loaded'] / rows['inside']['loaded']:11.2f}"
              f"{rows['mapped']['used'] / rows['inside']['used']:9.2f}"
              f"{rows['mapped']['peak'] / rows['inside']['peak']:9.2f}")


if __name__ == "__main__":
    main()
