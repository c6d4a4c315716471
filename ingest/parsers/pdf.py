"""PDF with pypdf: text per page, page numbers kept. Pages with no usable text become warnings."""

from __future__ import annotations

import io
import logging
import unicodedata
from pathlib import Path

from index.errors import EncryptedError, ParseError
from ingest.document import ParsedDocument, Section

logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf reports recoverable damage at WARNING


def garbage_reason(text: str) -> str | None:
    """Why a page's extracted text is unusable, or None when it reads as text."""
    stripped = "".join(text.split())
    if not stripped:
        return "no extractable text (scanned or image-only page?)"
    bad = 0
    for ch in stripped:
        cat = unicodedata.category(ch)
        if ch == "\ufffd" or cat in ("Co", "Cc", "Cs", "Cn") or cat.startswith("Cf"):
            bad += 1
    if bad / len(stripped) > 0.3:
        return f"text extracts as garbage ({bad} of {len(stripped)} characters unreadable)"
    if stripped.count("(cid:") * 6 > len(stripped) * 0.3:
        return "text extracts as unmapped glyph ids (cid:...)"
    return None


def _limit(exc: Exception) -> str:
    """Which of pypdf's safety limits stopped it: inflating a stream, or the size of a page's content."""
    if "decompress" in str(exc).lower():
        return "a compressed stream inflates past the limit (a decompression bomb?)"
    return f"the page content is over pypdf's size limit ({exc})"


def parse(path: Path, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf import errors as pypdf_errors
    from pypdf.errors import DependencyError, FileNotDecryptedError

    # pypdf caps how far one stream may inflate (newer versions): a decompression bomb stops there
    bomb: tuple[type[Exception], ...] = tuple(
        e for e in (getattr(pypdf_errors, "LimitReachedError", None),) if e is not None)

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (DependencyError, NotImplementedError) as exc:
                raise EncryptedError(path, f"encrypted PDF that cannot be opened: {exc}") from None
            if not ok:
                raise EncryptedError(path, "encrypted PDF: it needs a password")
        n_pages = len(reader.pages)
        meta_title = ""
        try:
            if reader.metadata and reader.metadata.title:
                meta_title = str(reader.metadata.title).strip()
        except Exception:  # damaged info dictionaries are common and harmless
            meta_title = ""
        sections: list[Section] = []
        warnings: list[str] = []
        for number, page in enumerate(reader.pages, start=1):
            try:
                text = page.extract_text() or ""
            except bomb as exc:
                warnings.append(f"{path.name} page {number}: {_limit(exc)}; page skipped")
                continue
            except MemoryError:
                raise
            except Exception as exc:  # pypdf raises many kinds on a damaged page: skip that page only
                warnings.append(f"{path.name} page {number}: text extraction failed ({type(exc).__name__})")
                continue
            reason = garbage_reason(text)
            if reason:
                warnings.append(f"{path.name} page {number}: {reason}")
                continue
            sections.append(Section(_tidy(text), page=number))
    except ParseError:
        raise
    except FileNotDecryptedError:
        raise EncryptedError(path, "encrypted PDF: it needs a password") from None
    except bomb as exc:
        raise ParseError(path, _limit(exc)) from None
    except MemoryError:
        raise
    except Exception as exc:  # malformed input makes pypdf raise nearly anything (found by fuzzing)
        raise ParseError(path, f"corrupt or truncated PDF ({type(exc).__name__}: {exc})"[:500]) from None
    return ParsedDocument(title=meta_title or path.stem, kind="pdf", sections=sections, pages=n_pages,
                          warnings=warnings)


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip()
