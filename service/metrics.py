"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

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

    def observe_retrieval(self, seconds: float, stages: dict[str, float]) -> None:
        self.retrieval.observe(seconds)
        for stage, t in stages.items():
            self.stages.labels(stage).observe(t)
