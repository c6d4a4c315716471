"""DOCX, read with the standard library: paragraphs in order, Word heading styles as the heading path.

The archive is checked before anything is inflated (entry count, total size, compression ratio), so a zip
bomb is refused instead of filling memory.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from pathlib import Path
from xml.etree import ElementTree as ET

from index.errors import EncryptedError, ParseError
from ingest.document import ParsedDocument, Section

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
MAX_UNCOMPRESSED = 256 * 1024 * 1024
MAX_RATIO = 200
MAX_ENTRIES = 10_000
_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|見出し|标题)\s*(\d)$", re.I)


def check_archive(path: Path, zf: zipfile.ZipFile, kind: str = "DOCX") -> None:
    """Refuse an Office archive before inflating it: too many entries, too large, or compressed too well."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ParseError(path, f"{kind} archive has {len(infos)} entries (limit {MAX_ENTRIES})")
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1
    if total > MAX_UNCOMPRESSED or total / packed > MAX_RATIO:
        raise ParseError(path, f"{kind} archive inflates to {total} bytes from {packed}: refused as a zip bomb")


def _style_level(p: ET.Element) -> int | None:
    style = p.find(f"{W}pPr/{W}pStyle")
    if style is None:
        return None
    name = (style.get(f"{W}val") or "").replace("-", "").strip()
    if name.lower() == "title":
        return 0
    m = _HEADING_STYLE.match(name)
    return int(m.group(1)) if m else None


# what a damaged archive or XML raises: bad zip structures, broken deflate data (zlib.error), unsupported or
# encrypted entries (NotImplementedError, RuntimeError), truncation, bad XML
_CORRUPT = (ET.ParseError, zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError,
            OSError)


def parse(path: Path, data: bytes) -> ParsedDocument:
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise EncryptedError(path, "password-protected (or legacy binary) Word file")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.LargeZipFile, *_CORRUPT) as exc:  # NotImplementedError: a zip version it cannot read
        raise ParseError(path, f"not a valid DOCX (zip) file: {exc}") from None
    with zf:
        check_archive(path, zf)
        try:
            body = ET.fromstring(zf.read("word/document.xml"))
        except KeyError:
            raise ParseError(path, "DOCX has no word/document.xml") from None
        except _CORRUPT as exc:
            raise ParseError(path, f"corrupt DOCX: {exc}") from None
        title = ""
        if "docProps/core.xml" in zf.namelist():
            try:
                node = ET.fromstring(zf.read("docProps/core.xml")).find(_DC_TITLE)
                title = (node.text or "").strip() if node is not None else ""
            except _CORRUPT:
                title = ""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    paras: list[str] = []

    def flush() -> None:
        if paras:
            sections.append(Section("\n\n".join(paras), heading_path=tuple(h for _, h in stack)))
            paras.clear()

    for p in body.iter(f"{W}p"):
        text = "".join(
            (t.text or "") if t.tag == f"{W}t" else ("\t" if t.tag == f"{W}tab" else "\n")
            for t in p.iter() if t.tag in (f"{W}t", f"{W}tab", f"{W}br")
        ).strip()
        if not text:
            continue
        level = _style_level(p)
        if level is None:
            paras.append(text)
            continue
        flush()
        if level == 0:
            title = title or text
            continue
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
        title = title or text
    flush()
    return ParsedDocument(title=title or path.stem, kind="docx", sections=sections)
