"""HTML: the main text (navigation, scripts, styles and forms left out), the title, and headings.

When the page marks its main content (`<main>`, `<article>` or role="main"), only that is kept.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from index.errors import ParseError
from ingest.document import ParsedDocument, Section
from ingest.parsers.text import decode

_SKIP = {"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
         "button", "select", "iframe", "object", "head"}
_BLOCK = {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr",
          "blockquote", "pre", "br", "hr", "figure", "figcaption", "caption", "address", "body", "td", "th"}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "track", "wbr"}
_MAX_DEPTH = 2000
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_\-]+)""", re.I)


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.skip_depth = 0
        self.main_depth = 0
        self.title = ""
        self.in_title = False
        self.heading: tuple[int, list[str]] | None = None
        self.path: list[tuple[int, str]] = []
        # blocks: (in_main, heading_path, text)
        self.blocks: list[tuple[bool, tuple[str, ...], list[str]]] = []
        self._new_block()

    def _new_block(self) -> None:
        path = tuple(h for _, h in self.path)
        if not self.blocks or self.blocks[-1][2] or self.blocks[-1][1] != path:
            self.blocks.append((self.main_depth > 0, path, []))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br":
                self.blocks[-1][2].append("\n")
            return
        self.stack.append(tag)
        if len(self.stack) > _MAX_DEPTH:
            raise ParseError("html", f"elements nested deeper than {_MAX_DEPTH} levels")
        attr = dict(attrs)
        if tag in ("main", "article") or attr.get("role") == "main":
            self.main_depth += 1
        if tag in _SKIP or attr.get("hidden") is not None or attr.get("role") == "navigation":
            self.skip_depth += 1
        if tag == "title":
            self.in_title = True
        elif tag in _HEADINGS and not self.skip_depth:
            self.heading = (_HEADINGS[tag], [])
        elif tag in _BLOCK:
            self._new_block()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack:  # close anything left open inside this element
            top = self.stack.pop()
            self._close(top)
            if top == tag:
                break

    def _close(self, tag: str) -> None:
        if tag in ("main", "article") and self.main_depth:
            self.main_depth -= 1
        if tag in _SKIP and self.skip_depth:
            self.skip_depth -= 1
        if tag == "title":
            self.in_title = False
        elif tag in _HEADINGS and self.heading is not None:
            level, parts = self.heading
            self.heading = None
            name = " ".join("".join(parts).split())
            if name:
                while self.path and self.path[-1][0] >= level:
                    self.path.pop()
                self.path.append((level, name))
                self._new_block()
        elif tag in _BLOCK:
            self._new_block()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif self.skip_depth:
            return
        elif self.heading is not None:
            self.heading[1].append(data)
        else:
            self.blocks[-1][2].append(data)


def parse(path: Path, data: bytes) -> ParsedDocument:
    m = _META_CHARSET.search(data[:4096])
    text: str | None = None
    if m:
        try:
            text = data.decode(m.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            text = None
    if text is None:
        text = decode(path, data)
    ex = _Extractor()
    try:
        ex.feed(text)
        ex.close()
    except ParseError as exc:
        raise ParseError(path, exc.reason) from None
    blocks = ex.blocks
    if any(in_main and parts for in_main, _, parts in blocks):
        blocks = [b for b in blocks if b[0]]
    sections: list[Section] = []
    for _, heading_path, parts in blocks:
        para = _clean("".join(parts))
        if not para:
            continue
        if sections and sections[-1].heading_path == heading_path:
            sections[-1] = Section(sections[-1].text + "\n\n" + para, heading_path=heading_path)
        else:
            sections.append(Section(para, heading_path=heading_path))
    title = " ".join(ex.title.split()) or (ex.path[0][1] if ex.path else "") or path.stem
    return ParsedDocument(title=title, kind="html", sections=sections)


def _clean(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(line for line in lines if line)
