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
