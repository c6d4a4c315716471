"""Keyword terms for BM25, without assuming words are separated by spaces.

Two analyzers, chosen per index (QUELLE_KEYWORD_ANALYZER when the index is created, recorded in it):
- "morph" (default): Latin-script text gives lowercased words (NFKC-normalised, so full-width letters and
  digits match their ASCII forms); runs of Chinese or Japanese characters are cut into words by a
  morphological analyzer: fugashi with the bundled unidic-lite dictionary for Japanese (any text with kana),
  jieba for Chinese; particles, auxiliary verbs and punctuation are left out. Better than bigrams on every
  Japanese and Chinese evaluation set (docs/quality.md); loaded on the first CJK text only.
- "bigram" (no dictionary): the same words, but CJK runs give overlapping character bigrams (a single
  character on its own). Indexes made before the analyzer was recorded use it.
The store keeps the terms in a SQLite FTS5 table, ranked with its bm25().
"""

from __future__ import annotations

import re
import unicodedata

from index.errors import ConfigError

ANALYZER = "morph"  # for new indexes
LEGACY_ANALYZER = "bigram"  # indexes that do not record one were made with it
ANALYZERS = ("bigram", "morph")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u31f0-\u31ff"
_TOKEN = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)")
STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in into is it its me my no not of on "
    "or our should so than that the their then there these they this to was we were what when where which who "
    "why will with you your".split()
)


def terms(text: str, *, drop_stopwords: bool = False, analyzer: str = ANALYZER) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    cut = _cjk_words(text) if analyzer == "morph" else _bigrams
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        cjk, word = m.group(1), m.group(2)
        if cjk:
            out += cut(cjk)
        elif not (drop_stopwords and word in STOPWORDS):
            out.append(word)
    return out


_SUFFIXES = ("ations", "ation", "ings", "ing", "ions", "ion", "ed", "ly")


def stem(term: str) -> str:
    """A crude English stem for comparing words (not for the index): enough to match "enable", "enabled" and
    "enabling", "meal" and "meals"; other scripts as they are."""
    if not term.isascii() or not term.isalpha():
        return term
    for suffix in _SUFFIXES:
        if term.endswith(suffix) and len(term) - len(suffix) >= 4:
            term = term[: -len(suffix)]
            break
    else:
        if term.endswith("es") and len(term) > 4 and term[-3] in "sxz":
            term = term[:-2]
        elif term.endswith("s") and not term.endswith("ss") and len(term) > 3:
            term = term[:-1]
    return term[:5]


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


JA_SKIP = {"助詞", "助動詞", "補助記号", "記号", "空白"}
_ZH_SKIP = {"的", "了", "是", "在", "和", "与", "及", "或", "吗", "呢", "吧", "啊", "之", "其", "也", "都", "就"}


def _cjk_words(text: str):  # type: ignore[no-untyped-def]
    """A CJK-run cutter for this text: Japanese when it holds kana, Chinese otherwise."""
    if any("\u3040" <= ch <= "\u30ff" for ch in text):
        tagger = japanese_tagger()
        return lambda run: [w.surface for w in tagger(run) if w.feature.pos1 not in JA_SKIP]
    jieba = _chinese()
    return lambda run: [w for w in jieba.cut_for_search(run) if w.strip() and w not in _ZH_SKIP]


_CACHE: dict[str, object] = {}


def japanese_tagger():  # type: ignore[no-untyped-def]
    if "ja" not in _CACHE:
        try:
            import fugashi  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ConfigError('keyword analyzer "morph" needs: pip install fugashi unidic-lite') from exc
        _CACHE["ja"] = fugashi.Tagger()
    return _CACHE["ja"]


def _chinese():  # type: ignore[no-untyped-def]
    if "zh" not in _CACHE:
        try:
            import jieba  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ConfigError('keyword analyzer "morph" needs: pip install jieba') from exc
        jieba.setLogLevel(60)
        _CACHE["zh"] = jieba
    return _CACHE["zh"]


def query_terms(query: str, analyzer: str = ANALYZER) -> list[str]:
    """The query's distinct terms, stopwords left out unless the query has nothing else; with the morph analyzer
    a Japanese loanword brings the English word it comes from (index/bilingual.py: one word, exact; a Chinese
    word's dictionary glosses are too many for the whole index, docs/quality.md)."""
    seen = list(dict.fromkeys(terms(query, drop_stopwords=True, analyzer=analyzer))
                or dict.fromkeys(terms(query, analyzer=analyzer)))
    if analyzer == "morph":
        from index.bilingual import loanword_sources  # it builds on this module's analyzers

        seen += [e for e in dict.fromkeys(loanword_sources(query).values()) if e not in seen]
    return seen


def match_expression(query: str, analyzer: str = ANALYZER) -> str | None:
    """An FTS5 MATCH expression that ORs the query's distinct terms (None when it has none)."""
    seen = query_terms(query, analyzer)
    if not seen:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in seen)
