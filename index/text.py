"""Sentence boundaries shared by chunking (ingest) and answering (service)."""

from __future__ import annotations

import re

# a sentence ends after .!? (plus closing quotes/brackets) before a space, after 。！？ (plus closers),
# or at a blank line
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*(?=\s)|(?<=[。！？])[」』）】”’\"]*|\n\s*\n")


# a heading line at the start of a sentence: short, no sentence punctuation, and the next line starts a new
# sentence (a capital, a digit, an opening quote or a CJK character); a wrapped line of running text goes on
# in lower case or is longer
_HEADING = re.compile(r"(?:[^\n.!?,;:。！？、，]|\.(?=\d)){1,60}(?<=\S)[ \t]*\n"
                      r"(?=[ \t]*[A-Z0-9\"“(\u3040-\u30ff\u3400-\u9fff])")


def sentence_spans(text: str, *, skip_headings: bool = False) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed; together they hold every non-space character, except
    that with `skip_headings` a heading on its own line ("Leave and time off" above "Every employee ...") is
    left out: it is no sentence to quote (chunking keeps it with the sentence it introduces)."""
    spans = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        while skip_headings and a < b and (h := _HEADING.match(text, a, b)) and len(text[a:h.end()].split()) <= 8:
            a = h.end()
            while a < b and text[a].isspace():
                a += 1
        if a < b:
            out.append((a, b))
    return out


def _is_cjk(ch: str) -> bool:
    return "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def has_cjk(text: str) -> bool:
    """Any Japanese kana or CJK ideograph in the text."""
    return any(_is_cjk(ch) for ch in text)


def cjk_share(text: str) -> float:
    """The share of the text's letters that are Japanese kana or CJK ideographs."""
    letters = [ch for ch in text if ch.isalpha()]
    return sum(_is_cjk(ch) for ch in letters) / len(letters) if letters else 0.0


def mostly_cjk(text: str) -> bool:
    """Whether the text reads as Japanese or Chinese: 30% of its letters or more are kana or ideographs (a
    Japanese sentence that names commands and files in Latin letters still counts)."""
    return cjk_share(text) >= 0.3


_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]|[^\W\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]+")


def cjk_word_share(text: str) -> float:
    """The share of the text's words that are Japanese or Chinese, each kana or ideograph counting as a word
    (as a model's tokenizer roughly sees it) and each run of other letters and digits as one: "設定ファイルは
    /etc/apt/sources.list にあります" is 0.75 Japanese, where its letters are only half."""
    words = _WORDS.findall(text)
    return sum(len(w) == 1 and _is_cjk(w) for w in words) / len(words) if words else 0.0
