"""Tables and data files: CSV, JSON and XLSX, as text a question can find.

A row becomes one paragraph that names its columns ("Name: Ada Lovelace; Phone: 4711; Office: B2"), so every
chunk cut from a table still says what its values are. A spreadsheet gives one section per sheet (the sheet's
name as its heading); JSON gives one paragraph per record of a list of objects, else one line per value with
its key path ("server.port: 8080"). CSV encodings are detected as for plain text. XLSX is read with openpyxl
(read-only, values not formulas) after the same zip-bomb check as DOCX.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from index.errors import EncryptedError, ParseError
from ingest.document import ParsedDocument, Section
from ingest.parsers.docx import check_archive
from ingest.parsers.text import decode, normalise_newlines

MAX_CELL = 2000  # characters of one cell kept (a cell holding a whole document is cut, with a warning)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def rows_as_text(rows: Iterable[Sequence[Any]], warnings: list[str]) -> list[str]:
    """Each data row as "Header: value; ..." (the first non-empty row is the header); empty rows left out."""
    out: list[str] = []
    header: list[str] | None = None
    cut = 0
    for raw in rows:
        cells = [_cell(v) for v in raw]
        if not any(cells):
            continue
        if any(len(c) > MAX_CELL for c in cells):
            cut += 1
            cells = [c[:MAX_CELL] for c in cells]
        if header is None:
            header = [c or f"column {i + 1}" for i, c in enumerate(cells)]
            continue
        names = header + [f"column {i + 1}" for i in range(len(header), len(cells))]
        out.append("; ".join(f"{n}: {c}" for n, c in zip(names, cells, strict=False) if c))
    if header is not None and not out:  # a header alone is still text
        out.append("; ".join(header))
    if cut:
        warnings.append(f"{cut} row(s) with cells over {MAX_CELL} characters were cut")
    return out


def parse_csv(path: Path, data: bytes) -> ParsedDocument:
    text = normalise_newlines(decode(path, data))
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    warnings: list[str] = []
    try:
        lines = rows_as_text(csv.reader(io.StringIO(text), dialect), warnings)
    except csv.Error as exc:
        raise ParseError(path, f"not a valid CSV file: {exc}") from None
    return ParsedDocument(title=path.stem, kind="csv", sections=[Section("\n\n".join(lines))] if lines else [],
                          warnings=warnings)


def _flatten(value: Any, prefix: str, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            for v in value:
                parts: list[str] = []
                _flatten(v, "", parts)
                out.append((f"{prefix}: " if prefix else "") + "; ".join(parts))
        else:
            for i, v in enumerate(value):
                _flatten(v, f"{prefix}[{i}]", out)
    elif value is not None and _cell(value):
        out.append(f"{prefix}: {_cell(value)}" if prefix else _cell(value))


def parse_json(path: Path, data: bytes) -> ParsedDocument:
    try:
        value = json.loads(decode(path, data))
    except json.JSONDecodeError as exc:
        raise ParseError(path, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ParseError(path, "the JSON is nested too deeply to read") from None
    lines: list[str] = []
    _flatten(value, "", lines)
    title = path.stem
    if isinstance(value, dict) and isinstance(value.get("title"), str) and value["title"].strip():
        title = value["title"].strip()[:120]
    return ParsedDocument(title=title, kind="json", sections=[Section("\n\n".join(lines))] if lines else [])


def parse_xlsx(path: Path, data: bytes) -> ParsedDocument:
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise EncryptedError(path, "password-protected (or legacy binary .xls) Excel file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_archive(path, zf, "XLSX")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise ParseError(path, f"not a valid XLSX (zip) file: {exc}") from None
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    warnings: list[str] = []
    sections: list[Section] = []
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            for sheet in book.worksheets:
                lines = rows_as_text(sheet.iter_rows(values_only=True), warnings)
                if lines:
                    sections.append(Section("\n\n".join(lines), heading_path=(str(sheet.title),)))
            title = (book.properties.title or "").strip() or path.stem
        finally:
            book.close()
    except (InvalidFileException, KeyError, ValueError, TypeError, IndexError, EOFError, OSError,
            zipfile.BadZipFile) as exc:
        raise ParseError(path, f"not a readable XLSX workbook: {type(exc).__name__}: {exc}") from None
    return ParsedDocument(title=title[:120], kind="xlsx", sections=sections, warnings=warnings)
