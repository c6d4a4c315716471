"""`quelle eval`: retrieval quality of each configuration on a BEIR-layout test set, or on a golden file.

BEIR layout: DATASET/corpus.jsonl ({"_id", "title", "text"}), DATASET/queries.jsonl ({"_id", "text"}),
DATASET/qrels/test.tsv (query-id, corpus-id, score; a header line). The corpus is ingested into a temporary
index through the normal pipeline (one Markdown file per document), then every query is run against each
configuration: dense, keyword, hybrid, and hybrid + rerank (the unit reranker by default, QUELLE_RERANK).

Golden file (JSONL, e.g. tests/data/qa.jsonl): {"question", "answerable", "source": file name, "page"}, run
against an existing index; a hit is a chunk from the expected file (and page, when given).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from index import keyword
from index.embedders.base import Embedder
from index.errors import QuelleError
from index.store import Retrieved, SearchFilter, StoreConfig, StoreReader, open_store
from index.text import has_cjk
from ingest.chunking import Chunker, ChunkingConfig
from ingest.pipeline import Ingestor
from service.evaluation import AbstainPoint, dedupe, evaluate
from service.retrieval import Reranker, RetrievalConfig, Retriever, fuse, term_overlap

log = logging.getLogger("quelle.eval")

CHUNK_DEPTH = 100  # chunks retrieved per query before collapsing them into documents


class DatasetError(QuelleError):
    """An evaluation file that cannot be used: names the file, the line and the problem."""


def read_jsonl(path: Path, required: dict[str, type | tuple[type, ...]]) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-empty line, each with the `required` fields of those
    types; DatasetError naming the file and line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read it: {exc}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n}: not a JSON object ({exc.msg} at column {exc.colno}); each line "
                               "holds one question as JSON") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{n}: a line must be a JSON object, not {type(row).__name__}")
        for name, kind in required.items():
            if not isinstance(row.get(name), kind):
                raise DatasetError(f"{path}:{n}: field {name!r} is missing or not "
                                   f"{getattr(kind, '__name__', 'a ' + ' or '.join(k.__name__ for k in kind))}")
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no questions in it")
    return rows


def read_golden(path: Path) -> list[dict[str, Any]]:
    """A golden file's rows ({"question", "answerable", "source", "page"}), checked."""
    rows = read_jsonl(path, {"question": str})
    for n, row in enumerate(rows, start=1):
        if not row["question"].strip():
            raise DatasetError(f"{path}: question {n} is empty")
        if not isinstance(row.get("answerable", True), bool):
            raise DatasetError(f"{path}: question {n}: 'answerable' must be true or false")
        if row.get("source") is not None and not isinstance(row["source"], str):
            raise DatasetError(f"{path}: question {n}: 'source' must be a file name")
    return rows


def load_beir(dataset: Path) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, int]]]:
    corpus = read_jsonl(dataset / "corpus.jsonl", {"_id": (str, int), "text": str})
    lines = read_jsonl(dataset / "queries.jsonl", {"_id": (str, int), "text": str})
    queries = {str(q["_id"]): q["text"] for q in lines}
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


def configurations(retriever: Retriever, reranker: Reranker | None) -> dict[str, tuple[Retriever, str]]:
    configs = {"dense": (retriever, "dense"), "keyword": (retriever, "keyword"), "hybrid": (retriever, "hybrid")}
    if reranker is not None:
        reranked = Retriever(retriever.store, retriever.embedder, replace(retriever.config), reranker)
        configs["hybrid+rerank"] = (reranked, "hybrid")
    return configs


def build_index(folder: Path, data_dir: Path, embedder: Embedder, chunking: ChunkingConfig,
                keyword_analyzer: str = keyword.ANALYZER) -> None:
    """Ingest a folder into a new scratch index (the embedded store in `data_dir`, whatever backend the
    service uses) through the normal pipeline (one commit at the end)."""
    chunker = Chunker(embedder.tokenizer, chunking)
    with open_store(StoreConfig(data_dir, keyword_analyzer=keyword_analyzer), model_id=embedder.model_id,
                    dim=embedder.dim, writable=True) as store:
        Ingestor(store, embedder, chunker, commit_interval=float("inf")).run([folder])


def collect(store: StoreReader, embedder: Embedder, queries: dict[str, str], depth: int = CHUNK_DEPTH,
            flt: Callable[[str], SearchFilter | None] | None = None) -> dict[str, Retrieved]:
    """Both candidate lists for every query, read once, so any fusion setting can be scored without
    searching again. `flt(qid)` may restrict a query's search (e.g. to leave its own passage out)."""
    out = {}
    for qid, text in queries.items():
        out[qid] = store.retrieve(embedder.embed_query(text), text, depth, flt(qid) if flt else None)
    return out


def ranked_runs(collected: dict[str, Retrieved], sources: dict[str, str], mode: str,
                config: RetrievalConfig, queries: dict[str, str]) -> dict[str, list[str]]:
    """Document ids per query, best first, as the Retriever would rank them in `mode`."""
    return {qid: dedupe([sources.get(c.hit.source, "") for c in fuse(got, mode, config, queries[qid])])
            for qid, got in collected.items()}


def run_beir(retriever: Retriever, queries: dict[str, str], sources: dict[str, str],
             qrels: dict[str, dict[str, int]], reranker: Reranker | None) -> dict[str, dict[str, float]]:
    judged = {qid: queries[qid] for qid in qrels if qid in queries}
    collected = collect(retriever.store, retriever.embedder, judged)
    report = {mode: evaluate(ranked_runs(collected, sources, mode, retriever.config, judged), qrels)
              for mode in ("dense", "keyword", "hybrid")}
    for name, (r, mode) in configurations(retriever, reranker).items():
        if name in report:
            continue
        runs = {}
        for qid, text in judged.items():
            got = r.search(text, CHUNK_DEPTH, mode=mode, for_answer=True)
            runs[qid] = dedupe([sources.get(c.hit.source, "") for c in got.candidates])
        report[name] = evaluate(runs, qrels)
    return report


def run_golden(retriever: Retriever, golden: Path, reranker: Reranker | None) -> dict[str, dict[str, float]]:
    """Retrieval metrics over the answerable questions that name their source file (a question without one
    cannot be scored: DatasetError when none can)."""
    rows = [r for r in read_golden(golden) if r.get("answerable", True)]
    scored = [r for r in rows if r.get("source")]
    if not scored:
        raise DatasetError(f"{golden}: no answerable question names the file that answers it ('source'), so "
                           "retrieval cannot be scored")
    if len(scored) < len(rows):
        log.warning("%s: %d answerable question(s) name no 'source' file and are left out of the retrieval "
                    "figures", golden, len(rows) - len(scored))
    rows = scored
    report = {}
    for name, (r, mode) in configurations(retriever, reranker).items():
        runs, qrels = {}, {}
        for i, row in enumerate(rows):
            want = f"{row['source']}#{row.get('page') or ''}"
            qrels[str(i)] = {want: 1}
            got = r.search(row["question"], CHUNK_DEPTH, mode=mode, for_answer=True)
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


def open_retriever(where: StoreConfig | Path, embedder, config) -> Retriever:  # type: ignore[no-untyped-def]
    """A retriever over an index: the configured one (a StoreConfig), or an embedded one in a folder."""
    store = open_store(where if isinstance(where, StoreConfig) else StoreConfig(where), model_id=embedder.model_id,
                       dim=embedder.dim)
    return Retriever(store, embedder, config)


def run_answers(answers, golden: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Answer-level metrics of the configured answerer on a golden file (service.evaluation.answer_metrics)."""
    from service.evaluation import answer_metrics

    rows = read_golden(golden)
    results = [answers.answer(answers.plan(row["question"], None, None, None)) for row in rows]
    return answer_metrics(rows, results)


@dataclass
class EvalRun:
    """A BEIR set ingested into an index, with both candidate lists read once per query: everything the
    evaluation, the tuning bench and the retrieval-quality notebook look at comes from here."""

    name: str
    store: StoreReader
    embedder: Embedder
    corpus: dict[str, str]  # corpus id -> passage text
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    sources: dict[str, str]  # indexed source path -> corpus id
    collected: dict[str, Retrieved]

    @classmethod
    def open(cls, dataset: Path, embedder: Embedder, workdir: Path, chunking: ChunkingConfig | None = None,
             keyword_analyzer: str = keyword.ANALYZER) -> EvalRun:
        """Ingest `dataset` under `workdir` (reused when already built there) and search every query."""
        corpus, queries, qrels = load_beir(dataset)
        sources = write_corpus(corpus, workdir / "corpus")
        index_dir = workdir / "index"
        if not (index_dir / "complete").exists():
            build_index(workdir / "corpus", index_dir, embedder, chunking or ChunkingConfig(), keyword_analyzer)
            (index_dir / "complete").write_text("ok")
        store = open_store(StoreConfig(index_dir), model_id=embedder.model_id, dim=embedder.dim)
        judged = {q: queries[q] for q in qrels if q in queries}
        return cls(dataset.name, store, embedder, {str(d["_id"]): d["text"] for d in corpus}, judged, qrels,
                   sources, collect(store, embedder, judged))

    def report(self, config: RetrievalConfig, modes: Sequence[str] = ("dense", "keyword", "hybrid")
               ) -> dict[str, dict[str, float]]:
        return {mode: evaluate(ranked_runs(self.collected, self.sources, mode, config, self.queries), self.qrels)
                for mode in modes}

    def failures(self, mode: str, config: RetrievalConfig, k: int = 5) -> list[dict[str, Any]]:
        """Queries whose relevant passage is not in the top k: the query, the expected passage, and what was
        retrieved instead, with scores."""
        out = []
        for qid, text in self.queries.items():
            cands = fuse(self.collected[qid], mode, config, text)
            top = []
            for c in cands:
                doc = self.sources.get(c.hit.source, "")
                if doc not in [t["doc"] for t in top]:
                    top.append({"doc": doc, "score": c.score, "dense": c.dense_score, "keyword": c.keyword_score,
                                "relevant": self.qrels[qid].get(doc, 0) > 0, "text": c.hit.chunk.text})
                if len(top) == k:
                    break
            if not any(t["relevant"] for t in top):
                expected = [self.corpus.get(d, "") for d, r in self.qrels[qid].items() if r > 0]
                out.append({"qid": qid, "query": text, "expected": expected, "retrieved": top})
        return out

    def dense_scores(self) -> tuple[list[float], list[float]]:
        """Dense scores of relevant and of irrelevant retrieved chunks, over all queries."""
        rel, irrel = [], []
        for qid, got in self.collected.items():
            for h in got.dense:
                (rel if self.qrels[qid].get(self.sources.get(h.source, ""), 0) > 0 else irrel).append(h.score)
        return rel, irrel

    def abstain_points(self) -> list[AbstainPoint]:
        """The policy's evidence for every query with its passage in the index (answerable) and with its
        passage filtered out (a near miss: the rest of the corpus is about the same topics)."""
        doc_of = {self.sources[d.source]: d.id for d in self.store.documents(0, 10**9)[0] if d.source in self.sources}
        every = frozenset(doc_of.values())

        def without_own(qid: str) -> SearchFilter:
            return SearchFilter(document_ids=every - {doc_of[c] for c in self.qrels[qid] if c in doc_of})

        held_out = collect(self.store, self.embedder, self.queries, flt=without_own)
        points = []
        for qid, text in self.queries.items():
            for answerable, got in ((True, self.collected[qid]), (False, held_out[qid])):
                cands = fuse(got, "hybrid", RetrievalConfig(), text)
                points.append(AbstainPoint(max((h.score for h in got.dense), default=None),
                                           term_overlap(text, cands), has_cjk(text), answerable))
        return points

    def close(self) -> None:
        self.store.close()
