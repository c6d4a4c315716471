"""Keyword terms for BM25, without assuming words are separated by spaces.

Latin-script text gives lowercased words (NFKC-normalised, so full-width letters and digits match their ASCII
forms); runs of Chinese, Japanese or Korean characters give overlapping character bigrams (a single
character on its own), the usual dictionary-free way to index CJK text. The store keeps these terms in a
SQLite FTS5 table, ranked with its bm25().
"""

from __future__ import annotations

import re
import unicodedata

ANALYZER = "words+cjk-bigrams/1"

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u31f0-\u31ff"
_TOKEN = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)")
STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in into is it its me my no not of on "
    "or our should so than that the their then there these they this to was we were what when where which who "
    "why will with you your".split()
)


def terms(text: str, *, drop_stopwords: bool = False) -> list[str]:
    out: list[str] = []
    for m in _TOKEN.finditer(unicodedata.normalize("NFKC", text).lower()):
        cjk, word = m.group(1), m.group(2)
        if cjk:
            out += [cjk] if len(cjk) == 1 else [cjk[i : i + 2] for i in range(len(cjk) - 1)]
        elif not (drop_stopwords and word in STOPWORDS):
            out.append(word)
    return out


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression that ORs the query's distinct terms (None when it has none)."""
    seen = dict.fromkeys(terms(query, drop_stopwords=True)) or dict.fromkeys(terms(query))
    if not seen:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in seen)
