"""Markdown: ATX (`# Title`) and setext headings give each section its heading path; code fences are text."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.document import ParsedDocument, Section
from ingest.parsers.text import decode, normalise_newlines

_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def parse(path: Path, data: bytes) -> ParsedDocument:
    lines = normalise_newlines(decode(path, data)).split("\n")
    if lines and lines[0].strip() == "---":  # YAML front matter
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            lines = lines[end + 1 :]
    sections: list[Section] = []
    path_stack: list[tuple[int, str]] = []
    body: list[str] = []
    title = ""
    in_fence = False

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text, heading_path=tuple(h for _, h in path_stack)))
        body.clear()

    def heading(level: int, name: str) -> None:
        nonlocal title
        flush()
        while path_stack and path_stack[-1][0] >= level:
            path_stack.pop()
        path_stack.append((level, name))
        if not title and level == 1:
            title = name

    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            body.append(line)
            continue
        m = None if in_fence else _ATX.match(line)
        if m and m.group(2):
            heading(len(m.group(1)), m.group(2))
            continue
        s = None if in_fence else _SETEXT.match(line)
        if s and body and body[-1].strip() and len(body) >= 1 and not _is_list_item(body[-1]):
            name = body.pop().strip()
            heading(1 if s.group(1)[0] == "=" else 2, name)
            continue
        body.append(line)
    flush()
    return ParsedDocument(title=title or path.stem, kind="markdown", sections=sections)


def _is_list_item(line: str) -> bool:
    return bool(re.match(r"^\s*([-*+]|\d+[.)])\s", line))
