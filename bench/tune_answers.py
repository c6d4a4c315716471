"""Fit and check the passage answerer's feature weights on the answer sets.

    python bench/answer_sets.py && python bench/tune_answers.py [--only en ja zh]

Every question is retrieved once; each unit of its retrieved chunks gets its features
(service/extractive/passages.py, FEATURES) and a label: does it hold the expected fact. The weights are fitted
listwise (softmax over a question's units: the units with the fact should score highest), with L2. Printed:
- the ceiling: answerable questions whose fact is anywhere in the retrieved chunks;
- fact hit and supported citation of the whole answerer (passages grown, rendered) with the weights in the
  code, with weights fitted on the other two languages (does it carry over?), and fitted on all three.
The weights to put in the code are the last ones.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Case:
    row: dict
    contexts: list
    chunks: list
    pool: list
    x: np.ndarray
    y: np.ndarray
    weight: dict
    query: str


def open_set(folder: Path, top_k: int | None = None):  # type: ignore[no-untyped-def]
    from cli.answer_eval import load_questions
    from service.app import build_services
    from service.config import Settings
    from service.metrics import Metrics

    settings = Settings(data_dir=folder / "index", auth="off", answerer="extractive")
    embedder = settings.load_embedder(threads=1, serving=True)
    svc = build_services(settings, Metrics(), embedder=embedder, ingest_file=None, llm=None, llm_http_client=None)
    rows = load_questions(folder / "questions.jsonl")
    plans = [svc.answers.plan(r["question"], None, top_k, None) for r in rows]
    return svc, rows, plans


def cases(svc, rows, plans, answerable: bool = True) -> list[Case]:  # type: ignore[no-untyped-def]
    """The answerable questions that retrieval lets through (or the unanswerable ones)."""
    from service.evaluation import fact_matches
    from service.extractive.passages import PassageAnswerer
    from service.extractive.units import units

    answerer = PassageAnswerer(svc.embedder)
    out = []
    for row, plan in zip(rows, plans, strict=True):
        if row.get("answerable", True) != answerable or plan.abstain or not plan.contexts:
            continue
        chunks = [units(c.hit.chunk.text) for c in plan.contexts]
        pool = answerer.pool(chunks)
        if not pool:
            continue
        x, weight = answerer.features(plan.query, plan.contexts, pool)
        y = np.array([answerable and fact_matches(row["fact"], s.unit.text) for s in pool], dtype=bool)
        out.append(Case(row, plan.contexts, chunks, pool, x, y, weight, plan.query))
    return out


def fit(train: list[Case], l2: float = 0.05) -> np.ndarray:
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    usable = [c for c in train if c.y.any()]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = l2 * float(w @ w), 2 * l2 * w
        for c in usable:
            z = c.x @ w
            p_all = np.exp(z - logsumexp(z))
            p_pos = np.exp(z[c.y] - logsumexp(z[c.y]))
            total += float(logsumexp(z) - logsumexp(z[c.y]))
            grad = grad + p_all @ c.x - p_pos @ c.x[c.y]
        return total / len(usable), grad / len(usable)

    w0 = np.zeros(train[0].x.shape[1])
    return minimize(loss, w0, jac=True, method="L-BFGS-B").x


def fact_hit(svc, all_cases: list[Case], n_answerable: int, w: np.ndarray,  # type: ignore[no-untyped-def]
             **params: float) -> tuple[float, float]:
    from service.evaluation import fact_matches
    from service.extractive.passages import PassageAnswerer

    answerer = PassageAnswerer(svc.embedder, weights=w, **params)
    hits = cited = 0
    for c in all_cases:
        got = answerer.choose(c.query, c.contexts, c.chunks, c.pool, c.x @ w, c.weight)
        if got is not None and fact_matches(c.row["fact"], got.text):
            hits += 1
            files = c.row["files"]
            cited += any(fact_matches(c.row["fact"], q.text) and
                         c.contexts[q.n - 1].hit.source.rsplit("/", 1)[-1] in files for q in got.quotes)
    return hits / n_answerable, cited / max(hits, 1)


def abstained(svc, tempting: list[Case], n_unanswerable: int, w: np.ndarray,  # type: ignore[no-untyped-def]
              **params: float) -> float:
    """Abstention recall: the unanswerable questions refused by retrieval or by the answerer."""
    from service.extractive.passages import PassageAnswerer

    answerer = PassageAnswerer(svc.embedder, weights=w, **params)
    answered = sum(answerer.choose(c.query, c.contexts, c.chunks, c.pool, c.x @ w, c.weight) is not None
                   for c in tempting)
    return (n_unanswerable - answered) / max(n_unanswerable, 1)


def main() -> None:
    from service.extractive.passages import FEATURES, WEIGHTS

    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=Path, default=ROOT / "bench" / ".cache" / "answers")
    ap.add_argument("--only", nargs="+", default=["en", "ja", "zh"])
    ap.add_argument("--l2", type=float, default=0.05)
    ap.add_argument("--top-k", type=int, help="chunks per question (default: QUELLE_TOP_K, 5)")
    ap.add_argument("--search", type=int, default=0, metavar="N",
                    help="instead of the listwise fit: N rounds of random search on the weights for the mean fact hit "
                         "of the whole answerer, per held-out language and on all")
    ap.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2",
                    help="instead of fitting: fact hit / supported citation / abstention recall of the weights in the "
                         "code for each value of an answerer "
                         "parameter, e.g. min_chars=120,160,250")
    ap.add_argument("--weights", nargs="*", default=[], metavar="FEATURE=V1,V2",
                    help="with --grid: also try these values of a feature's weight, e.g. chunk_words=0,0.5,1")
    args = ap.parse_args()
    data, svcs, answerable, tempting, unanswerable = {}, {}, {}, {}, {}
    for lang in args.only:
        svc, rows, plans = open_set(args.sets / lang, args.top_k)
        svcs[lang] = svc
        data[lang] = cases(svc, rows, plans)
        tempting[lang] = cases(svc, rows, plans, answerable=False)  # unanswerable, not refused by retrieval
        answerable[lang] = sum(r.get("answerable", True) for r in rows)
        unanswerable[lang] = len(rows) - answerable[lang]
        ceiling = sum(c.y.any() for c in data[lang]) / answerable[lang]
        print(f"{lang}: fact in the retrieved units for {ceiling:.3f} of the answerable questions", flush=True)
    current = np.asarray(WEIGHTS)
    if args.grid or args.weights:
        names = [g.split("=")[0] for g in args.grid + args.weights]
        values = [[float(v) for v in g.split("=")[1].split(",")] for g in args.grid + args.weights]
        for combo in itertools.product(*values):
            params = dict(zip(names, combo, strict=True))
            w = current.copy()
            for name in [g.split("=")[0] for g in args.weights]:
                w[FEATURES.index(name)] = params.pop(name)
            got = {lang: fact_hit(svcs[lang], data[lang], answerable[lang], w, **params) for lang in args.only}
            refused = {lang: abstained(svcs[lang], tempting[lang], unanswerable[lang], w, **params)
                       for lang in args.only}
            params.update({name: float(w[FEATURES.index(name)]) for name in [g.split("=")[0] for g in args.weights]})
            print(json.dumps(params), " ".join(f"{lang} {h:.3f}/{c:.2f}/{refused[lang]:.2f}"
                                               for lang, (h, c) in got.items()),
                  f"mean {sum(h for h, _ in got.values()) / len(got):.3f}", flush=True)
        return
    everything = [c for lang in args.only for c in data[lang]]
    if args.search:
        def mean_hit(w: np.ndarray, langs: list[str]) -> float:
            return sum(fact_hit(svcs[lang], data[lang], answerable[lang], w)[0] for lang in langs) / len(langs)

        def search(langs: list[str]) -> np.ndarray:
            rng = np.random.default_rng(7)
            best, best_hit = current.copy(), mean_hit(current, langs)
            for _ in range(args.search):
                trial = best.copy()
                i = rng.integers(len(trial))
                trial[i] = max(0.0, trial[i] + rng.normal(0, 0.4))
                hit = mean_hit(trial, langs)
                if hit > best_hit:
                    best, best_hit = trial, hit
            return best

        for lang in args.only:
            w = search([other for other in args.only if other != lang])
            print(f"{lang}: weights in the code {mean_hit(current, [lang]):.3f}, searched on the other languages "
                  f"{mean_hit(w, [lang]):.3f}", flush=True)
        w = search(list(args.only))
        print(f"searched on all: {mean_hit(w, list(args.only)):.3f} (weights in the code "
              f"{mean_hit(current, list(args.only)):.3f})")
        print("WEIGHTS = " + repr(tuple(np.round(w, 2).tolist())))
        return
    fitted = fit(everything, args.l2)
    for lang in args.only:
        others = [c for other in args.only if other != lang for c in data[other]]
        held_out = fit(others, args.l2) if others else current
        row = [fact_hit(svcs[lang], data[lang], answerable[lang], w) for w in (current, held_out, fitted)]
        print(f"{lang}: fact hit / supported citation: weights in the code {row[0][0]:.3f} / {row[0][1]:.3f}, "
              f"fitted on the other languages {row[1][0]:.3f} / {row[1][1]:.3f}, "
              f"fitted on all {row[2][0]:.3f} / {row[2][1]:.3f}", flush=True)
    print("fitted on all:", json.dumps(dict(zip(FEATURES, np.round(fitted, 2).tolist(), strict=True))))
    print("WEIGHTS = " + repr(tuple(np.round(fitted, 2).tolist())))


if __name__ == "__main__":
    main()
