"""A sentence-transformers model run by ONNX Runtime: the service's query encoder.

Why. The service encodes one short question at a time. There, PyTorch spends most of its time in Python and
in reading the weights, not in arithmetic: ONNX Runtime encodes a question in about 6.5 ms against 11.8 ms
for PyTorch fp32 on the same thread, with the same vector (cosine 0.999999). And a service that never imports
PyTorch, transformers and sentence-transformers starts in about a second instead of five, in ~300 MB less.

How. The model is exported once from the bundled weights (`torch.onnx.export`: the transformer, mean pooling
and normalisation in one graph) into `<cache_dir>/<model>-<fingerprint>.onnx`, beside the index; the
fingerprint covers the weights, so new weights export anew. Only mean-pooled models are exported (the bundled
MiniLM is one); for any other, `load_onnx_embedder` raises ConfigError and the caller keeps PyTorch.
Tokenization uses the model's own `tokenizer.json` through the `tokenizers` library (the engine under the
fast tokenizers transformers uses), so chunk cuts and token counts match the PyTorch path exactly.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index.embedders.base import BATCH, model_prefixes, resolve_model_path, sentence_transformer
from index.embedders.graphs import export_onnx, file_fingerprint, onnx_session
from index.errors import ConfigError

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORT = "eager"  # how the graph was exported: part of the file's name, so that a new way exports anew


def _config(model_dir: Path) -> tuple[int, int]:
    """(dim, max_seq_length) of a mean-pooled sentence-transformers model directory; ConfigError otherwise."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((model_dir / pooling_dir / "config.json").read_text(encoding="utf-8"))
        seq = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise ConfigError(f"{model_dir} is not a sentence-transformers model ONNX can run: {exc}") from None
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ConfigError(f"{model_dir} pools with {modes}: only mean pooling is exported to ONNX")
    if not any(m["type"].endswith("Normalize") for m in modules):
        log.info("%s has no Normalize module; vectors are normalised anyway", model_dir)
    return int(pooling["word_embedding_dimension"]), int(seq.get("max_seq_length") or 512)


def _fingerprint(model_dir: Path) -> str:
    """Names the weights: their files' names, sizes and first and last MiB."""
    return file_fingerprint(*sorted(model_dir.glob("*.safetensors")), *sorted(model_dir.glob("pytorch_model*.bin")))


def export(model_dir: Path, out: Path) -> None:
    """Export the model (transformer + mean pooling + normalisation) to `out`, atomically. Needs PyTorch."""
    import inspect

    import torch

    # eager attention exports as plain matrix multiplies and a softmax, which OpenVINO fuses into one kernel (as
    # it does e5's, e5_onnx.py): 300 chunks of MiniLM in bf16 took 2.37 s against 2.66 s from the `sdpa`
    # export; ONNX Runtime's question takes the same 4 ms either way
    bert: Any = sentence_transformer(str(model_dir), device="cpu",
                                     model_kwargs={"attn_implementation": "eager"})[0].auto_model
    bert.eval()
    names = [n for n in _INPUTS if n in inspect.signature(bert.forward).parameters]

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            args = dict(zip(names, inputs, strict=True))
            hidden = self.bert(**args).last_hidden_state
            mask = args["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    export_onnx(Pooled().eval(), names, out)


def ensure_exported(model: str, cache_dir: Path) -> Path:
    """The ONNX file of `model` in `cache_dir`, exported now if it is not there yet. ConfigError: the model
    cannot run on ONNX (not mean-pooled)."""
    model_id, path = resolve_model_path(model)
    model_dir = Path(path)
    _config(model_dir)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)
    onnx_path = Path(cache_dir) / f"{safe}-{_fingerprint(model_dir)}-{EXPORT}.onnx"
    if not onnx_path.exists():
        log.info("exporting %s to %s (once)", model_id, onnx_path)
        export(model_dir, onnx_path)
    return onnx_path


class OnnxTokenizer:
    """The `Tokenizer` protocol on a `tokenizers.Tokenizer` (no special tokens, no truncation)."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self._tok = tokenizer
        self.max_tokens = max_tokens

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in self._tok.encode(text, add_special_tokens=False).offsets] if text else []

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0


class OnnxEmbedder:
    """The `Embedder` protocol on ONNX Runtime. Passages are batched by length, like sentence-transformers."""

    def __init__(self, model: str, cache_dir: Path, *, threads: int | None = None, batch_size: int = BATCH,
                 query_prefix: str | None = None, passage_prefix: str | None = None, runner: str = "onnxruntime",
                 precision: str = "fp32", concurrent: int = 1) -> None:
        try:
            import onnxruntime  # noqa: F401 - a clear error here rather than in the session
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(f"the ONNX backend needs onnxruntime and tokenizers: {exc}") from None
        self.model_id, path = resolve_model_path(model)
        model_dir = Path(path)
        self.dim, max_seq = _config(model_dir)
        onnx_path = ensure_exported(model, cache_dir)
        self._session: Any = onnx_session(onnx_path, threads, runner=runner, precision=precision,
                                          concurrent=concurrent)
        self._inputs = [i.name for i in self._session.get_inputs()]
        raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        raw.no_truncation()
        raw.no_padding()
        self.tokenizer = OnnxTokenizer(raw, max_seq - 2)
        self._tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tok.enable_truncation(max_seq)
        self._tok.no_padding()
        self.batch_size = batch_size
        prompts: dict[str, str] = {}
        with_prompts = model_dir / "config_sentence_transformers.json"
        if with_prompts.exists():
            prompts = json.loads(with_prompts.read_text(encoding="utf-8")).get("prompts") or {}
        known_query, known_passage = model_prefixes(model, prompts)
        self.query_prefix = known_query if query_prefix is None else query_prefix
        self.passage_prefix = known_passage if passage_prefix is None else passage_prefix
        self.precision = "onnx fp32" if runner == "onnxruntime" else f"openvino {precision}"

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        return self._infer(self._tok.encode_batch(list(texts)))

    def _infer(self, encodings: Sequence[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        feed = {}
        for name, field in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids")):
            if name in self._inputs:
                arr = np.zeros((len(encodings), width), dtype=np.int64)  # pad id 0, mask 0: ignored by pooling
                for i, e in enumerate(encodings):
                    values = getattr(e, field)
                    arr[i, : len(values)] = values
                feed[name] = arr
        return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.ascontiguousarray(self._run([self.query_prefix + text])[0])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tok.encode_batch([self.passage_prefix + t for t in texts])
        # sorted by tokens, not characters: batches of similar widths pad little (300 Debian chunks: 3% padding
        # against 22% sorted by characters; MiniLM on OpenVINO bf16 2.37 -> 2.00 s)
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        out = np.zeros((len(encodings), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            out[part] = self._infer([encodings[i] for i in part])
        return out


class OnnxThenBatches:
    """The service's default: questions on ONNX Runtime from the first request, batches of passages (the
    sentences an extractive answer compares, uploaded documents) on the batch runtime (OpenVINO, or PyTorch)
    once it has loaded in a background thread, and on ONNX Runtime until then. One question is faster on ONNX
    Runtime (6.5 against 11.8 ms on PyTorch fp32 or 7.8 ms in bf16 weights); a batch is faster on OpenVINO or
    PyTorch in bf16 (24 sentences: 0.35 s on PyTorch bf16, 0.9 s fp32, 1.3 s ONNX Runtime fp32, one thread).
    PyTorch's import alone takes ~4.5 s, OpenVINO's compile of e5 about one, neither of which the service
    waits for."""

    def __init__(self, onnx: Any, load_batches: Any) -> None:
        import atexit
        import threading

        self.onnx = onnx
        self.model_id, self.dim, self.tokenizer = onnx.model_id, onnx.dim, onnx.tokenizer
        self.precision = onnx.precision
        self._batches: Any = None
        self.loaded = threading.Event()
        self._exiting = False
        # a process that exits while the loader is inside PyTorch's import is aborted ("terminate called
        # without an active exception") or prints tracebacks from PyTorch's finalizers: the loader is not a
        # daemon, so the interpreter waits for it before it starts to shut down (and atexit marks the exit)
        threading.Thread(target=self._load, args=(load_batches,), name="torch-loader", daemon=False).start()
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        self._exiting = True
        self.loaded.wait(120)

    def _load(self, load_batches: Any) -> None:
        try:
            self._batches = load_batches()
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime goes on serving everything
            if self._exiting:  # the process is ending (a refused start): nothing left to serve, nothing to say
                log.debug("PyTorch's load ended with the process: %s", exc)
                return
            log.warning("PyTorch did not load (%s): passages stay on ONNX Runtime", exc)
        finally:
            self.loaded.set()

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until PyTorch has loaded (or failed to): from then on every batch runs where it will stay. An
        evaluation waits, so that its figures do not depend on how fast PyTorch imports (bf16 and fp32 rate a
        borderline unit differently)."""
        self.loaded.wait(timeout)

    def embed_query(self, text: str) -> np.ndarray:
        return self.onnx.embed_query(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return (self._batches or self.onnx).embed_passages(texts)
