"""Build retrieval test sets in the BEIR layout from real documentation not written by this project.

    python bench/make_eval_sets.py [--max-queries N] [--out DIR]

Sources, each the same manual in English, Japanese and Chinese, fetched with `apt-get download`:
- the Debian Reference (Osamu Aoki; packages debian-reference-en, -ja, -zh-cn; GPL-2+),
- the Debian Administrator's Handbook (Hertzog, Mas; package debian-handbook; GPL-2+ / CC-BY-SA-3.0).
Each section becomes a passage (its text, without its heading: the parser keeps headings apart); the
section's own heading, numbering stripped, is the query whose relevant passage it is. Sections left
untranslated (mostly Latin script in the Japanese or Chinese manual), repeated passages and headings that
occur more than once (ambiguous queries) are skipped. Nothing derived is committed: the sets are rebuilt
into bench/.cache/eval/ (or --out) and evaluated with `quelle eval DIR`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LANGS = ("en", "ja", "zh")
_REFERENCE = {"en": "en", "ja": "ja", "zh": "zh-cn"}
_HANDBOOK = {"en": "en-US", "ja": "ja-JP", "zh": "zh-CN"}
_NUMBER = re.compile(r"^\s*(Chapter\s+\d+\.|Appendix\s+[A-Z]\.|第\s*\d+\s*章|付録\s*[A-Z]\.?|附录\s*[A-Z]\.?"
                     r"|[\dA-Z]+(\.\d+)*\.?)\s+")


def pages(source: str, lang: str) -> list[Path]:
    from bench.debian import package_root

    if source == "debian-reference":
        return sorted(package_root(f"debian-reference-{_REFERENCE[lang]}").rglob(f"ch*.{_REFERENCE[lang]}.html"))
    root = package_root("debian-handbook") / "usr" / "share" / "doc" / "debian-handbook" / "html"
    return sorted((root / _HANDBOOK[lang]).glob("*.html"))


SOURCES = ("debian-reference", "debian-handbook")




def sections(source: str, lang: str) -> list[tuple[str, str]]:
    """(query, passage) for every usable section of one manual in one language."""
    from index.text import cjk_share
    from ingest.parsers import parse

    out = []
    seen: set[str] = set()
    for page in pages(source, lang):
        for s in parse(page).sections:
            if not s.heading_path or len(s.text) < 150:
                continue
            query = _NUMBER.sub("", s.heading_path[-1]).strip()
            if len(query) < 4:
                continue
            if lang != "en" and (cjk_share(query) < 0.3 or cjk_share(s.text) < 0.3):
                continue  # left untranslated
            if s.text in seen:
                continue  # a chapter page repeats its sections' pages
            seen.add(s.text)
            out.append((query, s.text))
    counts = Counter(q for q, _ in out)
    return [(q, p) for q, p in out if counts[q] == 1]


def write_set(source: str, lang: str, out: Path, max_queries: int, max_passages: int = 0, seed: int = 7) -> Path:
    pairs = sections(source, lang)
    if max_passages:
        pairs = pairs[:max_passages]
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(pairs)), min(max_queries, len(pairs))))
    folder = out / f"{source}-{lang}"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as c, \
            open(folder / "queries.jsonl", "w", encoding="utf-8") as q, \
            open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for i, (query, passage) in enumerate(pairs):
            c.write(json.dumps({"_id": f"s{i}", "title": "", "text": passage}, ensure_ascii=False) + "\n")
            if i in chosen:
                q.write(json.dumps({"_id": f"q{i}", "text": query}, ensure_ascii=False) + "\n")
                r.write(f"q{i}\ts{i}\t1\n")
    print(f"{folder}: {len(pairs)} passages, {len(chosen)} queries")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-queries", type=int, default=100)
    ap.add_argument("--max-passages", type=int, default=0, help="keep only the first N passages (0: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "eval")
    ap.add_argument("--source", choices=SOURCES, action="append", help="default: all")
    args = ap.parse_args()
    for source in args.source or SOURCES:
        for lang in LANGS:
            write_set(source, lang, args.out, args.max_queries, args.max_passages)


if __name__ == "__main__":
    main()
