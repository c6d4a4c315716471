"""Regenerate the small real files in tests/data (committed; run only to change them).

    python tests/data/build.py     # needs the dev extras (reportlab, python-docx)
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

PAGES = [
    "Page one explains the aurora procedure. The aurora procedure starts with a checklist.",
    "Page two covers the basalt budget. The basalt budget is reviewed every quarter by finance.",
    "Page three lists the cobalt contacts. Cobalt contacts are updated each spring.",
]


def text_pdf(path: Path, pages: list[str | None], title: str) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    c.setTitle(title)
    for text in pages:
        if text is None:  # an image-only page, like a scan: pixels, no text layer
            import io
            import struct
            import zlib

            from reportlab.lib.utils import ImageReader

            w = h = 64
            raw = b"".join(b"\0" + bytes((x * 4) % 256 for x in range(w)) for _ in range(h))
            png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                   + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
            c.drawImage(ImageReader(io.BytesIO(png)), 100, 400, 300, 300)
        else:
            y = 780
            for sentence in text.split(". "):
                c.drawString(60, y, sentence.strip().rstrip(".") + ".")
                y -= 18
        c.showPage()
    c.save()


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main() -> None:
    from pypdf import PdfReader, PdfWriter

    text_pdf(HERE / "multipage.pdf", list(PAGES), "Multipage Test Manual")
    text_pdf(HERE / "scanned-page.pdf", [PAGES[0], None], "Partly Scanned")
    text_pdf(HERE / "image-only.pdf", [None], "Only A Scan")
    writer = PdfWriter(clone_from=PdfReader(HERE / "multipage.pdf"))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="RC4-128")
    with open(HERE / "encrypted.pdf", "wb") as f:
        writer.write(f)
    data = (HERE / "multipage.pdf").read_bytes()
    (HERE / "truncated.pdf").write_bytes(data[: len(data) // 3])
    (HERE / "corrupt.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n")

    import docx

    d = docx.Document()
    d.core_properties.title = "Remote Work Policy"
    d.add_heading("Eligibility", level=1)
    d.add_paragraph("Employees may work remotely up to three days per week after their probation period.")
    d.add_heading("Equipment", level=2)
    d.add_paragraph("The company provides a monitor and a headset for the home office.")
    d.add_heading("Security", level=1)
    d.add_paragraph("Always connect through the VPN when working remotely.")
    d.save(str(HERE / "policy.docx"))

    (HERE / "notice-sjis.txt").write_bytes(
        "社内通知\n\n来週の月曜日は全社会議のため、午前中の業務はお休みです。会議は十時に始まります。\n"
        .encode("shift_jis"))
    (HERE / "notice-gb18030.txt").write_bytes(
        "公司通知\n\n下周一上午召开全体员工大会，会议于十点开始。请各部门提前安排好工作。\n".encode("gb18030"))
    (HERE / "empty.txt").write_bytes(b"  \n\n ")


if __name__ == "__main__":
    main()
