"""`quelle eval SET --answers` on an answer set: a folder with the documents (`docs/`) and the questions
(`questions.jsonl`, as bench/answer_sets.py builds them). The documents are ingested into `SET/index` (files
already there are skipped, so a second run starts at once), and each answerer, on services wired as `quelle
serve` wires them, retrieves and answers every question: `sentence` (the earlier extractive answerer),
`passage` (the default) and `llm` when one is configured (QUELLE_LLM_*); `agent` (asked for by name) runs
agent mode on each question instead, and adds the mean steps per question and the share of runs that fell back.
`questions` names another question file of the set (agent mode's compound questions: compound.jsonl).
Metrics: service.evaluation.answer_metrics; each
answer, with its citations, is written to SET/results-<answerer>.jsonl for reading the failures.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from service.config import Settings

EXTRACTIVE = ("sentence", "passage")


def is_answer_set(path: Path) -> bool:
    return path.is_dir() and (path / "questions.jsonl").is_file() and (path / "docs").is_dir()


def load_questions(path: Path) -> list[dict[str, Any]]:
    from cli.evaluate import read_jsonl

    return read_jsonl(path, {"question": str})


def run(settings: Settings, folder: Path, answerers: list[str] | None = None,
        questions: str = "questions.jsonl") -> dict[str, dict[str, float]]:
    from cli import commands
    from service.answering import answer
    from service.app import build_services
    from service.evaluation import answer_metrics
    from service.metrics import Metrics

    settings = settings.model_copy(update={"data_dir": folder / "index"})
    with contextlib.redirect_stdout(sys.stderr):  # the ingestion report is progress, not the result
        commands.ingest(settings, [folder / "docs"], sync=True, as_json=False, quiet=True, commit_interval=None)
    embedder = settings.load_embedder(threads=settings.query_threads, serving=True)
    if hasattr(embedder, "settle"):  # the service's batches move to PyTorch once it has loaded: measure that state
        embedder.settle()
    names = answerers or [*EXTRACTIVE, *(["llm"] if settings.use_llm else [])]
    if {"llm", "agent"} & set(names) and not settings.use_llm:
        raise SystemExit("quelle: error: answerers llm and agent need QUELLE_LLM_BASE_URL and QUELLE_LLM_MODEL")
    rows = load_questions(folder / questions)
    report: dict[str, dict[str, float]] = {}
    for name in names:
        # each answerer on services of its own, wired as `quelle serve` wires them (a new embedding cache, the
        # reranker's comparisons reused by the extractive answerer), each question retrieved and answered in
        # turn: what one answerer measures does not depend on which ran before it
        own = settings.model_copy(update={"answerer": "extractive", "extractive": name}) if name in EXTRACTIVE \
            else settings
        svc = build_services(own, Metrics(), embedder=embedder, ingest_file=None, llm=None, llm_http_client=None)
        try:
            answers, seconds, seen = [], [], []
            for row in rows:
                started = time.perf_counter()
                if name == "agent":
                    agent = svc.answerer("agent")
                    got = answer(agent, agent.plan(row["question"], None, None, None))
                    saw = {"steps": [asdict(s) for s in got.steps], "fallback": got.fallback}
                else:
                    plan = svc.answers.plan(row["question"], None, None, None)
                    got = answer(svc.answers, plan)
                    saw = {"retrieved": [c.hit.source.rsplit("/", 1)[-1] for c in plan.contexts],
                           "relevant": not plan.abstain, "evidence": plan.extract.evidence if plan.extract else {}}
                answers.append(got)
                seconds.append(time.perf_counter() - started)
                seen.append(saw)
        finally:
            svc.answers.conversations.close()
            svc.store.close()
        report[name] = {**answer_metrics(rows, answers), "seconds": sum(seconds) / len(seconds)}
        if name == "agent":
            report[name] |= {"steps": sum(len(a.steps) for a in answers) / len(answers),
                             "fallbacks": sum(bool(a.fallback) for a in answers) / len(answers)}
        with open(folder / f"results-{name}{'' if questions == 'questions.jsonl' else '-' + Path(questions).stem}"
                           ".jsonl", "w", encoding="utf-8") as f:
            for row, ans, saw in zip(rows, answers, seen, strict=True):
                f.write(json.dumps({"id": row.get("id"), "question": row["question"], "answer": ans.checked.answer,
                                    "unsupported": ans.checked.unsupported,
                                    "abstained": ans.abstained, **saw,
                                    "citations": [asdict(c) for c in ans.checked.citations]},
                                   ensure_ascii=False) + "\n")
    return report


COLUMNS = ("fact_hit", "supported_citation", "abstention_precision", "abstention_recall", "answered_rate",
           "answer_chars", "seconds", "steps", "fallbacks")


def format_report(report: dict[str, dict[str, float]]) -> str:
    heads = ["fact hit", "supported", "abst prec", "abst rec", "answered", "chars", "s/answer", "steps", "fallbacks"]
    lines = [f"{'answerer':10}" + "".join(f"{h:>11}" for h in heads)]
    for name, m in report.items():
        lines.append(f"{name:10}" + "".join(f"{'-':>11}" if c not in m else f"{m[c]:11.1f}" if c == "answer_chars"
                                            else f"{m[c]:11.3f}" for c in COLUMNS))
    return "\n".join(lines)
