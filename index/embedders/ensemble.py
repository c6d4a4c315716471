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
    # MiniLM's cost per character against e5's (6 layers against 12; 229 against 389 ms for 40 sentences on one
    # thread, bf16): how a batch is shared between two threads (`_passages`)
    MINILM_COST = 0.6

    def __init__(self, parts: tuple[Any, Any], *, english_weight: float = 1.0, parallel: bool = False) -> None:
        self.e5: Any = parts[0]
        self.minilm: Any = parts[1]
        self.english_weight = english_weight
        # `parallel` (the service, each model on one thread): a batch of passages is shared by the caller's
        # thread and a side thread so that both finish together (`_passages`), and a query's two models run
        # side by side (PyTorch and ONNX Runtime release the GIL while they compute). Ingestion gives both cores
        # to each model in turn.
        self.parallel = parallel
        self._side = ThreadPoolExecutor(1, thread_name_prefix="embed-side") if parallel else None
        self.model_id = ENSEMBLE_ID
        self.dim = self.e5.dim + self.minilm.dim
        self.tokenizer = self.e5.tokenizer

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until each part runs where it will stay (OnnxThenBatches.settle)."""
        for part in (self.e5, self.minilm):
            if hasattr(part, "settle"):
                part.settle(timeout)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        e5, english = self._passages(texts, english=True)
        assert english is not None
        return np.ascontiguousarray(np.hstack([e5, english]))

    def _passages(self, texts: Sequence[str], *, english: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """e5's vectors of the texts and, when `english`, MiniLM's half. When `parallel`, the side thread runs
        MiniLM and then e5 on the last texts while the caller's thread runs e5 on the first ones, the cut placed
        (by characters) so that both finish together: an extractive answer's 30-40 sentences take the time of
        0.8 of e5's work instead of all of it, and of half of it for a Japanese or Chinese question (no
        MiniLM)."""
        if self._side is None or len(texts) < 2:
            return self.e5.embed_passages(texts), self._english(texts) if english else None
        sizes = [len(t) for t in texts]
        minilm = sum(sizes[i] for i in self.english_read(texts)) if english else 0
        target = (sum(sizes) + self.MINILM_COST * minilm) / 2  # e5's characters for the caller's thread
        cut, done = 0, 0
        while cut < len(texts) - 1 and done + sizes[cut] / 2 < target:
            done += sizes[cut]
            cut += 1
        cut = max(cut, 1)

        def side() -> tuple[np.ndarray | None, np.ndarray | None]:
            half = self._english(texts) if english else None
            return half, (self.e5.embed_passages(texts[cut:]) if cut < len(texts) else None)

        pending = self._side.submit(side)
        try:
            head = self.e5.embed_passages(texts[:cut])
        finally:
            half, tail = pending.result()
        return (head if tail is None else np.vstack([head, tail])), half

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
        e5, english = self._passages(texts, english=bool(weight))
        scores = e5 @ self.e5.embed_query(query)
        if english is not None:
            scores = scores + weight * (english @ self.minilm.embed_query(query))
        return np.asarray(scores, dtype=np.float32)

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

