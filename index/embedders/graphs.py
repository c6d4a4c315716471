"""Exported graphs in the model cache: a model written once to ONNX (`export_onnx`, atomically), read by ONNX
Runtime or compiled by OpenVINO (`onnx_session`, `OpenVinoSession`), with the word table OpenVINO would copy
kept beside the graph in a memory-mapped file; `file_fingerprint` names the weights a cached file was made
from. Nothing here imports PyTorch, ONNX Runtime or OpenVINO at import time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import ConfigError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def written_atomically(out: Path) -> Iterator[Path]:
    """A temporary path beside `out` to write to, renamed to `out` when the block ends and removed if it fails,
    so that no reader ever sees a partial file. OSError where the folder cannot be written."""
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def export_onnx(module: Any, input_names: Sequence[str], out: Path) -> None:
    """Export a PyTorch module taking int64 (batch, tokens) inputs and giving one (batch, dim) output named
    "embedding" to `out`, atomically (a temporary file, then a rename). Needs PyTorch."""
    import warnings

    import torch

    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in input_names)
    axes = {n: {0: "batch", 1: "tokens"} for n in input_names} | {"embedding": {0: "batch"}}
    try:
        with written_atomically(out) as tmp, warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python in transformers
            torch.onnx.export(module, example, str(tmp), input_names=list(input_names),
                              output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
    except OSError as exc:  # the model cache is not writable, or not a folder: the caller keeps another runtime
        raise ConfigError(f"cannot write the exported model to {out} ({exc.strerror or exc}): "
                          "check QUELLE_MODEL_CACHE_DIR") from None


def onnx_session(path: Path, threads: int | None, *, runner: str = "onnxruntime", precision: str = "fp32",
                 concurrent: int = 1) -> Any:
    """A CPU session on the exported graph at `path`: ONNX Runtime (fp32; the service's questions) or OpenVINO
    (`OpenVinoSession`: `precision` bf16 or fp32; batches). A file it cannot load is removed (exported again
    next time) and reported as ConfigError."""
    if runner == "openvino":
        return OpenVinoSession(path, threads, precision=precision, concurrent=concurrent)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a damaged file
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot load {path}: {exc}") from None


class OpenVinoSession:
    """An exported ONNX graph compiled by OpenVINO for this CPU, seen as an ONNX Runtime session (`run`,
    `get_inputs`), so that a runtime module takes either. Why: OpenVINO fuses what PyTorch runs op by op (the
    attention of small heads, GELU into its matrix multiply, the layer norms) and multiplies in bf16 where the
    CPU has bf16 units: e5 on 300 chunks ran at 1.2-1.4x the bf16 matrix-multiply bound against PyTorch's 1.8x
    (docs/performance.md). `concurrent` callers (the service's two embedding threads) each get a stream of
    `threads` threads; each calling thread keeps an inference request of its own.

    The word table stays out of the compiled graph (`_split_word_table`): the session looks the tokens up in
    it with numpy and feeds their rows. OpenVINO would otherwise hold e5's 250k x 384 table as a converted copy
    of its own, about 450 MB more per compiled model."""

    def __init__(self, path: Path, threads: int | None, *, precision: str, concurrent: int = 1) -> None:
        import threading

        try:
            import openvino as ov
        except ImportError as exc:
            raise ConfigError(f"the OpenVINO runtime is not installed ({exc}): pip install openvino") from None
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                                  "PERFORMANCE_HINT": "LATENCY" if concurrent == 1 else "THROUGHPUT",
                                  "NUM_STREAMS": concurrent}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads * concurrent
        try:
            core = ov.Core()
            model = core.read_model(str(path))
            self._feeds = [i.get_any_name() for i in model.inputs]  # what callers feed, as in the ONNX file
            split = _split_word_table(model)
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError for a damaged or partial file
            path.unlink(missing_ok=True)
            raise ConfigError(f"cannot load {path}: {exc}") from None
        # the table is a view of the graph's constant: mapped (or copied) while the graph is still held
        self._table: np.ndarray | None = None
        self._table_ids = ""
        if split is not None:
            self._table, self._table_ids = _mapped(split[0], path.with_name(f"{path.name}.rows.npy")), split[1]
        del model, split
        self._output = self._compiled.output(0)
        self._local = threading.local()

    def get_inputs(self) -> list[Any]:
        class Input:  # ONNX Runtime's NodeArg, as far as its callers read it
            def __init__(self, name: str) -> None:
                self.name = name

        return [Input(n) for n in self._feeds]

    def run(self, _outputs: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        if self._table is not None:
            feed = feed | {_ROWS: self._table[feed[self._table_ids]]}
        return [np.array(request.infer(feed)[self._output], dtype=np.float32)]


_ROWS = "quelle_token_rows"  # the input that takes the word table's rows in place of the token ids


def _mapped(table: np.ndarray, path: Path) -> np.ndarray:
    """`table` from a file beside the graph, memory-mapped: its pages are shared by every process that reads
    the same model cache, and only the rows that tokens use are read. Written (atomically) on first use, and
    anew where the file does not hold this table; the graph's file name names its weights, so new weights get
    a file of their own. Where the cache is not writable, a copy of `table` in memory."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: a file cut short
        mapped = np.load(path, mmap_mode="r")
        if mapped.shape == table.shape and mapped.dtype == table.dtype:
            return mapped
    try:
        with written_atomically(path) as tmp, open(tmp, "wb") as f:
            np.save(f, table)
        return np.load(path, mmap_mode="r")
    except OSError as exc:
        log.info("word table kept in memory: cannot write %s (%s)", path, exc.strerror or exc)
        return np.array(table)


def _split_word_table(model: Any) -> tuple[np.ndarray, str] | None:
    """Cut the word-embedding lookup out of an encoder graph: the Gather of a large constant table by a token-id
    input is replaced by an input (`_ROWS`) that takes the looked-up rows. Returns (table, the ids' input name),
    or None where the graph has no such lookup (it is left as it is)."""
    import openvino as ov

    for op in model.get_ordered_ops():
        if op.get_type_name() != "Gather":
            continue
        table, ids = op.input_value(0).get_node(), op.input_value(1).get_node()
        shape = op.input_value(0).get_partial_shape()
        axis = op.input_value(2).get_node()
        if (table.get_type_name() != "Constant" or ids.get_type_name() != "Parameter" or not shape.is_static
                or len(shape) != 2 or shape[0].get_length() < 10_000 or axis.get_type_name() != "Constant"
                or axis.get_data().tolist() not in (0, [0]) or op.get_attributes().get("batch_dims", 0) != 0):
            continue
        rows = ov.opset13.parameter(ov.PartialShape([-1, -1, shape[1].get_length()]),
                                    op.output(0).get_element_type(), name=_ROWS)
        rows.output(0).get_tensor().set_names({_ROWS})
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(rows.output(0))
        model.add_parameters([rows])  # the ids stay an input: the position ids take their shape
        model.validate_nodes_and_infer_types()
        return table.get_data(), ids.output(0).get_any_name()
    return None


def file_fingerprint(*paths: Path) -> str:
    """Names a set of weight files cheaply: their names, sizes and first and last MiB."""
    import hashlib

    h = hashlib.sha256()
    for path in paths:
        size = path.stat().st_size
        h.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read())
    return h.hexdigest()[:16]
