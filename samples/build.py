"""Render the sample handbook (content.py) as PDF, HTML, Markdown and DOCX into samples/handbook/.

    python samples/build.py      # needs the dev extras (reportlab, python-docx)

The rendered files are committed, so nobody needs to run this to try Quelle.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import content  # noqa: E402

OUT = HERE / "handbook"


def write_pdf(path: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    pdfmetrics.registerFont(UnicodeCIDFont("HeiseiMin-W3"))
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    styles = getSampleStyleSheet()
    story = []
    for i, (heading, paragraphs) in enumerate(content.HANDBOOK_PDF):
        font = {4: "HeiseiMin-W3", 5: "STSong-Light"}.get(i)
        h = ParagraphStyle("h", parent=styles["Heading1"], fontName=font or "Helvetica-Bold",
                           wordWrap="CJK" if font else None)
        b = ParagraphStyle("b", parent=styles["BodyText"], fontName=font or "Helvetica",
                           wordWrap="CJK" if font else None, leading=16)
        story.append(Paragraph(html.escape(heading), h))
        for para in paragraphs:
            story += [Paragraph(html.escape(para), b), Spacer(1, 6)]
        if i < len(content.HANDBOOK_PDF) - 1:
            story.append(PageBreak())
    doc = SimpleDocTemplate(str(path), pagesize=A4, title="Kestrel Labs Employee Handbook",
                            author="Kestrel Labs People team", invariant=1)
    doc.build(story)


def html_page(title: str, sections: list[tuple[str, list[str]]], lang: str) -> str:
    body = "\n".join(
        f"<h2>{html.escape(h)}</h2>\n" + "\n".join(f"<p>{html.escape(p)}</p>" for p in ps) for h, ps in sections
    )
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body {{ font-family: sans-serif; }} .menu {{ display: flex; }}</style>
<script>window.analytics = {{ page: "policy" }};</script></head>
<body>
<nav class="menu"><a href="/">Intranet home</a> | <a href="/hr">HR</a> | <a href="/it">IT</a></nav>
<header><p>Kestrel Labs intranet</p></header>
<main>
<h1>{html.escape(title)}</h1>
{body}
</main>
<footer><p>© Kestrel Labs. Internal use only.</p></footer>
</body>
</html>
"""


def write_docx(path: Path, spec: dict) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = spec["title"]
    d.core_properties.author = "Kestrel Labs Finance"
    d.add_heading(spec["title"], level=0)
    for heading, paragraphs in spec["sections"]:
        d.add_heading(heading, level=1)
        for para in paragraphs:
            d.add_paragraph(para)
    d.save(str(path))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "ja").mkdir(exist_ok=True)
    (OUT / "zh").mkdir(exist_ok=True)
    write_pdf(OUT / "employee-handbook.pdf")
    sec = content.IT_SECURITY_HTML
    (OUT / "it-security-policy.html").write_text(html_page(sec["title"], sec["sections"], "en"), encoding="utf-8")
    write_docx(OUT / "travel-and-expenses.docx", content.EXPENSES_DOCX)
    (OUT / "onboarding.md").write_text(content.ONBOARDING_MD, encoding="utf-8")
    (OUT / "ja" / "tokyo-office-guide.md").write_text(content.TOKYO_MD, encoding="utf-8")
    sh = content.SHANGHAI_HTML
    (OUT / "zh" / "shanghai-office-guide.html").write_text(html_page(sh["title"], sh["sections"], "zh-CN"),
                                                          encoding="utf-8")


if __name__ == "__main__":
    main()
