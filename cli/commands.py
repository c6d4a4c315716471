"""What each `quelle` subcommand does, wired from settings to the library."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index.store import StoreStats, open_store
from index.store import backend as store_backend
from ingest.acl import AclPolicy
from ingest.chunking import Chunker, ChunkingConfig
from ingest.pipeline import Ingestor
from ingest.report import IngestReport
from ingest.sandbox import ParseLimits, ParserPool
from service.config import Settings


def chunking(settings: Settings) -> ChunkingConfig:
    return ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap, settings.chunk_tokens_cjk)


def parser_pool(settings: Settings) -> ParserPool:
    return ParserPool(settings.parse_workers, ParseLimits(settings.parse_timeout, settings.parse_memory_mb))


def acl_policy(settings: Settings, override: tuple[str, ...] | None = None) -> AclPolicy:
    return AclPolicy.build(settings.default_acl, [(r.path, r.acl) for r in settings.acl_rules], override)


def ingest(settings: Settings, paths: list[Path], *, sync: bool, as_json: bool, quiet: bool,
           commit_interval: float | None, acl: tuple[str, ...] | None = None, ray: str | None = None) -> int:
    store_backend(settings.store()).check_not_written(settings.store())  # before the model's load, not after it
    embedder = settings.load_embedder()
    options: dict[str, Any] = {
        "commit_interval": settings.commit_interval if commit_interval is None else commit_interval,
        "acl": acl_policy(settings, acl), "max_file_bytes": settings.max_file_mb << 20}
    with ExitStack() as stack:
        store = stack.enter_context(open_store(settings.store(), model_id=embedder.model_id, dim=embedder.dim,
                                               writable=True))
        ingestor: Ingestor
        if ray is None:
            pool = stack.enter_context(parser_pool(settings))
            ingestor = Ingestor(store, embedder, Chunker(embedder.tokenizer, chunking(settings)), parser=pool,
                                **options)
        else:
            from ingest.distributed import RayIngestor, plan
            from ingest.ray_cluster import ray_cluster

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            resources = stack.enter_context(ray_cluster(
                None if ray == "local" else ray, cpus=settings.ray_cpus,
                leftovers=settings.data_dir / "ray-processes.json"))
            split = plan(resources.get("CPU", 0), resources.get("GPU", 0), actors=settings.ray_actors,
                         local_cores=os.cpu_count() if ray == "local" else None)
            if not quiet and not as_json:
                print(f"Ray: {split.describe()}", file=sys.stderr)
            ingestor = RayIngestor(store, embedder, settings.embedder_factory(), chunking(settings), plan=split,
                                   limits=ParseLimits(settings.parse_timeout, settings.parse_memory_mb), **options)
        bar = None
        if not quiet and not as_json and sys.stderr.isatty():  # a bar is for a person at a terminal
            from tqdm import tqdm

            bar = tqdm(unit="file", file=sys.stderr, dynamic_ncols=True)
        started = time.monotonic()

        def progress(report: IngestReport, done: int, total: int) -> None:
            if bar is None:
                return
            bar.total = total
            bar.update(done - bar.n)
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.set_postfix(chunks_embedded=report.chunks_embedded, tokens_s=f"{report.tokens_embedded / elapsed:.0f}",
                            failed=report.failed)

        try:
            report = ingestor.run(paths, sync=sync, progress=progress)
        finally:
            if bar is not None:
                bar.close()
    report.save(settings.last_ingest_report(), paths=[str(p) for p in paths],
                finished=datetime.now(UTC).isoformat(timespec="seconds"))
    if settings.query_backend != "torch":  # PyTorch is loaded here: spare the service's first start the export
        from index.embedders.factory import prepare

        prepare(embedder, settings.onnx_dir())
    print(report.to_json() if as_json else report.summary())
    return 0 if report.ok else FILES_FAILED


FILES_FAILED = 4  # exit code: some files could not be ingested (named in the report); the others are in


def stats(settings: Settings) -> StoreStats:
    store = open_store(settings.store())
    try:
        return store.stats()
    finally:
        store.close()


def search(settings: Settings, query: str, k: int, *, as_json: bool) -> int:
    embedder = settings.load_embedder(threads=1, serving=True, one_shot=True)
    store = open_store(settings.store(), model_id=embedder.model_id, dim=embedder.dim)
    try:
        hits = store.search(embedder.embed_query(query), k)
    finally:
        store.close()
    if as_json:
        print(json.dumps([{
            "score": round(h.score, 4), "source": h.source, "title": h.title, "page": h.chunk.page,
            "heading_path": list(h.chunk.heading_path), "chunk_id": h.chunk.id, "text": h.chunk.text,
        } for h in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no results (is the index empty?)")
    for rank, h in enumerate(hits, start=1):
        where = h.source + (f" p.{h.chunk.page}" if h.chunk.page else "")
        heading = " > ".join(h.chunk.heading_path)
        print(f"{rank}. [{h.score:.3f}] {h.title} — {where}" + (f" § {heading}" if heading else ""))
        snippet = " ".join(h.chunk.text.split())
        print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}")
    return 0


def serve(settings: Settings) -> int:
    """Listen first (a port in use is one line, before anything loads or "ready" is logged), then load the
    model and check the index against it (a model mismatch is one line, not a traceback from the server's
    start-up), then serve on that socket."""
    import uvicorn

    from cli.indexer import FileIngestor
    from service import logs
    from service.app import create_app
    from service.http import guarded_protocol

    sock = listen(settings.host, settings.port)
    try:
        logs.configure(settings.log_level)
        embedder = settings.load_embedder(threads=settings.query_threads, serving=True)
        store_backend(settings.store()).check_model(settings.store(), embedder.model_id, embedder.dim)
        ingest_file = FileIngestor(settings.store(), embedder, embedder.tokenizer, chunking(settings),
                                   acl_policy(settings), parser_pool(settings), settings.commit_interval,
                                   settle=settings.watch_settle, polling=settings.watch_polling)
        app = create_app(settings, embedder=embedder, ingest_file=ingest_file, perception=ingest_file)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                               access_log=False,
                                               http=guarded_protocol(settings.http_limits())))
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


def watch(settings: Settings, paths: list[Path], *, acl: tuple[str, ...] | None, polling: bool | None,
          metrics_port: int | None) -> int:
    """Catch up, then follow the folders until SIGINT or SIGTERM (ingest/watch.py)."""
    import signal
    import threading

    from cli.indexer import FileIngestor
    from service import logs
    from service.metrics import Metrics

    logs.configure(settings.log_level)
    embedder = settings.load_embedder()
    metrics = Metrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        listen(settings.host, metrics_port).close()  # a port in use is one clear line
        start_http_server(metrics_port, addr=settings.host, registry=metrics.registry)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with parser_pool(settings) as pool:
        files = FileIngestor(settings.store(), embedder, embedder.tokenizer, chunking(settings),
                             acl_policy(settings, acl), pool, settings.commit_interval,
                             settle=settings.watch_settle, polling=polling)
        files.watcher(paths, metrics).run(stop)
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, as uvicorn would make it; QuelleError naming the address when it
    cannot be had."""
    from index.errors import QuelleError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise QuelleError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = "the address is already in use (another server on that port?)" \
            if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise QuelleError(f"cannot listen on {host}:{port}: {why}; choose another with --port or QUELLE_PORT") \
            from None
    sock.set_inheritable(True)
    return sock


def ask(settings: Settings, question: str, k: int | None, *, as_json: bool, agent: bool = False) -> int:
    from service.answering import Step
    from service.app import build_services
    from service.metrics import Metrics

    embedder = settings.load_embedder(threads=settings.query_threads, serving=True, one_shot=True)
    svc = build_services(settings, Metrics(), embedder=embedder, ingest_file=None, llm=None, llm_http_client=None)
    try:
        answerer = svc.answerer("agent" if agent else "single")
        plan = answerer.plan(question, None, k, None)
        text = []
        for item in answerer.deltas(plan):
            if isinstance(item, Step):  # shown as it happens: a run takes a while with a small local model
                if not as_json:
                    print(f"· {item.tool}({item.input!r}): {item.thought}", file=sys.stderr, flush=True)
            else:
                text.append(item)
        got = answerer.finish(plan, "".join(text))
    finally:
        svc.answers.conversations.close()
        svc.store.close()
    cites = got.checked.citations
    if as_json:
        out = {"answer": got.checked.answer, "grounded": got.checked.grounded, "abstained": got.abstained,
               "unsupported": got.checked.unsupported, "citations": [c.__dict__ for c in cites]}
        if agent:
            out |= {"steps": [s.__dict__ for s in got.steps], "fallback": got.fallback or None}
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    if got.fallback:
        print(f"(agent: {got.fallback}; answered from what it had observed)", file=sys.stderr)
    print(got.checked.answer)
    if cites:
        print("\nSources:")
    for c in cites:
        where = c.source + (f" p.{c.page}" if c.page else "")
        print(f"[{c.n}] {c.title} — {where}")
        for quote in c.quotes or (c.quote,):
            print("    " + "\n    ".join(f"“{quote}”".splitlines()))
    return 0


def evaluate(settings: Settings, dataset: Path, *, as_json: bool, answers: bool = False) -> int:
    from cli import evaluate as ev
    from service.app import retrieval_config

    embedder = settings.load_embedder()
    config = retrieval_config(settings, embedder.model_id)
    if dataset.is_dir():
        corpus, queries, qrels = ev.load_beir(dataset)
        with tempfile.TemporaryDirectory(prefix="quelle-eval-") as tmp:
            sources = ev.write_corpus(corpus, Path(tmp) / "corpus")
            ev.build_index(Path(tmp) / "corpus", Path(tmp) / "index", embedder,
                           chunking(settings), settings.keyword_analyzer)
            retriever = ev.open_retriever(Path(tmp) / "index", embedder, config)
            try:
                report = ev.run_beir(retriever, queries, sources, qrels, settings.reranker(embedder))
            finally:
                retriever.store.close()
    else:
        retriever = ev.open_retriever(settings.store(), embedder, config)
        try:
            report = ev.run_golden(retriever, dataset, settings.reranker(embedder))
        finally:
            retriever.store.close()
    answer_report = None
    if answers and not dataset.is_dir():
        from service.app import build_services
        from service.metrics import Metrics

        svc = build_services(settings, Metrics(), embedder=embedder, ingest_file=None, llm=None, llm_http_client=None)
        try:
            answer_report = ev.run_answers(svc.answers, dataset)
        finally:
            svc.answers.conversations.close()
            svc.store.close()
    if as_json:
        print(json.dumps({"retrieval": report, "answers": answer_report} if answers else report, indent=2))
        return 0
    print(ev.format_table(report))
    for name, value in (answer_report or {}).items():
        print(f"{name:20} {value:.3f}")
    return 0


def keys(settings: Settings, args: Any) -> int:
    from dataclasses import asdict

    from service.auth import KeyStore, parse_groups

    store = KeyStore.open(settings.store())
    try:
        if args.keys_command == "create":
            key, info = store.create(args.name, parse_groups(args.groups))
            if args.json:
                print(json.dumps({"key": key, **asdict(info)}))
            else:
                print(key)
                print(f"id {info.id}, name {info.name}, groups {','.join(info.groups) or '(none)'}: "
                      "store the key now, it is not shown again", file=sys.stderr)
            return 0
        if args.keys_command == "list":
            listed = store.list()
            if args.json:
                print(json.dumps([asdict(k) for k in listed]))
            for k in [] if args.json else listed:
                state = "revoked" if k.revoked else "active"
                print(f"{k.id}  {k.name:20} {','.join(k.groups) or '-':30} {state}")
            return 0
        revoked = store.revoke(args.key)
        if not revoked:
            print(f"quelle: error: no active key with id or name {args.key!r}", file=sys.stderr)
            return 1
        print("revoked " + ", ".join(f"{k.id} ({k.name})" for k in revoked))
        return 0
    finally:
        store.close()
