"""A chunk's text as the units an extractive answer may quote: prose sentences, code blocks and headings.

- Blocks are separated by blank lines. A block whose lines look like code (a shell prompt, a statement that
  ends in `;`, `{` or `\\`, a line of options and paths with no sentence punctuation) is one `code` unit, its
  lines kept verbatim; a long one is cut into groups of lines.
- A short line with no sentence punctuation standing alone ("TIP Incremental updates", "Example 6.1. ...",
  a heading the parser left in the text) is a `heading`: never an answer on its own, and it ends a passage.
- Everything else is cut into sentences (index.text.sentence_spans), each one a `prose` unit with its white
  space collapsed (a wrapped line is one sentence).
Every unit keeps its span in the chunk text, so a quote can always be found where it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from index.text import mostly_cjk, sentence_spans

CODE_LINES_PER_UNIT = 8

_BLOCK = re.compile(r"\n[ \t]*\n")
_PROMPT = re.compile(r"^\s*(?:[$%#]|>>>|\.\.\.|[\w.-]*[>#]|sqlite>|postgres=[#>]|mysql>)\s+\S")
_STATEMENT_END = re.compile(r"(?:[;{}\\]|\)\s*;?)\s*$")
_CODE_TOKEN = re.compile(r"(?:^|\s)(?:--?[A-Za-z][\w-]*|[\w.-]*/[\w./*-]+|\w+(?:::|=)\S*|\$\w+|`[^`]+`|<[\w-]+>)")
_SENTENCE_END = re.compile(r"[.!?。！？:：]\s*$")
_UPPER_KEYWORD = re.compile(r"^\s*[A-Z]{3,}(?:\s+[A-Z_]{2,})*\b(?![a-z])")
_PLAIN_WORD = re.compile(r"[(“\"']?[A-Za-z][a-z]*(?:'[a-z]+)?[)”\"',.;:!?]*")
_CAPTION = re.compile(r"^\s*(?:Example|Table|Figure|Listing|例|表|图|圖)\s*[\d.]+", re.IGNORECASE)


@dataclass(frozen=True)
class Unit:
    start: int  # span in the chunk text
    end: int
    text: str  # as shown: prose with its white space collapsed, code lines as they are
    kind: str  # "prose", "code" or "heading"
    block: int  # which block of the chunk


def prose_like(line: str) -> bool:
    """Six words or more, nearly all of them plain words, or mostly Japanese/Chinese: a line of running text (a
    wrapped paragraph, a list item that ends in ';')."""
    if mostly_cjk(line):
        return True  # Japanese or Chinese text: no spaces to count words by
    words = line.split()
    plain = sum(bool(_PLAIN_WORD.fullmatch(w)) for w in words)
    return len(words) >= 6 and plain >= 0.8 * len(words)


def code_like(line: str) -> bool:
    """A line that reads as a command, a statement or configuration rather than prose."""
    s = line.strip()
    if not s:
        return False
    if _PROMPT.match(s):
        return True
    if prose_like(s):
        return False
    if _STATEMENT_END.search(s):
        return True
    words = s.split()
    if _SENTENCE_END.search(s) and len(words) > 4:
        return False
    tokens = len(_CODE_TOKEN.findall(" " + s))
    if _UPPER_KEYWORD.match(s) and tokens:
        return True  # PRAGMA journal_mode=WAL
    return tokens >= max(1, len(words) // 3) and len(words) <= 16


def _code_block(lines: list[str]) -> bool:
    """A block of commands, statements or configuration lines: no line of it is a sentence of prose, and it
    has a prompt, mostly code-like lines, or several short lines the last of which ends no sentence."""
    code = [code_like(ln) for ln in lines]
    if len(lines) == 1:
        return code[0] and not _CAPTION.match(lines[0])
    if 4 * sum(prose_like(ln) and not c for ln, c in zip(lines, code, strict=True)) > len(lines):
        return False
    if any(_PROMPT.match(ln) for ln in lines) or 2 * sum(code) >= len(lines):
        return True
    return not _SENTENCE_END.search(lines[-1]) and max(len(ln.split()) for ln in lines) <= 12


def _heading_like(line: str) -> bool:
    s = line.strip()
    if _CAPTION.match(s):
        return True
    if _SENTENCE_END.search(s) or len(s) > 90 or len(s.split()) > 10:
        return False
    return not code_like(s)


def units(text: str) -> list[Unit]:
    out: list[Unit] = []
    start = 0
    blocks = [(m.start(), m.end()) for m in _BLOCK.finditer(text)]
    edges = [(start, blocks[0][0] if blocks else len(text))]
    edges += [(blocks[i][1], blocks[i + 1][0] if i + 1 < len(blocks) else len(text)) for i in range(len(blocks))]
    for b, (a, z) in enumerate(edges):
        block = text[a:z]
        if not block.strip():
            continue
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if len(lines) == 1 and _heading_like(lines[0]) and not _CAPTION.match(lines[0]) and len(lines[0].split()) <= 2 \
                and b + 1 < len(edges):
            out.append(_unit(text, a, z, "heading", b))  # a term on its own line, as in a definition list
            continue
        if _code_block(lines):
            out += _code_units(text, a, z, b)
        elif len(lines) == 1 and _heading_like(lines[0]):
            out.append(_unit(text, a, z, "heading", b))
        else:
            pos = 0  # a heading line that starts a sentence ("Leave and time off" above "Every ...") stands apart
            for s, e in sentence_spans(block, skip_headings=True):
                if block[pos:s].strip():
                    out.append(_unit(text, a + pos, a + s, "heading", b))
                kind = "heading" if _heading_like(block[s:e]) and "\n" not in block[s:e].strip() and \
                    _only_line(block, s, e) else "prose"
                out.append(_unit(text, a + s, a + e, kind, b))
                pos = e
    return out


def _only_line(block: str, s: int, e: int) -> bool:
    """The span fills its own line(s): a heading left in running text stands alone on its line."""
    before = block[:s].rstrip(" \t")
    after = block[e:].lstrip(" \t")
    return (not before or before.endswith("\n")) and (not after or after.startswith("\n"))


def _unit(text: str, a: int, z: int, kind: str, block: int) -> Unit:
    while a < z and text[a].isspace():
        a += 1
    while z > a and text[z - 1].isspace():
        z -= 1
    shown = "\n".join(ln.rstrip() for ln in text[a:z].split("\n") if ln.strip()) if kind == "code" \
        else " ".join(text[a:z].split())
    return Unit(a, z, shown, kind, block)


def _code_units(text: str, a: int, z: int, block: int) -> list[Unit]:
    """One unit per group of up to CODE_LINES_PER_UNIT lines."""
    spans = []
    pos = a
    for line in text[a:z].split("\n"):
        if line.strip():
            spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return [_unit(text, spans[i][0], spans[min(i + CODE_LINES_PER_UNIT, len(spans)) - 1][1], "code", block)
            for i in range(0, len(spans), CODE_LINES_PER_UNIT)]
