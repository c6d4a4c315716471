"""Fact hit, abstention recall and time per cold answer of the service's extractive path, under settings of the
unit reranker and the passage answerer, on the answer sets.

    python bench/answer_sets.py && python bench/answer_speed.py [--only en ja zh] [--setting NAME:KEY=V,KEY=V ...]

Each setting runs every question of a set through the service's own objects (`build_services`: questions on
the query backend, passages on PyTorch once it has loaded, the embedding cache off, so every answer is cold):
retrieval, the reranker, the answerer. Keys: `max_chars` and `units_per_chunk` (the reranker),
`rerank_candidates` (how many fused chunks it reorders), `max_embedded` and `embed_chars` (the answerer). Unset
keys keep the code's defaults. Prints per set and setting: fact hit (answerable questions whose answer holds the
fact), abstention recall (unanswerable ones refused) and the median and mean seconds per answer.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SETTINGS = ["now:", "before:max_chars=200,embed_chars=0", "reranker80:max_chars=80",
                    "rerank12:rerank_candidates=12", "one_unit:units_per_chunk=1", "embed20:max_embedded=20"]


def parse(setting: str) -> tuple[str, dict[str, int]]:
    name, _, body = setting.partition(":")
    values = dict(kv.split("=") for kv in body.split(",") if kv)
    return name, {k: int(v) for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=Path, default=ROOT / "bench" / ".cache" / "answers")
    ap.add_argument("--only", nargs="+", default=["en", "ja", "zh"])
    ap.add_argument("--setting", nargs="*", default=DEFAULT_SETTINGS, metavar="NAME:KEY=V,...",
                    help="embed_chars=0 embeds whole units")
    args = ap.parse_args()
    os.environ["QUELLE_EMBED_CACHE"] = "0"
    from bench.machine import cpu
    from cli.answer_eval import load_questions
    from service.answering import answer
    from service.app import build_services
    from service.config import Settings
    from service.evaluation import fact_matches
    from service.metrics import Metrics

    print(f"CPU: {cpu()}")
    for lang in args.only:
        folder = args.sets / lang
        settings = Settings(data_dir=folder / "index", auth="off", answerer="extractive", embed_cache=0)
        embedder = settings.load_embedder(threads=1, serving=True)
        svc = build_services(settings, Metrics(), embedder=embedder, ingest_file=None, llm=None,
                             llm_http_client=None)
        for part in (getattr(embedder, "e5", None), getattr(embedder, "minilm", None)):
            loaded = getattr(part, "loaded", None)
            if loaded is not None:
                loaded.wait(300)  # passages on PyTorch, as the running service has them
        rows = load_questions(folder / "questions.jsonl")
        retriever, extractor = svc.answers.retriever, svc.answers.extractive
        reranker = retriever.reranker
        defaults = (retriever.config, reranker.max_chars, reranker.units_per_chunk, extractor.max_embedded,
                    extractor.embed_chars)
        for name, values in map(parse, args.setting):
            retriever.config = dataclasses.replace(
                defaults[0], rerank_candidates=values.get("rerank_candidates", defaults[0].rerank_candidates))
            reranker.max_chars = values.get("max_chars", defaults[1])
            reranker.units_per_chunk = values.get("units_per_chunk", defaults[2])
            extractor.max_embedded = values.get("max_embedded", defaults[3])
            extractor.embed_chars = values.get("embed_chars", defaults[4]) or None
            hits = refused = answerable = 0
            seconds = []
            for row in rows:
                t0 = time.perf_counter()
                got = answer(svc.answers, svc.answers.plan(row["question"], None, None, None))
                seconds.append(time.perf_counter() - t0)
                if row.get("answerable", True):
                    answerable += 1
                    hits += not got.abstained and fact_matches(row["fact"], got.checked.answer)
                else:
                    refused += got.abstained
            print(f"{lang} {name:12} fact hit {hits / answerable:.3f}  abstention recall "
                  f"{refused / max(len(rows) - answerable, 1):.3f}  p50 {statistics.median(seconds) * 1000:.0f} ms  "
                  f"mean {statistics.mean(seconds) * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
