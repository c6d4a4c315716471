"""How close in meaning units (sentences, code blocks) are to a question, for the unit reranker and the passage
answerer of one answer.

Both compare units of the same chunks with the same question: the reranker the two units of each of the first
20 chunks that share most of its words, then the answerer the units of the five chunks it kept. An answer is
the reranker's call followed by the answerer's in the same thread (a request is served by one thread), so the
reranker starts an answer's memo (`begin`), the answerer reads it and ends it (`end`): a unit both compare is
embedded once, whether or not the service's embedding cache is on, and nothing carries over to the next answer.
Without `begin` (no reranker, a test, the evaluation) every call embeds what it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from index.embedders.base import Embedder
from index.embedders.cache import similarities


class Meaning:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._local = threading.local()

    def begin(self) -> None:
        """A new answer: forget the last one's comparisons."""
        self._local.memo = {}

    def end(self) -> None:
        self._local.memo = None

    def __call__(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The similarity of each text (as a passage) to `query`, one per text."""
        memo: dict[tuple[str, str], float] | None = getattr(self._local, "memo", None)
        if memo is None:
            return similarities(self.embedder, query, texts)
        new = [t for t in dict.fromkeys(texts) if (query, t) not in memo]
        if new:
            memo.update(((query, t), float(s)) for t, s in zip(new, similarities(self.embedder, query, new),
                                                               strict=True))
        return np.array([memo[(query, t)] for t in texts], dtype=np.float32)
