"""Retrieval metrics, cross-checked against ir-measures (trec_eval's definitions), and `quelle eval`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.evaluation import dedupe, evaluate, mrr_at, ndcg_at, recall_at
from tests.conftest import DATA, ROOT

DOCS = [f"d{i}" for i in range(15)]
runs_st = st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q4"]),
                          st.lists(st.sampled_from(DOCS), unique=True, min_size=0, max_size=12), min_size=1)
qrels_st = st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q4"]),
                           st.dictionaries(st.sampled_from(DOCS), st.integers(0, 3), min_size=1, max_size=5),
                           min_size=1)


def test_metrics_on_a_worked_example():
    ranked = ["a", "x", "b", "y"]
    qrels = {"a": 1, "b": 2, "c": 1}
    assert recall_at(ranked, qrels, 1) == pytest.approx(1 / 3)
    assert recall_at(ranked, qrels, 10) == pytest.approx(2 / 3)
    assert mrr_at(["x", "b"], qrels, 10) == 0.5 and mrr_at(["x"], qrels, 10) == 0.0
    dcg = 1 / 1 + 2 / 2  # ranks 1 and 3: log2(2) = 1, log2(4) = 2
    idcg = 2 / 1 + 1 / 1.584962500721156 + 1 / 2
    assert ndcg_at(ranked, qrels, 10) == pytest.approx(dcg / idcg)
    assert dedupe(["a", "a", "b", "a", "c"]) == ["a", "b", "c"]


@settings(max_examples=150, deadline=None)
@given(runs=runs_st, qrels=qrels_st)
def test_metrics_match_ir_measures(runs, qrels):
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import RR, R, ScoredDoc, nDCG

    ours = evaluate(runs, qrels)
    judged = {q: r for q, r in qrels.items() if any(v > 0 for v in r.values())}
    if not judged:
        return
    qrel_rows = [ir_measures.Qrel(q, d, r) for q, rels in judged.items() for d, r in rels.items()]
    run_rows = [ScoredDoc(q, d, float(100 - i)) for q, docs in runs.items() if q in judged
                for i, d in enumerate(docs)]
    theirs = ir_measures.calc_aggregate([R @ 1, R @ 5, R @ 10, RR @ 10, nDCG @ 10], qrel_rows, run_rows)
    # both average over every judged query; a query with no run scores 0
    for name, measure in [("R@1", R @ 1), ("R@5", R @ 5), ("R@10", R @ 10), ("MRR@10", RR @ 10),
                          ("nDCG@10", nDCG @ 10)]:
        assert ours[name] == pytest.approx(theirs.get(measure, 0.0), abs=1e-9), name


@pytest.mark.integration
def test_quelle_eval_on_a_beir_folder_and_a_golden_file(built_index):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "cli.main", "eval", str(DATA / "beir-mini"), "--json"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report) == {"dense", "keyword", "hybrid", "hybrid+rerank"}  # the unit reranker is on by default
    assert set(report["hybrid"]) == {"R@1", "R@5", "R@10", "MRR@10", "nDCG@10"}
    assert report["hybrid"]["R@10"] >= 0.9 and report["hybrid"]["MRR@10"] >= 0.6
    assert report["hybrid+rerank"]["R@10"] >= 0.9 and report["hybrid+rerank"]["MRR@10"] >= 0.6
    assert report["dense"]["R@1"] != report["keyword"]["R@1"] or report["dense"] != report["keyword"]
    gold = subprocess.run([sys.executable, "-m", "cli.main", "eval", str(DATA / "qa.jsonl"), "--data-dir",
                           str(built_index)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert gold.returncode == 0, gold.stderr
    lines = gold.stdout.strip().splitlines()
    assert lines[0].split() == ["configuration", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10"]
    hybrid = dict(zip(lines[0].split()[1:], map(float, lines[3].split()[1:]), strict=True))
    assert lines[3].startswith("hybrid") and hybrid["R@5"] >= 0.8


def test_answer_level_metrics_on_the_golden_set(client):
    from service.evaluation import answer_metrics

    svc = client.app.state.services
    rows = [json.loads(line) for line in (DATA / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    answers = [svc.answers.answer(svc.answers.plan(r["question"], None, None, None)) for r in rows]
    m = answer_metrics(rows, answers)
    # extractive answers quote their chunks word for word: every citation supports its sentence
    assert m["citation_precision"] == 1.0 and m["citation_recall"] == 1.0 and m["groundedness"] == 1.0
    assert m["abstention_accuracy"] == 1.0 and m["answered_rate"] >= 0.9
    assert m["source_hit"] >= 0.85 and m["fact_hit"] >= 0.85


def test_answer_metrics_count_unsupported_citations():
    from service.answering import Answer
    from service.citations import CheckedAnswer, Citation
    from service.evaluation import answer_metrics

    good = Citation(1, "d", "/x/a.md", "A", None, "q", "c", 1.0, True)
    bad = Citation(2, "d", "/x/b.md", "B", None, "q", "c", 1.0, False)
    answers = [Answer(CheckedAnswer("Fact one [1]. Made up [2]. Uncited.", [good, bad], False), False, "s", 1),
               Answer(CheckedAnswer("Not found.", [], True), True, "s", 1)]
    rows = [{"answerable": True, "source": "a.md", "answer_contains": "Fact"}, {"answerable": False}]
    m = answer_metrics(rows, answers)
    assert m["citation_precision"] == 0.5 and m["citation_recall"] == pytest.approx(1 / 3)
    assert m["groundedness"] == 0.0 and m["abstention_accuracy"] == 1.0 and m["source_hit"] == 1.0


def test_abstention_curve_moves_one_bar_of_the_real_policy():
    from service.evaluation import AbstainPoint, abstention_curve
    from service.retrieval import AbstainPolicy

    policy = AbstainPolicy(dense_min=0.3, dense_alone=0.6, overlap_min=0.5)
    points = [AbstainPoint(0.70, 0.0, False, True),   # dense alone is enough
              AbstainPoint(0.40, 0.8, False, True),   # lexical evidence
              AbstainPoint(0.70, 0.0, True, True),    # CJK: dense alone is not trusted
              AbstainPoint(0.35, 0.9, False, False),
              AbstainPoint(0.20, 0.9, False, False)]
    curve = abstention_curve(points, policy, "dense_min", [0.0, 0.3, 0.5])
    assert [c["answered_rate"] for c in curve] == [2 / 3, 2 / 3, 1 / 3]
    assert [c["abstention_accuracy"] for c in curve] == [0.0, 0.5, 1.0]
    # the curve's decisions are the policy's own
    for c in curve:
        pol = AbstainPolicy(dense_min=c["dense_min"], dense_alone=0.6, overlap_min=0.5)
        assert c["answered_rate"] == sum(pol.decide(p.best_dense, p.overlap, p.cjk) for p in points[:3]) / 3
    trusted = abstention_curve(points, AbstainPolicy(0.3, 0.6, 0.5, trusted_for_cjk=True), "dense_min", [0.3])
    assert trusted[0]["answered_rate"] == 1.0


def test_eval_run_agrees_with_the_retriever_and_explains_its_failures(embedder, tmp_path):
    from cli.evaluate import EvalRun
    from service.retrieval import RetrievalConfig, Retriever

    run = EvalRun.open(DATA / "beir-mini", embedder, tmp_path)
    try:
        config = RetrievalConfig(rrf_k=10, dense_weight=1.0, keyword_weight=0.5)
        report = run.report(config)
        retriever = Retriever(run.store, embedder, config)
        for mode in ("dense", "keyword", "hybrid"):
            runs = {q: dedupe([run.sources[c.hit.source] for c in retriever.search(t, 100, mode=mode).candidates])
                    for q, t in run.queries.items()}
            assert evaluate(runs, run.qrels) == report[mode]
        fails = run.failures("keyword", config, k=1)
        assert len(fails) == round((1 - report["keyword"]["R@1"]) * len(run.queries))
        for f in fails:
            assert not any(r["relevant"] for r in f["retrieved"]) and f["expected"]
        rel, irrel = run.dense_scores()
        assert len(rel) + len(irrel) == sum(len(g.dense) for g in run.collected.values())
        assert sum(rel) / len(rel) > sum(irrel) / len(irrel)
        points = run.abstain_points()
        assert len(points) == 2 * len(run.queries)
        held_out = [p.best_dense for p in points if not p.answerable]
        present = [p.best_dense for p in points if p.answerable]
        assert all(h is not None and p is not None and h <= p + 1e-6 for h, p in zip(held_out, present, strict=True))
    finally:
        run.close()
    reopened = EvalRun.open(DATA / "beir-mini", embedder, tmp_path)  # the built index is reused
    try:
        assert reopened.report(config) == report
    finally:
        reopened.close()


def test_fact_regexes_are_tolerant_of_case_space_and_markers():
    from service.evaluation import fact_matches

    assert fact_matches([r"dpkg --get-selections"], "Run `DPKG  --get-selections` [2] first")
    assert fact_matches([r"(2|两) ?个月", "稳定"], "稳定版 只会每两个月 [1] 更新一次")
    assert fact_matches(["PRAGMA journal_mode=WAL"], "```\nPRAGMA journal_mode=WAL;\n```")
    assert not fact_matches([r"lvresize", r"resize2fs"], "use lvresize -L 6G")  # every regex must match
    assert not fact_matches([], "anything")


def test_answer_set_metrics_count_facts_supported_citations_and_abstentions():
    from service.answering import Answer
    from service.citations import CheckedAnswer, Citation
    from service.evaluation import answer_metrics

    def cite(source: str, quote: str) -> Citation:
        return Citation(1, "d", f"/docs/{source}", "T", None, quote, "c", 0.1, True, (quote,))

    rows = [
        {"answerable": True, "fact": [r"apt-mark auto"], "files": ["apt-get.html"]},  # hit, cited in place
        {"answerable": True, "fact": [r"\b500\b"], "files": ["apt-get.html"]},  # hit, quote from another file
        {"answerable": True, "fact": [r"atrm"], "files": ["cron.html"]},  # missed
        {"answerable": True, "fact": [r"a2enmod"], "files": ["apache.html"]},  # abstained wrongly
        {"answerable": False}, {"answerable": False},  # one abstained, one answered with filler
    ]
    answers = [
        Answer(CheckedAnswer("Use apt-mark auto pkg [1]", [cite("apt-get.html", "apt-mark auto pkg")], True),
               False, "s", 1),
        Answer(CheckedAnswer("Priority 500 [1]", [cite("apt-cache.html", "Priority 500")], True), False, "s", 1),
        Answer(CheckedAnswer("Use crontab -e [1]", [cite("cron.html", "Use crontab -e")], True), False, "s", 1),
        Answer(CheckedAnswer("Not found.", [], True), True, "s", 1),
        Answer(CheckedAnswer("Not found.", [], True), True, "s", 1),
        Answer(CheckedAnswer("Filler [1]", [cite("x.html", "Filler")], True), False, "s", 1),
    ]
    m = answer_metrics(rows, answers)
    assert m["fact_hit"] == 0.5 and m["supported_citation"] == 0.5
    assert m["abstention_recall"] == 0.5 and m["abstention_precision"] == 0.5 and m["answered_rate"] == 0.75
    assert m["answer_chars"] == pytest.approx(sum(map(len, ["Use apt-mark auto pkg", "Priority 500",
                                                            "Use crontab -e", "Filler"])) / 4)
    # a citation that stands for two passages of its chunk: the fact in its second quote counts
    two = Citation(1, "d", "/docs/apt-get.html", "T", None, "Intro", "c", 0.1, True, ("Intro", "apt-mark auto pkg"))
    again = answer_metrics(rows[:1], [Answer(CheckedAnswer("Intro [1] apt-mark auto pkg [1]", [two], True),
                                             False, "s", 1)])
    assert again["fact_hit"] == 1.0 and again["supported_citation"] == 1.0
    # a golden row that names no file counts for fact hit, not for where the fact was cited
    unplaced = answer_metrics([{"answerable": True, "answer_contains": "Priority 500"}] + rows[:1], answers[1:2] + [
        Answer(CheckedAnswer("Intro [1] apt-mark auto pkg [1]", [two], True), False, "s", 1)])
    assert unplaced["fact_hit"] == 1.0 and unplaced["supported_citation"] == 1.0


@pytest.mark.integration
def test_quelle_eval_answers_on_an_answer_set_compares_answerers(tmp_path):
    """An answer set (docs/ + questions.jsonl, as bench/answer_sets.py builds them) through the real CLI: the
    documents are ingested into SET/index, every answerer answers, and each answer is written down."""
    import shutil

    from tests.conftest import SAMPLES

    folder = tmp_path / "set"
    shutil.copytree(SAMPLES, folder / "docs")
    rows = [{"id": "a1", "question": "How many days of paid annual leave do I get?", "answerable": True,
             "fact": [r"25 days"], "files": ["employee-handbook.pdf"]},
            {"id": "a2", "question": "What is the per diem for meals outside Europe?", "answerable": True,
             "fact": [r"80 EUR"], "files": ["travel-and-expenses.docx", "employee-handbook.pdf"]},
            {"id": "u1", "question": "Who won the football world cup in 2018?", "answerable": False}]
    (folder / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}
    run = subprocess.run([sys.executable, "-m", "cli.main", "eval", str(folder), "--answers", "--json",
                          "--answerer", "sentence", "--answerer", "passage"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report) == {"sentence", "passage"}
    passage = report["passage"]
    assert passage["fact_hit"] == 1.0 and passage["supported_citation"] == 1.0
    assert passage["abstention_recall"] == 1.0 and passage["answer_chars"] > 0
    written = [json.loads(line) for line in (folder / "results-passage.jsonl").read_text().splitlines()]
    assert [w["id"] for w in written] == ["a1", "a2", "u1"] and written[2]["abstained"]
    assert [c["n"] for c in written[0]["citations"]] == list(range(1, len(written[0]["citations"]) + 1))
    again = subprocess.run([sys.executable, "-m", "cli.main", "eval", str(folder)], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=600)
    assert again.returncode == 2 and "answer set: add --answers" in again.stderr


def test_supported_citation_of_a_compound_answer_needs_each_fact_in_a_quote():
    from service.answering import Answer
    from service.citations import CheckedAnswer, Citation
    from service.evaluation import answer_metrics

    def cite(n: int, source: str, quote: str) -> Citation:
        return Citation(n, "d", f"/docs/{source}", "T", None, quote, "c", 0.1, True, (quote,))

    two = {"answerable": True, "fact": ["mdadm --create", "lvcreate"], "files": ["raid.html", "lvm.html"]}
    both = Answer(CheckedAnswer("mdadm --create [1] and lvcreate [2]",
                                [cite(1, "raid.html", "mdadm --create /dev/md0"), cite(2, "lvm.html", "lvcreate -n")],
                                True), False, "s", 1)
    one = Answer(CheckedAnswer("mdadm --create [1] and lvcreate", [cite(1, "raid.html", "mdadm --create /dev/md0")],
                               True), False, "s", 1)
    assert answer_metrics([two], [both])["supported_citation"] == 1.0
    half = answer_metrics([two], [one])  # both facts in the answer, one of them shown where it comes from
    assert half["fact_hit"] == 1.0 and half["supported_citation"] == 0.0
    # a computed fact: the answer holds it, a quote holds what it was computed from ("cited")
    arith = {"answerable": True, "fact": [r"\b6\b"], "cited": [r"every 2 months"], "files": ["apt.html"]}
    six = Answer(CheckedAnswer("About 6 a year [1]", [cite(1, "apt.html", "once every 2 months")], True),
                 False, "s", 1)
    assert answer_metrics([arith], [six])["supported_citation"] == 1.0
    assert answer_metrics([{**arith, "cited": None}], [six])["supported_citation"] == 0.0


@pytest.mark.integration
def test_quelle_eval_compares_agent_mode_with_single_shot_on_compound_questions(tmp_path, llm):
    """`quelle eval SET --answers --questions compound.jsonl --mode agent` (single-shot and agent) with a scripted
    model over real HTTP: both answer each question, and agent mode adds its steps and fallbacks."""
    import shutil

    from tests.conftest import SAMPLES

    folder = tmp_path / "set"
    shutil.copytree(SAMPLES, folder / "docs")
    (folder / "questions.jsonl").write_text("", encoding="utf-8")
    rows = [{"id": "c1", "question": "How many days of paid annual leave do two full-time employees get together?",
             "answerable": True, "fact": [r"\b50\b"], "cited": [r"25 days"], "files": ["employee-handbook.pdf"]},
            {"id": "c2", "question": "What is the per diem outside Europe, and how long is parental leave?",
             "answerable": True, "fact": [r"80 EUR", r"20 weeks"],
             "files": ["travel-and-expenses.docx", "employee-handbook.pdf"]}]
    (folder / "compound.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def step(action: str, value: str = "") -> str:
        return json.dumps({"thought": "t", "action": action, "input": value})

    llm.script("Every full-time employee receives 25 days of paid annual leave per calendar year [1].",
               "Parental leave is 20 weeks at full pay for every new parent [1].",
               step("search", "paid annual leave"), step("calculate", "25 * 2"), step("answer"),
               "Every full-time employee receives 25 days of paid annual leave per calendar year [1], "
               "so two get 50 days.",
               step("search", "per diem outside Europe"), step("search", "parental leave"), step("answer"),
               "The per diem outside Europe is 80 EUR per day [1]. Parental leave is 20 weeks at full pay for "
               "every new parent [2].")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2",
           "QUELLE_LLM_BASE_URL": llm.base_url, "QUELLE_LLM_MODEL": "m", "QUELLE_LLM_API_KEY": "k",
           "QUELLE_AGENT_PLAN": "false"}
    run = subprocess.run([sys.executable, "-m", "cli.main", "eval", str(folder), "--answers", "--json",
                          "--questions", "compound.jsonl", "--mode", "agent"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["llm"]["fact_hit"] == 0.0 and "steps" not in report["llm"]
    agent = report["agent"]
    assert agent["fact_hit"] == 1.0 and agent["supported_citation"] == 1.0, agent
    assert agent["steps"] == 2.0 and agent["fallbacks"] == 0.0 and agent["seconds"] > 0
    written = [json.loads(line) for line in (folder / "results-agent-compound.jsonl").read_text().splitlines()]
    assert [s["tool"] for s in written[0]["steps"]] == ["search", "calculate"]
    assert written[0]["steps"][1]["observation"] == "25 * 2 = 50"
