"""Parsers, in a registry keyed by file suffix. A parser is `Callable[[Path, bytes], ParsedDocument]`.

Each raises `ParseError` (from index.errors) naming the file and the problem; a document with no usable text
at all is a `NoTextError`, never a silent empty document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from index.errors import NoTextError, ParseError
from ingest.document import ParsedDocument
from ingest.parsers import docx, html, markdown, pdf, tables, text

log = logging.getLogger(__name__)

Parser = Callable[[Path, bytes], ParsedDocument]

PARSERS: dict[str, Parser] = {
    ".pdf": pdf.parse,
    ".html": html.parse,
    ".htm": html.parse,
    ".xhtml": html.parse,
    ".md": markdown.parse,
    ".markdown": markdown.parse,
    ".txt": text.parse,
    ".text": text.parse,
    ".rst": text.parse,
    ".docx": docx.parse,
    ".csv": tables.parse_csv,
    ".tsv": tables.parse_csv,
    ".json": tables.parse_json,
    ".xlsx": tables.parse_xlsx,
}


def supported(path: Path) -> bool:
    return path.suffix.lower() in PARSERS


def parse(path: Path, data: bytes | None = None) -> ParsedDocument:
    """Parse one file; `data` is its bytes when the caller already read them."""
    parser = PARSERS.get(path.suffix.lower())
    if parser is None:
        raise ParseError(path, f"unsupported file type {path.suffix or '(none)'!r}")
    if data is None:
        data = path.read_bytes()
    doc = parser(path, data)
    doc.sections = [s for s in doc.sections if s.text.strip()]
    if not doc.sections:
        detail = "; ".join(doc.warnings) if doc.warnings else "the file is empty"
        raise NoTextError(path, f"no usable text ({detail})")
    return doc


def parse_outcome(path: Path, data: bytes) -> ParsedDocument | ParseError:
    """Parse one file, every failure classified: a ParseError is returned (not raised), a parser bug on a
    strange file becomes an "unexpected error" one. MemoryError propagates (the caller knows its limit)."""
    try:
        return parse(path, data)
    except ParseError as exc:
        return exc
    except MemoryError:
        raise
    except RecursionError:
        return ParseError(path, "the file is nested too deeply to parse")
    except Exception as exc:  # a parser bug on a strange file must not stop the batch
        log.exception("unexpected error parsing %s", path)
        return ParseError(path, f"unexpected error ({type(exc).__name__}: {exc})")
