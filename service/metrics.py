"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("quelle_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("quelle_request_seconds", "HTTP request latency", ["route"], registry=r)
        self.retrieval = Histogram("quelle_retrieval_seconds", "retrieval latency (encode + search + fuse)",
                                   registry=r)
        self.stages = Histogram("quelle_retrieval_stage_seconds", "retrieval latency by stage (encode: the query "
                                "vector; search: both paths in the store; fuse: fusion, reranking, abstention)",
                                ["stage"], registry=r,
                                buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1))
        self.llm = Histogram("quelle_llm_seconds", "language model latency per completion", registry=r,
                             buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.llm_tokens = Counter("quelle_llm_tokens_total", "language model tokens", ["kind"], registry=r)
        self.abstentions = Counter("quelle_abstentions_total", "questions answered 'not in the documents'",
                                   registry=r)
        self.blocked = Counter("quelle_answers_blocked_total", "answers cut for repeating the system prompt",
                               registry=r)
        self.documents = Gauge("quelle_index_documents", "documents in the index", registry=r)
        self.chunks = Gauge("quelle_index_chunks", "chunks in the index", registry=r)
        self.generation = Gauge("quelle_index_generation", "committed index generation", registry=r)
        # perception (ingest/watch.py, webhooks, chat): events in, changes applied, the lag to searchable
        self.sync_events = Counter("quelle_sync_events_total", "changes received (file events, webhook paths)",
                                   ["source"], registry=r)
        self.sync_applied = Counter("quelle_sync_changes_applied_total", "changes now searchable (or removed)",
                                    ["source"], registry=r)
        self.sync_failures = Counter("quelle_sync_failures_total", "files that failed and runs that failed",
                                     ["source"], registry=r)
        self.sync_pending = Gauge("quelle_sync_pending", "changes waiting to settle or to be applied", ["source"],
                                  registry=r)
        self.sync_lag = Histogram("quelle_sync_lag_seconds", "from a file's change to its commit (searchable)",
                                  ["source"], registry=r,
                                  buckets=(0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
        self.chat_events = Counter("quelle_chat_events_total", "chat events received", ["kind"], registry=r)
        self.chat_failures = Counter("quelle_chat_failures_total", "chat replies that could not be posted",
                                     registry=r)

    # SyncObserver (ingest/watch.py)
    def received(self, source: str, n: int) -> None:
        self.sync_events.labels(source).inc(n)

    def applied(self, source: str, lags: Sequence[float]) -> None:
        self.sync_applied.labels(source).inc(len(lags))
        for lag in lags:
            self.sync_lag.labels(source).observe(lag)

    def failed(self, source: str, n: int) -> None:
        self.sync_failures.labels(source).inc(n)

    def pending(self, source: str, n: int) -> None:
        self.sync_pending.labels(source).set(n)

    def observe_retrieval(self, seconds: float, stages: dict[str, float]) -> None:
        self.retrieval.observe(seconds)
        for stage, t in stages.items():
            self.stages.labels(stage).observe(t)
