from __future__ import annotations

from pathlib import Path

import pytest

from index.errors import EncryptedError, NoTextError, ParseError
from ingest.parsers import parse
from ingest.parsers.pdf import garbage_reason
from tests.conftest import DATA, SAMPLES


def test_pdf_keeps_text_per_page_and_title():
    doc = parse(DATA / "multipage.pdf")
    assert doc.kind == "pdf" and doc.pages == 3 and doc.title == "Multipage Test Manual"
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert "aurora procedure" in doc.sections[0].text
    assert "basalt budget" in doc.sections[1].text
    assert "cobalt contacts" in doc.sections[2].text
    assert doc.warnings == []


def test_pdf_image_only_page_is_a_warning_naming_file_and_page():
    doc = parse(DATA / "scanned-page.pdf")
    assert [s.page for s in doc.sections] == [1]
    assert doc.warnings == ["scanned-page.pdf page 2: no extractable text (scanned or image-only page?)"]


def test_pdf_with_no_text_at_all_is_an_error_not_an_empty_document():
    with pytest.raises(NoTextError, match=r"image-only.pdf.*page 1"):
        parse(DATA / "image-only.pdf")


@pytest.mark.parametrize("name, error, message", [
    ("encrypted.pdf", EncryptedError, "needs a password"),
    ("truncated.pdf", ParseError, "corrupt or truncated PDF"),
    ("corrupt.pdf", ParseError, "corrupt or truncated PDF"),
])
def test_bad_pdfs_fail_with_a_clear_error_naming_the_file(name, error, message):
    with pytest.raises(error, match=message) as info:
        parse(DATA / name)
    assert name in str(info.value)


def test_garbage_text_is_detected():
    assert garbage_reason("") is not None
    assert garbage_reason("\ue000\ue001\ue002\ue003 \ufffd\ufffd") is not None  # private-use glyphs
    assert garbage_reason("(cid:12)(cid:13)(cid:14)(cid:15)") is not None
    assert garbage_reason("An ordinary sentence of text.") is None
    assert garbage_reason("在宅勤務は週に三日まで認められます。") is None


def test_html_keeps_main_text_title_and_headings_only():
    doc = parse(DATA / "page.html")
    assert doc.title == "Incident Handbook"
    text = doc.text
    assert "page the on-call engineer" in text and "SEV3: a minor issue" in text
    for junk in ("secretTracking", "Menu item", "Copyright footer", "color: red"):
        assert junk not in text
    paths = {s.heading_path for s in doc.sections}
    assert ("Incident Handbook", "Severity levels", "Escalation") in paths
    assert ("Incident Handbook", "Postmortems") in paths


def test_html_without_main_keeps_body_minus_navigation(tmp_path: Path):
    p = tmp_path / "x.html"
    p.write_text("<html><body><nav>skip me</nav><h1>T</h1><p>Keep this.</p><script>x()</script></body></html>")
    doc = parse(p)
    assert doc.text == "Keep this." and doc.title == "T"


def test_markdown_headings_front_matter_and_code_fences():
    doc = parse(DATA / "notes.md")
    assert doc.title == "Release Notes"
    assert "author: test" not in doc.text
    assert "# this is a comment in code" in doc.text  # not taken for a heading
    paths = [s.heading_path for s in doc.sections]
    assert paths == [
        ("Release Notes",), ("Release Notes", "Version 2.0"), ("Release Notes", "Setext Heading"),
        ("Release Notes", "Setext Heading", "Fixes"),
    ]


@pytest.mark.parametrize("name, expected", [
    ("notice-sjis.txt", "来週の月曜日は全社会議のため"),
    ("notice-gb18030.txt", "下周一上午召开全体员工大会"),
])
def test_text_encoding_is_detected_not_assumed(name, expected):
    raw = (DATA / name).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    doc = parse(DATA / name)
    assert expected in doc.text


def test_utf8_bom_and_utf16_text(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes("\ufeffHello BOM".encode())
    (tmp_path / "b.txt").write_bytes("Bonjour à tous".encode("utf-16"))
    assert parse(tmp_path / "a.txt").text == "Hello BOM"
    assert parse(tmp_path / "b.txt").text == "Bonjour à tous"
    # a byte-order mark, then bytes that do not follow it (found by atheris): an error naming the encoding
    (tmp_path / "cut.md").write_bytes(b"\xfe\xff" + b"\xff" * 6 + b"A")
    (tmp_path / "bad32.txt").write_bytes(b"\xff\xfe\x00\x00" + b"\xff\xff\xff\xff")
    with pytest.raises(ParseError, match=r"cut.md: invalid UTF-16 text after its byte-order mark"):
        parse(tmp_path / "cut.md")
    with pytest.raises(ParseError, match=r"bad32.txt: invalid UTF-32 text"):
        parse(tmp_path / "bad32.txt")


def test_empty_text_is_an_error():
    with pytest.raises(NoTextError, match="empty.txt"):
        parse(DATA / "empty.txt")


def test_docx_paragraphs_headings_and_title():
    doc = parse(DATA / "policy.docx")
    assert doc.title == "Remote Work Policy"
    assert [s.heading_path for s in doc.sections] == [("Eligibility",), ("Eligibility", "Equipment"), ("Security",)]
    assert "three days per week" in doc.sections[0].text


def test_docx_zip_bomb_and_non_zip_are_refused(tmp_path: Path):
    import zipfile

    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", b"<a>" + b"0" * 50_000_000 + b"</a>")
    with pytest.raises(ParseError, match="zip bomb"):
        parse(bomb)
    fake = tmp_path / "fake.docx"
    fake.write_bytes(b"this is not a zip")
    with pytest.raises(ParseError, match="not a valid DOCX"):
        parse(fake)


def test_unsupported_type_is_a_parse_error(tmp_path: Path):
    p = tmp_path / "image.png"
    p.write_bytes(b"\x89PNG")
    with pytest.raises(ParseError, match="unsupported file type"):
        parse(p)


def test_sample_corpus_parses_in_every_format_and_language():
    kinds = {}
    for path in sorted(SAMPLES.rglob("*")):
        if path.is_file():
            doc = parse(path)
            kinds[doc.kind] = doc
            assert not doc.warnings, doc.warnings
    assert set(kinds) == {"pdf", "html", "markdown", "docx"}
    pdf = parse(SAMPLES / "employee-handbook.pdf")
    assert "在宅勤務" in pdf.sections[4].text and pdf.sections[4].page == 5
    assert "远程办公" in pdf.sections[5].text and pdf.sections[5].page == 6


def test_html_regions_marked_by_role_or_hidden_end_with_their_element(tmp_path: Path):
    p = tmp_path / "sphinx.html"
    p.write_text('<html><head><title>Guide</title></head><body>'
                 '<div class="related" role="navigation"><h3>Navigation</h3><ul><li>index</li></ul></div>'
                 '<div class="body" role="main"><h1>Managing Packages</h1><p>Upload with dput.</p>'
                 '<div hidden><p>secret hidden text</p></div><p>Then wait for the queue.</p></div>'
                 '<div class="footer">Footer words</div></body></html>')
    doc = parse(p)
    assert doc.text == "Upload with dput.\n\nThen wait for the queue."
    assert doc.sections[0].heading_path == ("Managing Packages",)


def test_real_sphinx_html_from_debian_keeps_its_text():
    from tests.conftest import debian_file

    page = debian_file("developers-reference", "pkgs.html")
    doc = parse(page)
    assert doc.title.startswith("5. Managing Packages") and len(doc.text) > 50_000
    assert "Navigation" not in doc.text[:200]
    assert any(s.heading_path[:1] == ("5. Managing Packages",) for s in doc.sections)


def test_csv_rows_name_their_columns_whatever_the_delimiter_and_encoding(tmp_path: Path):
    p = tmp_path / "phones.csv"
    p.write_bytes("Name;Phone;Office\nAda Lovelace;4711;B2\n;;\n山田 太郎;4712;東館 3F\n".encode("shift_jis"))
    doc = parse(p)
    assert doc.kind == "csv" and doc.title == "phones"
    assert doc.text.split("\n\n") == ["Name: Ada Lovelace; Phone: 4711; Office: B2",
                                      "Name: 山田 太郎; Phone: 4712; Office: 東館 3F"]


def test_json_records_and_nested_values_become_lines_with_their_keys(tmp_path: Path):
    import json

    p = tmp_path / "config.json"
    p.write_text(json.dumps({"title": "Build servers", "server": {"host": "ci-01", "port": 8080, "tags": ["a", "b"]},
                             "owners": [{"name": "Ada", "team": "infra"}, {"name": "Bo", "team": "web"}]}))
    doc = parse(p)
    assert doc.kind == "json" and doc.title == "Build servers"
    assert doc.text.split("\n\n") == ["title: Build servers", "server.host: ci-01", "server.port: 8080",
                                      "server.tags[0]: a", "server.tags[1]: b", "owners: name: Ada; team: infra",
                                      "owners: name: Bo; team: web"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ParseError, match="not valid JSON: .* line 2"):
        parse(bad)


def test_xlsx_sheets_become_sections_and_bombs_and_fakes_are_refused(tmp_path: Path):
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "Rooms"
    book.active.append(["Room", "Seats", "Projector"])
    book.active.append(["Basalt", 12, "yes"])
    people = book.create_sheet("People")
    people.append(["Name", "Phone"])
    people.append(["Ada Lovelace", 4711])
    p = tmp_path / "office.xlsx"
    book.save(p)
    doc = parse(p)
    assert doc.kind == "xlsx" and [s.heading_path for s in doc.sections] == [("Rooms",), ("People",)]
    assert [s.text for s in doc.sections] == ["Room: Basalt; Seats: 12; Projector: yes",
                                              "Name: Ada Lovelace; Phone: 4711"]
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", b"<a>" + b"0" * 50_000_000 + b"</a>")
    with pytest.raises(ParseError, match="XLSX archive inflates .* zip bomb"):
        parse(bomb)
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(b"not a zip at all")
    with pytest.raises(ParseError, match="not a valid XLSX"):
        parse(fake)
    legacy = tmp_path / "old.xlsx"
    legacy.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(EncryptedError):
        parse(legacy)
