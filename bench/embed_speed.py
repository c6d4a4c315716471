"""Embedding backends side by side, in one run: plain sentence-transformers fp32 (the bare baseline) against
Quelle's MiniLM embedder in each precision, on real passages (the Debian handbook evaluation corpus).

Prints tokens/s and the ratio to the baseline, the cosine of each backend's vectors to fp32, and with
`--quality` Recall@5 / nDCG@10 of each precision on the English evaluation sets (dense and hybrid).

    .venv/bin/python bench/embed_speed.py [--passages 600] [--rounds 3] [--quality]

Rounds alternate the backends (A B C A B C ...) so that the machine's noise hits each alike; the best round of
each is reported. Needs the evaluation sets (python bench/make_eval_sets.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.embedders.base import BUNDLED_MINILM, cpu_has_bf16, resolve_model_path  # noqa: E402
from index.embedders.sbert import SentenceTransformerEmbedder  # noqa: E402

SETS = ROOT / "bench" / ".cache" / "eval"


def passages(n: int) -> list[str]:
    path = SETS / "debian-handbook-en" / "corpus.jsonl"
    if not path.exists():
        sys.exit(f"{path} is missing: run python bench/make_eval_sets.py first")
    rows = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [" ".join(t.split()) for t in rows if len(t) > 200][:n]


class Bare:
    """Plain sentence-transformers, fp32, as its documentation shows it."""

    precision = "bare fp32"

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_model_path(BUNDLED_MINILM)[1], device="cpu")

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)


def speed(backends: list, texts: list[str], tokens: int, rounds: int) -> dict[str, float]:
    for b in backends:  # warm-up: first-call costs out of the way
        b.embed_passages(texts[:64])
    best: dict[str, float] = {}
    for _ in range(rounds):
        for b in backends:
            t0 = time.perf_counter()
            b.embed_passages(texts)
            best[b.precision] = max(best.get(b.precision, 0.0), tokens / (time.perf_counter() - t0))
    return best


def quality(precisions: list[str]) -> None:
    from cli import evaluate as ev
    from ingest.chunking import ChunkingConfig
    from service.retrieval import RetrievalConfig

    print("\nquality (MiniLM alone: the model whose precision changes; e5 runs its own engine either way)")
    print(f"{'set':22}{'precision':>10}{'dense R@5':>11}{'dense nDCG':>11}{'hybrid R@5':>11}{'hybrid nDCG':>12}")
    for name in ("debian-handbook-en", "debian-reference-en"):
        for precision in precisions:
            emb = SentenceTransformerEmbedder(precision=precision)
            work = ROOT / "bench" / ".cache" / "embed_speed" / precision / name
            run = ev.EvalRun.open(SETS / name, emb, work, ChunkingConfig(max_tokens=250, overlap=40))
            try:
                m = run.report(RetrievalConfig(), ["dense", "hybrid"])
            finally:
                run.close()
            print(f"{name:22}{precision:>10}{m['dense']['R@5']:11.3f}{m['dense']['nDCG@10']:11.3f}"
                  f"{m['hybrid']['R@5']:11.3f}{m['hybrid']['nDCG@10']:12.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quality", action="store_true", help="also Recall@5 / nDCG@10 per precision")
    args = ap.parse_args()
    import torch

    texts = passages(args.passages)
    precisions = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])
    ours = [SentenceTransformerEmbedder(precision=p, device="cpu") for p in precisions]
    if torch.cuda.is_available():  # the GPU path: fp16 with batches sized to the free memory
        ours.append(SentenceTransformerEmbedder(precision="fp16", device="cuda"))
        precisions.append("fp16")
    tok = ours[0].tokenizer
    tokens = sum(min(tok.count(t), tok.max_tokens) + 2 for t in texts)
    print(f"{len(texts)} passages, {tokens} tokens (truncated to the model's 256), torch threads "
          f"{torch.get_num_threads()}, CPU bf16 units: {cpu_has_bf16()}")
    if not cpu_has_bf16():
        print("this CPU has no bf16 units (amx_bf16 / avx512_bf16): bf16 not measured")
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name(0)}: the GPU path (fp16, batch {ours[-1].batch_size}) is measured")
    else:
        print("no CUDA device: the GPU path (fp16, auto-sized batches) is skipped in this run")
    bare = Bare()
    rates = speed([bare, *ours], texts, tokens, args.rounds)
    ref = ours[0].embed_passages(texts)
    print(f"\n{'backend':12}{'tokens/s':>10}{'vs bare':>9}{'min cos vs fp32':>17}")
    for b in [bare, *ours]:
        cos = float((b.embed_passages(texts) * ref).sum(axis=1).min())
        print(f"{b.precision:12}{rates[b.precision]:10.0f}{rates[b.precision] / rates['bare fp32']:9.2f}{cos:17.5f}")
    if args.quality:
        quality(precisions)


if __name__ == "__main__":
    main()
