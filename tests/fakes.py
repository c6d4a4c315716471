"""Real implementations of the embedding protocols, cheap enough for tests that start many processes.

They are not mocks: `HashEmbedder` embeds deterministically (hashed word and character features), so equal
texts get equal vectors and search still ranks overlapping text first.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")


class RegexTokenizer:
    """Words, punctuation marks and single CJK characters are tokens."""

    def __init__(self, max_tokens: int = 254) -> None:
        self.max_tokens = max_tokens

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN.finditer(text)]

    def count(self, text: str) -> int:
        return len(self.spans(text))


class HashEmbedder:
    def __init__(self, dim: int = 64, model_id: str = "test/hash-embedder") -> None:
        self.dim = dim
        self.model_id = model_id
        self.tokenizer = RegexTokenizer()
        self.calls: list[int] = []  # how many texts each embed call received

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for m in _TOKEN.finditer(text.lower()):
            h = int.from_bytes(hashlib.blake2b(m.group().encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        n = np.linalg.norm(v)
        if n == 0:
            v[0] = 1.0
            n = 1.0
        return v / n

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vec(t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._vec(text)
