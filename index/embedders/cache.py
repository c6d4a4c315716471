"""Query-time embedding reuse: a bounded LRU of query and passage (sentence) vectors in front of an embedder.

The service embeds the same text again and again: a question for retrieval and again for the extractive
answer, the sentences of popular chunks for every question that retrieves them. A vector is a pure function
of (model, text), so reusing it changes no score. Bounded by entries (`size`), least recently used out.
Thread-safe; the model runs outside the lock, so two requests may embed the same new text at once (both get
the same vector).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np


class CachingEmbedder:
    def __init__(self, inner: Any, size: int) -> None:
        self.inner = inner
        self.size = size
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.tokenizer = getattr(inner, "tokenizer", None)
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._passages: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            vec = self._get(self._queries, text)
        if vec is None:
            vec = np.asarray(self.inner.embed_query(text), dtype=np.float32).reshape(-1)
            with self._lock:
                self._put(self._queries, text, vec)
        return vec.copy()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        with self._lock:
            found = {t: v for t in unique if (v := self._get(self._passages, t)) is not None}
        missing = [t for t in unique if t not in found]
        if missing:
            vectors = np.asarray(self.inner.embed_passages(missing), dtype=np.float32)
            with self._lock:
                for t, v in zip(missing, vectors, strict=True):
                    found[t] = v
                    self._put(self._passages, t, v)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def _get(self, table: OrderedDict[str, np.ndarray], text: str) -> np.ndarray | None:
        vec = table.get(text)
        if vec is None:
            self.misses += 1
            return None
        self.hits += 1
        table.move_to_end(text)
        return vec

    def _put(self, table: OrderedDict[str, np.ndarray], text: str, vec: np.ndarray) -> None:
        table[text] = vec
        table.move_to_end(text)
        while len(table) > self.size:
            table.popitem(last=False)


def cached(embedder: Any, size: int) -> Any:
    """`embedder` with its vectors cached (an ensemble caches each of its models, so a question that needs
    only one of them reuses that one's vectors); `size` 0 returns it unchanged."""
    if size <= 0:
        return embedder
    with_parts = getattr(embedder, "with_parts", None)
    if with_parts is not None:
        return with_parts(lambda part: CachingEmbedder(part, size))
    return CachingEmbedder(embedder, size)


def similarities(embedder: Any, query: str, texts: Sequence[str]) -> np.ndarray:
    """Cosine-like scores of `texts` (as passages) against `query`, one per text. An embedder that can skip
    work for a query (an ensemble whose other model has no vote in this language) provides its own."""
    own = getattr(embedder, "similarities", None)
    if own is not None:
        return np.asarray(own(query, texts), dtype=np.float32)
    if not texts:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(embedder.embed_passages(texts) @ embedder.embed_query(query), dtype=np.float32)
