"""Answer-level evaluation sets from real documentation nobody here wrote, in English, Japanese and Chinese.

    python bench/answer_sets.py [--out DIR] [--only en ja zh]
    quelle eval DIR/en --answers          # ingests DIR/en/docs into DIR/en/index once, then asks every question

Corpus per language, fetched with `apt-get download` (nothing derived is committed): the Debian
Administrator's Handbook (Hertzog and Mas; package debian-handbook, GPL-2+ / CC-BY-SA-3.0) in that language's
HTML, and the Debian New Maintainers' Guide (Aoki; maint-guide, maint-guide-ja, maint-guide-zh-cn; MIT-style
licence) in that language's HTML. SQLite's manual (sqlite3-doc) is kept out: it is the independent check,
set `sqlite` (`--only sqlite`; its 214 top-level HTML pages, public domain, and 12 answerable and 4
unanswerable questions of this project's own), never used to choose a setting.

Agent mode's compound questions (`bench/answers/compound-<lang>.jsonl`, copied to `<lang>/compound.jsonl`: two
facts from different places, a fact plus arithmetic, a comparison; "cited" names the facts a quote must hold
when the answer computes its fact from them) are asked with `quelle eval DIR/en --answers --questions
compound.jsonl --mode agent`.

The questions are this project's own (`bench/answers/<lang>.jsonl`), written the way an employee asks, not the
headings: {"id", "question", "answerable", "fact": [regex, ...] (every one must match the answer; case and
whitespace tolerant), "files": [file names that hold the fact], "section": the heading that holds it}. The
unanswerable ones ask about things next to the manuals' topics. Building a set checks that every fact
matches the text of one of its files as Quelle parses it, so a set cannot ask for a fact that is not there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LANGS = ("en", "ja", "zh")
CHECKS = ("sqlite",)  # sets that decide nothing: they only check that the choices made on LANGS carry over
_HANDBOOK = {"en": "en-US", "ja": "ja-JP", "zh": "zh-CN"}
_MAINT_GUIDE = {"en": "maint-guide", "ja": "maint-guide-ja", "zh": "maint-guide-zh-cn"}


def corpus_files(lang: str) -> dict[str, list[Path]]:
    """manual name -> its HTML pages, for one language."""
    from bench.debian import package_root

    if lang == "sqlite":
        pages = package_root("sqlite3-doc") / "usr" / "share" / "doc" / "sqlite3"
        return {"sqlite3-doc": sorted(pages.glob("*.html"))}
    handbook = package_root("debian-handbook") / "usr" / "share" / "doc" / "debian-handbook" / "html"
    guide = package_root(_MAINT_GUIDE[lang])
    return {"debian-handbook": sorted((handbook / _HANDBOOK[lang]).glob("*.html")),
            "maint-guide": sorted(guide.rglob("*.html"))}


def load_questions(lang: str) -> list[dict]:
    path = ROOT / "bench" / "answers" / f"{lang}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(lang: str, out: Path) -> Path:
    """Copy the corpus into out/lang/docs and the checked questions into out/lang/questions.jsonl."""
    from index.errors import ParseError
    from ingest.parsers import parse

    folder = out / lang
    docs = folder / "docs"
    texts: dict[str, str] = {}
    for manual, files in corpus_files(lang).items():
        (docs / manual).mkdir(parents=True, exist_ok=True)
        for f in files:
            dest = docs / manual / f.name
            if not dest.exists() or dest.stat().st_size != f.stat().st_size:
                shutil.copyfile(f, dest)
            try:
                texts[f.name] = "\n\n".join(s.text for s in parse(dest).sections)
            except ParseError as exc:  # ingestion reports and skips it too; no question may rely on it
                print(f"skipped: {exc}")
    sets = {"questions.jsonl": load_questions(lang)}
    if (ROOT / "bench" / "answers" / f"compound-{lang}.jsonl").exists():
        sets["compound.jsonl"] = load_questions(f"compound-{lang}")
    for name, questions in sets.items():
        check(lang, questions, texts)
        with open(folder / name, "w", encoding="utf-8") as f:
            for q in questions:
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
        answerable = sum(q.get("answerable", True) for q in questions)
        print(f"{folder / name}: {len(texts)} files, {answerable} answerable and {len(questions) - answerable} "
              "unanswerable questions")
    return folder


def check(lang: str, questions: list[dict], texts: dict[str, str]) -> None:
    """Every id once; every fact the documents must hold (`cited` when the answer computes the fact, e.g. a
    sum) in one of the question's files."""
    from service.evaluation import fact_matches

    problems = []
    ids = set()
    for q in questions:
        if q["id"] in ids:
            problems.append(f"{q['id']}: duplicate id")
        ids.add(q["id"])
        if not q.get("answerable", True):
            continue
        missing = [f for f in q["files"] if f not in texts]
        if missing:
            problems.append(f"{q['id']}: no file {missing}")
            continue
        for fact in q.get("cited") or q["fact"]:
            if not any(fact_matches([fact], texts[f]) for f in q["files"]):
                problems.append(f"{q['id']}: fact {fact!r} not in {q['files']}")
    if problems:
        raise SystemExit(f"{lang}: the question set does not match the corpus:\n  " + "\n  ".join(problems))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "answers")
    ap.add_argument("--only", nargs="+", choices=LANGS + CHECKS, default=list(LANGS))
    args = ap.parse_args()
    for lang in args.only:
        build(lang, args.out)


if __name__ == "__main__":
    main()
