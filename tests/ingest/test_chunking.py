from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.records import embed_text
from index.text import sentence_spans
from ingest.chunking import Chunker, ChunkingConfig
from ingest.document import ParsedDocument, Section

WORDS = ["policy", "leave", "days", "approval", "manager", "receipt", "the", "a", "within", "thirty",
         "supercalifragilisticexpialidocious", "Ledgerly", "2,000", "EUR", "在宅勤務", "报销", "three"]
ENDS = [". ", "! ", "? ", "。", "！", "？", "\n\n", " ", ", "]

pieces = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(ENDS)), min_size=0, max_size=400)
sections = st.lists(
    st.tuples(pieces, st.one_of(st.none(), st.integers(1, 50)), st.lists(st.sampled_from(WORDS), max_size=3)),
    min_size=1, max_size=5,
)


def _doc(spec) -> ParsedDocument:
    secs = []
    for words, page, heading in spec:
        text = "".join(w + e for w, e in words).strip() or "x"
        secs.append(Section(text, page=page, heading_path=tuple(heading)))
    return ParsedDocument(title="T", kind="text", sections=secs)


def check_invariants(doc: ParsedDocument, chunks, tokenizer, config: ChunkingConfig) -> None:
    text = doc.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(text)
    prev_start = -1
    for c in chunks:
        assert c.text == text[c.char_start:c.char_end]  # spans are exact
        assert c.char_start > prev_start  # in order
        prev_start = c.char_start
        assert c.text == c.text.strip() and c.text
        n = len(tokenizer.spans(c.text))
        assert n == c.n_tokens
        assert n <= config.max_tokens  # within budget, counted in the model's own tokens
        assert len(tokenizer.spans(embed_text(c.heading_path, c.text))) <= tokenizer.max_tokens
        for i in range(c.char_start, c.char_end):
            covered[i] = True
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"uncovered characters at {missing[:10]}"
    # a chunk never crosses a section: page and heading path are those of the section that holds it
    offset = 0
    bounds = []
    for s in doc.sections:
        bounds.append((offset, offset + len(s.text), s.page, s.heading_path))
        offset += len(s.text) + len(doc.SEPARATOR)
    for c in chunks:
        a, b, page, path = next(x for x in bounds if x[0] <= c.char_start < x[1])
        assert c.char_end <= b and c.page == page and c.heading_path == path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=sections, max_tokens=st.integers(16, 250), overlap_frac=st.floats(0, 0.45))
def test_chunks_cover_the_text_in_order_and_fit_the_budget(tokenizer, spec, max_tokens, overlap_frac):
    config = ChunkingConfig(max_tokens, min(int(max_tokens * overlap_frac), max_tokens // 2 - 1))
    doc = _doc(spec)
    chunks = Chunker(tokenizer, config).chunk(doc, "/src/doc.txt", "d1")
    check_invariants(doc, chunks, tokenizer, config)


def test_default_budget_and_overlap(tokenizer):
    text = " ".join(f"Sentence number {i} talks about the expense policy in some detail." for i in range(200))
    doc = ParsedDocument("T", "text", [Section(text)])
    config = ChunkingConfig()
    chunks = Chunker(tokenizer, config).chunk(doc, "/s", "d")
    assert len(chunks) > 5
    assert max(c.n_tokens for c in chunks) <= 250
    assert min(c.n_tokens for c in chunks[:-1]) > 200  # packed, not tiny
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.char_start < a.char_end  # overlapping
        overlap_tokens = len(tokenizer.spans(doc.text[b.char_start:a.char_end]))
        assert 0 < overlap_tokens <= config.overlap


def test_cjk_sentences_break_at_full_stops(tokenizer):
    sentence = "在宅勤務は週に三日まで認められます。"
    text = sentence * 40
    doc = ParsedDocument("T", "text", [Section(text)])
    chunks = Chunker(tokenizer, ChunkingConfig(max_tokens=64, overlap=0)).chunk(doc, "/s", "d")
    assert len(chunks) > 1
    for c in chunks:
        assert c.text.endswith("。") and c.text.startswith("在")
    check_invariants(doc, chunks, tokenizer, ChunkingConfig(64, 0))


def test_sentence_spans_english_and_cjk():
    text = "First one. Second? Third!\n\nNew para 「引用。」次の文。最后一句！"
    spans = [text[a:b] for a, b in sentence_spans(text)]
    assert spans == ["First one.", "Second?", "Third!", "New para 「引用。」", "次の文。", "最后一句！"]


def test_answers_skip_a_heading_line_but_not_a_wrapped_line():
    text = ("Leave and time off\nEvery full-time employee receives 25 days of paid annual leave per\n"
            "calendar year. Sick leave\nis paid in full.\n3.2 Parental leave\n20 weeks at full pay.\n"
            "This sentence is wrapped after a long line of ordinary running text that goes\nOn in capitals.")
    spans = [text[a:b] for a, b in sentence_spans(text, skip_headings=True)]
    assert spans == ["Every full-time employee receives 25 days of paid annual leave per\ncalendar year.",
                     "Sick leave\nis paid in full.", "20 weeks at full pay.",
                     "This sentence is wrapped after a long line of ordinary running text that goes\nOn in capitals."]
    assert [text[a:b] for a, b in sentence_spans(text)][0].startswith("Leave and time off\nEvery")  # chunking


def test_a_sentence_longer_than_the_budget_is_cut_between_tokens(tokenizer):
    text = "word " * 1000 + "漢字" * 300
    doc = ParsedDocument("T", "text", [Section(text.strip())])
    config = ChunkingConfig(max_tokens=50, overlap=10)
    chunks = Chunker(tokenizer, config).chunk(doc, "/s", "d")
    check_invariants(doc, chunks, tokenizer, config)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        ChunkingConfig(max_tokens=100, overlap=60)
    with pytest.raises(ValueError, match="at least 16"):
        ChunkingConfig(max_tokens=4)


def test_japanese_and_chinese_sections_may_take_their_own_budget(tokenizer):
    ja = "在宅勤務は週に三日まで認められます。" * 30
    en = "Remote work is allowed up to three days per week. " * 30
    doc = ParsedDocument("T", "text", [Section(ja, heading_path=("A",)), Section(en, heading_path=("B",))])
    chunks = Chunker(tokenizer, ChunkingConfig(max_tokens=40, overlap=0, cjk_max_tokens=120)).chunk(doc, "/s", "d")
    ja_sizes = [c.n_tokens for c in chunks if c.heading_path == ("A",)]
    en_sizes = [c.n_tokens for c in chunks if c.heading_path == ("B",)]
    assert max(ja_sizes) > 40 and max(ja_sizes) <= 120 and max(en_sizes) <= 40
    plain = Chunker(tokenizer, ChunkingConfig(max_tokens=40, overlap=0)).chunk(doc, "/s", "d")
    assert max(c.n_tokens for c in plain) <= 40
