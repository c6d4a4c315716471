"""Hostile and broken files, made at test time (nothing committed), plus real malformed PDFs not made by this
project: the ~60 test PDFs of pikepdf's source distribution (fetched with pip, cached)."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

CACHE = Path(os.environ.get("QUELLE_TEST_CACHE", Path.home() / ".cache" / "quelle-tests")) / "pikepdf"


def pikepdf_pdfs() -> list[Path]:
    """pikepdf's tests/resources/*.pdf (fuzz-found, damaged, encrypted, unusual); [] when pip cannot fetch."""
    done = CACHE / "resources"
    if not done.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                              "pikepdf", "-d", str(CACHE), "-q"], capture_output=True, text=True, timeout=600)
        sdists = sorted(CACHE.glob("pikepdf-*.tar.gz"))
        if run.returncode != 0 or not sdists:
            return []
        tmp = CACHE / "resources.tmp"
        tmp.mkdir(exist_ok=True)
        with tarfile.open(sdists[-1]) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and member.name.endswith(".pdf") and parts[1:3] == ("tests", "resources"):
                    f = tar.extractfile(member)
                    assert f is not None
                    (tmp / "_".join(parts[3:])).write_bytes(f.read())
        tmp.rename(done)
    return sorted(done.glob("*.pdf"))


def _pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF from numbered object bodies, with a correct cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref))
    return out.getvalue()


def _page_pdf(content: bytes, filters: bytes = b"") -> bytes:
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d %s>>\nstream\n" % (len(content), filters) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ])


def make_hostile(folder: Path, sample_pdf: Path) -> dict[str, str]:
    """Write the hostile files; returns {file name: what it is}."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    def put(name: str, data: bytes, what: str) -> None:
        (folder / name).write_bytes(data)
        made[name] = what

    good = sample_pdf.read_bytes()
    put("truncated.pdf", good[: len(good) // 3], "truncated PDF")
    rng = random.Random(7)
    for n in range(3):
        flipped = bytearray(good)
        for _ in range(200):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        put(f"bitflip-{n}.pdf", bytes(flipped), "bit-flipped PDF")
    put("not-a-pdf.pdf", b"\x89PNG\r\n\x1a\n" + os.urandom(4096), "random bytes named .pdf")
    put("empty.pdf", b"", "empty file")
    put("ref-loop.pdf", _pdf([  # the page tree is its own child
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]), "reference loop in the page tree")
    put("deep-nesting.pdf", _pdf([
        b"<< /Type /Catalog /Pages 2 0 R /Deep " + b"[" * 200_000 + b"]" * 200_000 + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]), "200,000 nested arrays")
    bomb = zlib.compressobj(6)
    packed = b"".join(bomb.compress(b"BT /F1 12 Tf 72 720 Td (A) Tj ET\n" * 32768) for _ in range(900))
    packed += bomb.flush()  # ~1 GB of content stream from a few MB
    put("bomb.pdf", _page_pdf(packed, b"/Filter /FlateDecode "), "decompression bomb (1 GB content stream)")
    text_ops = b"BT /F1 1 Tf " + b"(word word word word word word word word) Tj 0 -1 Td " * 400_000 + b"ET"
    put("enormous-page.pdf", _page_pdf(text_ops), "one page with 3.2 million words")
    put("invalid-utf8.txt", bytes(rng.randrange(128, 256) for _ in range(20000)), "invalid UTF-8")
    put("nested.html", b"<html><body>" + b"<div>" * 100_000 + b"deep" + b"</div>" * 100_000 + b"</body></html>",
        "100,000 nested divs")
    put("unclosed.html", b"<html><body>" + b"<table><tr><td>" * 50_000 + b"text", "50,000 unclosed tables")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as w:
            w.write(b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                    b'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>')
            block = b" " * (1 << 20)
            for _ in range(600):
                w.write(block)
            w.write(b"</w:t></w:r></w:p></w:body></w:document>")
    put("zip-bomb.docx", zbuf.getvalue(), "zip bomb DOCX (600 MB document.xml)")
    put("not-a-zip.docx", b"PK\x03\x04" + os.urandom(2048), "DOCX that is not a zip")
    fbuf = io.BytesIO()
    with zipfile.ZipFile(fbuf, "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
    future = bytearray(fbuf.getvalue())
    central = future.rindex(b"PK\x01\x02")
    future[central + 6:central + 8] = (111).to_bytes(2, "little")  # "needs zip version 11.1" (found by atheris)
    put("future-zip.docx", bytes(future), "DOCX in a zip version no reader knows")
    return made
