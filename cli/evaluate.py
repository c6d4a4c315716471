"""`quelle eval`: retrieval quality of each configuration on a BEIR-layout test set, or on a golden file.

BEIR layout: DATASET/corpus.jsonl ({"_id", "title", "text"}), DATASET/queries.jsonl ({"_id", "text"}),
DATASET/qrels/test.tsv (query-id, corpus-id, score; a header line). The corpus is ingested into a temporary
index through the normal pipeline (one Markdown file per document), then every query is run against each
configuration: dense, keyword, hybrid, and hybrid + rerank when a reranker is configured.

Golden file (JSONL, e.g. tests/data/qa.jsonl): {"question", "answerable", "source": file name, "page"}, run
against an existing index; a hit is a chunk from the expected file (and page, when given).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from index.faiss_store import FaissSqliteStore
from service.evaluation import dedupe, evaluate
from service.retrieval import CrossEncoderReranker, Retriever

CHUNK_DEPTH = 100  # chunks retrieved per query before collapsing them into documents


def load_beir(dataset: Path) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, int]]]:
    corpus = [json.loads(line) for line in (dataset / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line]
    queries = {}
    for line in (dataset / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            queries[str(q["_id"])] = q["text"]
    qrels: dict[str, dict[str, int]] = {}
    with open(dataset / "qrels" / "test.tsv", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 3 or not row[2].lstrip("-").isdigit():
                continue  # the header line
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return corpus, queries, qrels


def write_corpus(corpus: list[dict[str, Any]], folder: Path) -> dict[str, str]:
    """One Markdown file per document; returns source path -> corpus id."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {}
    for i, doc in enumerate(corpus):
        name = f"{i:07d}-{re.sub(r'[^A-Za-z0-9_-]+', '_', str(doc['_id']))[:60]}.md"
        title = (doc.get("title") or "").strip()
        path = folder / name
        path.write_text((f"# {title}\n\n" if title else "") + doc["text"], encoding="utf-8")
        sources[path.resolve().as_posix()] = str(doc["_id"])
    return sources


def configurations(retriever: Retriever, rerank_model: str | None) -> dict[str, tuple[Retriever, str]]:
    configs = {"dense": (retriever, "dense"), "keyword": (retriever, "keyword"), "hybrid": (retriever, "hybrid")}
    if rerank_model:
        reranked = Retriever(retriever.store, retriever.embedder, replace(retriever.config),
                             CrossEncoderReranker(rerank_model))
        configs["hybrid+rerank"] = (reranked, "hybrid")
    return configs


def run_beir(retriever: Retriever, queries: dict[str, str], sources: dict[str, str],
             qrels: dict[str, dict[str, int]], rerank_model: str | None) -> dict[str, dict[str, float]]:
    report = {}
    for name, (r, mode) in configurations(retriever, rerank_model).items():
        runs = {}
        for qid in qrels:
            if qid in queries:
                got = r.search(queries[qid], CHUNK_DEPTH, mode=mode)
                runs[qid] = dedupe([sources.get(c.hit.source, "") for c in got.candidates])
        report[name] = evaluate(runs, qrels)
    return report


def run_golden(retriever: Retriever, golden: Path, rerank_model: str | None) -> dict[str, dict[str, float]]:
    rows = [json.loads(line) for line in golden.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get("answerable", True) and r.get("source")]
    report = {}
    for name, (r, mode) in configurations(retriever, rerank_model).items():
        runs, qrels = {}, {}
        for i, row in enumerate(rows):
            want = f"{row['source']}#{row.get('page') or ''}"
            qrels[str(i)] = {want: 1}
            got = r.search(row["question"], CHUNK_DEPTH, mode=mode)
            keys = [f"{Path(c.hit.source).name}#{c.hit.chunk.page if row.get('page') else ''}" for c in got.candidates]
            runs[str(i)] = dedupe(keys)
        report[name] = evaluate(runs, qrels)
    return report


def format_table(report: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(report.values())))
    lines = [f"{'configuration':16}" + "".join(f"{n:>9}" for n in names)]
    for config, metrics in report.items():
        lines.append(f"{config:16}" + "".join(f"{metrics[n]:9.3f}" for n in names))
    return "\n".join(lines)


def open_retriever(data_dir: Path, embedder, config) -> Retriever:  # type: ignore[no-untyped-def]
    store = FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=False)
    return Retriever(store, embedder, config)


def run_answers(answers, golden: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Answer-level metrics of the configured answerer on a golden file (service.evaluation.answer_metrics)."""
    from service.evaluation import answer_metrics

    rows = [json.loads(line) for line in golden.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = [answers.answer(answers.plan(row["question"], None, None, None)) for row in rows]
    return answer_metrics(rows, results)
