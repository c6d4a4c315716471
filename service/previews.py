"""Page previews: a PDF page rendered to PNG with the quoted spans highlighted, and the text section around a
chunk for the other kinds of document (HTML, Markdown, DOCX, text have no pages to draw).

PDFium (through pypdfium2) is not thread-safe, so every PDF is opened and drawn on one worker thread of its
own; a caller waits for it at most `timeout` seconds. Rendered images are kept in a small in-memory cache keyed
by the file's content hash, so a changed file never serves an old picture."""

from __future__ import annotations

import hashlib
import io
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from index.records import ChunkRecord, DocumentRecord

MAX_HIGHLIGHTS = 8
MAX_HIGHLIGHT_CHARS = 2000
MAX_SIDE_PX = 4000  # neither side of an image is larger, whatever the page size or the width asked
SECTION_CHARS = 12_000  # the most text a section view returns
HIGHLIGHT = (255, 214, 0, 110)  # translucent yellow
OUTLINE = (200, 120, 0, 255)


class PreviewError(Exception):
    """A preview that cannot be made; `status` says why (404 no such page or file, 409 file changed, 503 too
    slow), the message names the document and the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PageImage:
    png: bytes
    width: int
    height: int
    highlights: int  # how many of the asked quotes were found on the page and marked


def _folded(text: str) -> tuple[str, list[int]]:
    """The letters and digits of `text`, case- and width-folded, with each one's index in `text`: quotes and a
    PDF's own text differ in spaces, line breaks, hyphens and ligatures, not in letters."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).casefold():
            if c.isalnum():
                out.append(c)
                where.append(i)
    return "".join(out), where


def locate(text: str, quote: str) -> tuple[int, int] | None:
    """The range [start, end) of `text` that `quote` covers, tolerant of whitespace, case, hyphenation and
    ligatures; the longest common run when the quote is only partly there (at least half of it), else None."""
    page, where = _folded(text)
    want, _ = _folded(quote)
    if not want or not page:
        return None
    at = page.find(want)
    if at >= 0:
        return where[at], where[at + len(want) - 1] + 1
    m = SequenceMatcher(None, page, want, autojunk=False).find_longest_match(0, len(page), 0, len(want))
    if m.size * 2 < len(want):
        return None
    start = max(0, m.a - m.b)  # widen the run to where the whole quote would sit
    end = min(len(page), start + len(want))
    return where[start], where[end - 1] + 1


class Previews:
    def __init__(self, *, timeout: float = 10.0, cache_bytes: int = 64 << 20) -> None:
        self.timeout = timeout
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, PageImage] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self._pdfium: Any = None  # its one thread, started by the first preview

    def close(self) -> None:
        if self._pdfium is not None:
            self._pdfium.shutdown(wait=False, cancel_futures=True)

    def _worker(self) -> Any:
        # imported here, not at the top: importing concurrent.futures' thread pool early changes the order of
        # interpreter shutdown so that PyTorch's finalisers print tracebacks when `quelle serve` cannot start
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pdfium is None:
                self._pdfium = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdfium")
            return self._pdfium

    def page(self, doc: DocumentRecord, n: int, *, width: int = 1000,
             highlights: Sequence[str] = ()) -> PageImage:
        """Page `n` (1-based) of a PDF document as PNG, `width` pixels wide (less when the page is very tall),
        with each of `highlights` marked where it is found on the page."""
        if doc.kind != "pdf":
            raise PreviewError(404, f"document {doc.id!r} ({doc.title}) is a {doc.kind} file: it has no page "
                                    f"images; read its text at /v1/documents/{doc.id}/section")
        if not doc.pages or not 1 <= n <= doc.pages:
            raise PreviewError(404, f"document {doc.id!r} ({doc.title}) has pages 1 to {doc.pages or 0}, not {n}")
        wanted = tuple(h[:MAX_HIGHLIGHT_CHARS] for h in highlights if h.strip())[:MAX_HIGHLIGHTS]
        key = hashlib.sha256("\0".join([doc.content_hash, str(n), str(width), *wanted]).encode()).hexdigest()
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
        path = source_file(doc)
        future = self._worker().submit(_render, path, n, width, wanted)
        try:
            image = future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()
            raise PreviewError(503, f"page {n} of document {doc.id!r} took longer than {self.timeout:g} s to "
                                    "draw") from None
        except Exception as exc:  # a PDF that PDFium cannot open or draw
            raise PreviewError(422, f"cannot draw page {n} of document {doc.id!r} ({doc.title}): {exc}") from None
        with self._lock:
            self._cache[key] = image
            self._cached += len(image.png)
            while self._cached > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old.png)
        return image


def source_file(doc: DocumentRecord) -> Path:
    """The document's file as it was ingested, or a PreviewError: gone (404), or changed since (409, a
    preview would show other words than the index holds)."""
    path = Path(doc.source)
    try:
        st = path.stat()
    except OSError:
        raise PreviewError(404, f"the file of document {doc.id!r} ({doc.title}) is no longer at {doc.source}") \
            from None
    if (st.st_size, st.st_mtime_ns) != (doc.size, doc.mtime_ns):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != doc.content_hash:
            raise PreviewError(409, f"the file of document {doc.id!r} ({doc.title}) changed since it was "
                                    "ingested: ingest it again to preview it")
    return path


def _render(path: Path, n: int, width: int, highlights: Sequence[str]) -> PageImage:
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    pdf = pdfium.PdfDocument(path)
    try:
        page = pdf[n - 1]
        w_pt, h_pt = page.get_size()
        scale = min(width / w_pt, MAX_SIDE_PX / h_pt, MAX_SIDE_PX / w_pt)
        image = page.render(scale=scale, may_draw_forms=False).to_pil().convert("RGBA")
        found = 0
        if highlights:
            text = page.get_textpage()
            try:
                words = text.get_text_range()
                overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
                draw = ImageDraw.Draw(overlay)
                for quote in highlights:
                    span = locate(words, quote)
                    if span is None:
                        continue
                    found += 1
                    for i in range(text.count_rects(span[0], span[1] - span[0])):
                        left, bottom, right, top = text.get_rect(i)
                        box = (left * scale - 2, (h_pt - top) * scale - 2, right * scale + 2,
                               (h_pt - bottom) * scale + 2)
                        draw.rectangle(box, fill=HIGHLIGHT, outline=OUTLINE, width=2)
                image = Image.alpha_composite(image, overlay)
            finally:
                text.close()
        out = io.BytesIO()
        image.convert("RGB").save(out, format="PNG", optimize=False)
        return PageImage(out.getvalue(), image.width, image.height, found)
    finally:
        pdf.close()


@dataclass(frozen=True)
class Section:
    text: str
    heading_path: tuple[str, ...]
    page: int | None
    start: int  # where the asked chunk's text starts in `text`
    end: int


def section(chunks: Sequence[ChunkRecord], chunk_id: str) -> Section | None:
    """The run of consecutive chunks around `chunk_id` under the same heading (or on the same page), joined
    without the words that overlapping chunks repeat, at most SECTION_CHARS characters around the chunk."""
    ordered = sorted(chunks, key=lambda c: c.ordinal)
    at = next((i for i, c in enumerate(ordered) if c.id == chunk_id), None)
    if at is None:
        return None
    own = ordered[at]

    def same(c: ChunkRecord) -> bool:
        return c.heading_path == own.heading_path and c.page == own.page

    lo = at
    while lo > 0 and same(ordered[lo - 1]):
        lo -= 1
    hi = at
    while hi + 1 < len(ordered) and same(ordered[hi + 1]):
        hi += 1
    text, start, end, reach = "", 0, 0, -1
    for i in range(lo, hi + 1):
        c = ordered[i]
        body = c.text
        if reach > c.char_start and len(body) == c.char_end - c.char_start:  # skip what the last chunk held
            body = body[reach - c.char_start:]
        elif text:
            body = "\n" + body
        if i == at:
            start = max(0, len(text) + len(body) - len(c.text))
            end = len(text) + len(body)
        text += body
        reach = max(reach, c.char_end)
    if len(text) > SECTION_CHARS:  # keep a window around the chunk
        first = max(0, min(start - (SECTION_CHARS - (end - start)) // 2, len(text) - SECTION_CHARS))
        text, start, end = text[first:first + SECTION_CHARS], start - first, min(end - first, SECTION_CHARS)
    return Section(text, own.heading_path, own.page, start, end)
