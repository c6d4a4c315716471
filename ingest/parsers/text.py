"""Plain text: the encoding is detected (BOM, UTF-8, then charset-normalizer), never assumed."""

from __future__ import annotations

import codecs
from pathlib import Path

from index.errors import ParseError
from ingest.document import ParsedDocument, Section

_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]


def decode(path: Path, data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:  # a BOM, then bytes that do not follow it (cut, or not text)
                raise ParseError(path, f"invalid {encoding.upper()} text after its byte-order mark "
                                       f"(at byte {exc.start}: {exc.reason})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\0" in data[:4096]:
        raise ParseError(path, "binary data, not text")
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError(path, "cannot detect the text encoding (not UTF-8, no known encoding fits)")
    return str(best)


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse(path: Path, data: bytes) -> ParsedDocument:
    text = normalise_newlines(decode(path, data)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first[:120] if 0 < len(first) <= 120 else path.stem
    return ParsedDocument(title=title, kind="text", sections=[Section(text)])
