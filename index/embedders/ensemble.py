"""multilingual-e5 and the bundled English MiniLM as one embedder (the default, chosen by evaluation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from index.embedders.base import ENSEMBLE_ID
from index.text import cjk_word_share, has_cjk


class EnsembleEmbedder:
    """multilingual-e5-small and the bundled English MiniLM in one vector.

    A passage is stored as [e5(p) ; minilm(p)] (each part unit length). A query is [e5(q) ; w * minilm(q)],
    so one inner product gives cos_e5 + w * cos_minilm: English questions get both models' votes (MiniLM is
    the better English model on our sets, e5 the only one that reads Japanese and Chinese), while a Japanese
    or Chinese question sets w = 0, and its score is e5's alone. Chunks are cut to e5's token budget; MiniLM
    reads the first 256 word pieces of each. Chosen by evaluation (docs/quality.md).

    A passage that is mostly Japanese or Chinese (`CJK_SHARE` of its words, `cjk_word_share`) is not read by MiniLM, an
    English model: its MiniLM half is zero. A Japanese or Chinese question never used that half, and an English
    question now scores such a passage by e5 alone instead of adding MiniLM's reading of characters it was not
    trained on (issue 14; the six Debian evaluation sets moved by less than 0.005 nDCG@10, docs/performance.md).
    """

    CJK_SHARE = 0.5

    def __init__(self, parts: tuple[Any, Any], *, english_weight: float = 1.0, parallel: bool = False) -> None:
        self.e5: Any = parts[0]
        self.minilm: Any = parts[1]
        self.english_weight = english_weight
        # `parallel` (the service, one thread per model): MiniLM's half runs on a thread of its own while e5's
        # runs in the caller's, so an extractive answer waits for the slower model, not for both (PyTorch and
        # ONNX Runtime release the GIL while they compute). Ingestion gives both cores to each model in turn.
        self.parallel = parallel
        self._side = ThreadPoolExecutor(1, thread_name_prefix="minilm") if parallel else None
        self.model_id = ENSEMBLE_ID
        self.dim = self.e5.dim + self.minilm.dim
        self.tokenizer = self.e5.tokenizer

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        e5, english = self._both(lambda: self.e5.embed_passages(texts), lambda: self._english(texts))
        return np.ascontiguousarray(np.hstack([e5, english]))

    def _both(self, e5: Callable[[], Any], english: Callable[[], Any]) -> tuple[Any, Any]:
        """e5's result and MiniLM's, computed side by side when `parallel`."""
        if self._side is None:
            return e5(), english()
        pending = self._side.submit(english)
        try:
            first = e5()
        finally:
            second = pending.result()
        return first, second

    def english_read(self, texts: Sequence[str]) -> list[int]:
        """Positions of the texts MiniLM reads: those that are not mostly Japanese or Chinese."""
        return [i for i, t in enumerate(texts) if cjk_word_share(t) < self.CJK_SHARE]

    def _english(self, texts: Sequence[str]) -> np.ndarray:
        """MiniLM's half of each passage vector: zero for a text it does not read."""
        out = np.zeros((len(texts), self.minilm.dim), dtype=np.float32)
        read = self.english_read(texts)
        if read:
            out[read] = self.minilm.embed_passages([texts[i] for i in read])
        return out

    def with_parts(self, wrap: Callable[[Any], Any]) -> EnsembleEmbedder:
        """The same ensemble over wrapped models (index/embedders/cache.py caches each one)."""
        return EnsembleEmbedder((wrap(self.e5), wrap(self.minilm)), english_weight=self.english_weight,
                                parallel=self.parallel)

    def similarities(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """`embed_passages(texts) @ embed_query(query)`, without running MiniLM when it has no vote (a Japanese
        or Chinese query)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        weight = self._english_vote(query)
        if not weight:
            return np.asarray(self.e5.embed_passages(texts) @ self.e5.embed_query(query), dtype=np.float32)
        e5, english = self._both(lambda: self.e5.embed_passages(texts) @ self.e5.embed_query(query),
                                 lambda: self._english(texts) @ self.minilm.embed_query(query))
        return np.asarray(e5 + weight * english, dtype=np.float32)

    def _english_vote(self, query: str) -> float:
        """MiniLM's weight for this query: none for a Japanese or Chinese one."""
        return 0.0 if has_cjk(query) else self.english_weight

    def embed_query(self, text: str) -> np.ndarray:
        weight = self._english_vote(text)
        if not weight:
            english = np.zeros(self.minilm.dim, np.float32)
            return np.ascontiguousarray(np.concatenate([self.e5.embed_query(text), english]), dtype=np.float32)
        e5, english = self._both(lambda: self.e5.embed_query(text), lambda: self.minilm.embed_query(text) * weight)
        return np.ascontiguousarray(np.concatenate([e5, english]), dtype=np.float32)

