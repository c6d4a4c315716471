"""Does the unit reranker (service/extractive/rerank.py) cost retrieval quality where it was not tuned? nDCG@10
of hybrid retrieval with and without it on the six Debian evaluation sets (section headings as queries).

    python bench/make_eval_sets.py --max-queries 200
    python bench/e5_ndcg.py --variant torch          # builds the indexes this reads
    python bench/rerank_ndcg.py [--max-queries 100]

Questions and units are encoded on ONNX Runtime, one thread (the service runs batches on PyTorch bf16 once it
has loaded, about twice as fast here); the first `rerank_candidates` (20) fused chunks are reranked, as
`Retriever.search(for_answer=True)` does. Prints per set hybrid and hybrid+rerank nDCG@10, the difference, and
the seconds the reranker took per query. Fusion is the product's for the embedder (service/app.py
`retrieval_config`: the ensemble's rrf_k 30 and keyword weight 0.25); before 2026-12-07 this bench fused with
RetrievalConfig's defaults (rrf_k 60, equal weights), which the product does not use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu  # noqa: E402


def main() -> None:
    from cli import evaluate as ev
    from index.embedders.factory import load_embedder
    from service.app import retrieval_config
    from service.config import Settings
    from service.evaluation import dedupe, evaluate
    from service.extractive.rerank import UnitReranker
    from service.retrieval import fuse, rerank

    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=Path, default=ROOT / "bench" / ".cache" / "eval")
    ap.add_argument("--indexes", type=Path, default=ROOT / "bench" / ".cache" / "e5_ndcg" / "torch")
    ap.add_argument("--max-queries", type=int, default=100, help="the first N judged queries of each set")
    args = ap.parse_args()
    sets = sorted(p for p in args.sets.iterdir() if (p / "corpus.jsonl").exists())
    if not sets:
        sys.exit(f"no evaluation sets in {args.sets}: run bench/make_eval_sets.py first")
    print(f"CPU: {cpu()}", flush=True)
    settings = Settings(_env_file=None)
    model = load_embedder("multilingual", threads=1, backend="onnx", onnx_dir=settings.onnx_dir())
    reranker = UnitReranker(model)
    config = retrieval_config(settings, model.model_id)  # the product's fusion for this embedder
    print("| set | queries | hybrid | hybrid + unit rerank | difference | rerank s/query |")
    print("|---|---:|---:|---:|---:|---:|")
    for dataset in sets:
        workdir = args.indexes / dataset.name
        if not (workdir / "index" / "complete").exists():
            sys.exit(f"{workdir}: no index; run bench/e5_ndcg.py --variant torch first")
        run = ev.EvalRun.open(dataset, model, workdir)  # type: ignore[arg-type]
        try:
            qids = list(run.queries)[: args.max_queries]
            plain, reranked, spent = {}, {}, 0.0
            for qid in qids:
                text = run.queries[qid]
                cands = fuse(run.collected[qid], "hybrid", config, text)
                plain[qid] = dedupe([run.sources.get(c.hit.source, "") for c in cands])
                started = time.perf_counter()
                order = rerank(text, cands, reranker, config.rerank_candidates)
                spent += time.perf_counter() - started
                reranked[qid] = dedupe([run.sources.get(c.hit.source, "") for c in order])
            qrels = {q: run.qrels[q] for q in qids}
            before = evaluate(plain, qrels)["nDCG@10"]
            after = evaluate(reranked, qrels)["nDCG@10"]
        finally:
            run.close()
        print(f"| {dataset.name} | {len(qids)} | {before:.4f} | {after:.4f} | {after - before:+.4f} | "
              f"{spent / len(qids):.2f} |", flush=True)


if __name__ == "__main__":
    main()
