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
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, opened a skipped region, opened main content)
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
        """Start a new block of text, with the current heading path and main-content flag."""
        block: tuple[bool, tuple[str, ...], list[str]] = (self.main_depth > 0, tuple(h for _, h in self.path), [])
        if self.blocks and not self.blocks[-1][2]:
            self.blocks[-1] = block  # nothing was written to the last one: take its place
        else:
            self.blocks.append(block)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br":
                self.blocks[-1][2].append("\n")
            return
        attr = dict(attrs)
        is_main = tag in ("main", "article") or attr.get("role") == "main"
        is_skip = tag in _SKIP or "hidden" in attr or attr.get("role") in ("navigation", "search", "banner")
        self.stack.append((tag, is_skip, is_main))
        if len(self.stack) > _MAX_DEPTH:
            raise ParseError("html", f"elements nested deeper than {_MAX_DEPTH} levels")
        self.main_depth += is_main
        self.skip_depth += is_skip
        if tag == "title":
            self.in_title = True
        elif tag in _HEADINGS and not self.skip_depth:
            self.heading = (_HEADINGS[tag], [])
        elif tag in _BLOCK:
            self._new_block()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or all(t != tag for t, _, _ in self.stack):
            return
        while self.stack:  # close anything left open inside this element
            top, was_skip, was_main = self.stack.pop()
            self.skip_depth -= was_skip
            self.main_depth -= was_main
            self._close(top)
            if top == tag:
                break

    def _close(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in _HEADINGS and self.heading is not None:
            level, parts = self.heading
            self.heading = None
            name = " ".join("".join(parts).replace("¶", " ").split())  # Sphinx permalinks
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


_MARKED = re.compile(r"<!\[(?!\s*(?:cdata|if|else|endif|temp|ignore|include|rcdata)\b)", re.IGNORECASE)


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
    # the standard library's parser asserts on marked sections other than CDATA and conditional comments
    # ("<![foo["): such a sequence is text, so escape it (found by fuzzing)
    text = _MARKED.sub("&lt;![", text)
    ex = _Extractor()
    try:
        ex.feed(text)
        ex.close()
    except ParseError as exc:
        raise ParseError(path, exc.reason) from None
    except AssertionError as exc:  # any other declaration the standard library refuses
        raise ParseError(path, f"malformed HTML ({exc})") from None
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
