"""Sentence boundaries shared by chunking (ingest) and answering (service)."""

from __future__ import annotations

import re

# a sentence ends after .!? (plus closing quotes/brackets) before a space, after 。！？ (plus closers),
# or at a blank line
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*(?=\s)|(?<=[。！？])[」』）】”’\"]*|\n\s*\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed; together they hold every non-space character."""
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
