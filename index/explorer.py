"""What is in an index, for people: documents, chunk lengths, pages without text, a 2-D map of the chunks.

Used by notebooks/index_explorer.ipynb and `quelle stats --detail`; reads through the Store protocol plus
`chunks_of` / `documents` / `vectors_for`, which every backend has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from index.records import ChunkRecord, DocumentRecord
from index.store import StoreReader

_NO_TEXT = re.compile(r"page (\d+): (.*)")


@dataclass(frozen=True)
class DocumentSummary:
    document: DocumentRecord
    chunks: int
    tokens: int
    empty_pages: tuple[int, ...]  # pages the parser found no usable text on


def all_documents(store: StoreReader) -> list[DocumentRecord]:
    docs, total = store.documents(0, 1000)
    while len(docs) < total:
        more, _ = store.documents(len(docs), 1000)
        if not more:
            break
        docs += more
    return docs


def empty_pages(doc: DocumentRecord) -> tuple[int, ...]:
    """Page numbers the PDF parser reported without usable text (image-only, garbage, extraction failure)."""
    return tuple(sorted({int(m.group(1)) for w in doc.warnings if (m := _NO_TEXT.search(w))}))


def summaries(store: StoreReader) -> list[DocumentSummary]:
    out = []
    for doc in all_documents(store):
        chunks = store.chunks_of(doc.id)
        out.append(DocumentSummary(doc, len(chunks), sum(c.n_tokens for c in chunks), empty_pages(doc)))
    return out


def chunks_with_documents(store: StoreReader) -> list[tuple[DocumentRecord, ChunkRecord]]:
    return [(doc, c) for doc in all_documents(store) for c in store.chunks_of(doc.id)]


def length_histogram(lengths: list[int], bins: int = 10) -> list[tuple[int, int, int]]:
    """(low, high, count) buckets of chunk lengths in tokens, for a text histogram."""
    if not lengths:
        return []
    counts, edges = np.histogram(np.asarray(lengths), bins=bins)
    return [(int(edges[i]), int(edges[i + 1]), int(counts[i])) for i in range(len(counts))]


def projection(store: StoreReader, limit: int = 5000) -> tuple[np.ndarray, list[str]]:
    """Chunk embeddings projected on their first two principal components (numpy SVD, no extra
    dependency), with each point's document title; at most `limit` chunks, evenly spread."""
    pairs = chunks_with_documents(store)
    if len(pairs) > limit:
        step = len(pairs) / limit
        pairs = [pairs[int(i * step)] for i in range(limit)]
    vectors = store.vectors_for(c.text_hash for _, c in pairs)
    keep = [(d, c) for d, c in pairs if c.text_hash in vectors]
    if len(keep) < 2:
        return np.zeros((len(keep), 2), dtype=np.float32), [d.title or d.source for d, _ in keep]
    x = np.stack([vectors[c.text_hash] for _, c in keep]).astype(np.float32)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T, [d.title or d.source.rsplit("/", 1)[-1] for d, _ in keep]


def use_cjk_font() -> str | None:
    """Make matplotlib draw Japanese and Chinese (document titles in legends) with Noto Sans CJK from the
    `noto-cjk-sans-otc` package (the notebooks extra), else with a CJK font the system has; the font's name,
    or None when there is none (the labels would be boxes: say so)."""
    import importlib.resources

    from matplotlib import font_manager, rcParams

    try:
        packaged = importlib.resources.files("noto_cjk_sans_otc").joinpath("NotoSansCJK-Regular.ttc")
        font_manager.fontManager.addfont(str(packaged))
    except (ModuleNotFoundError, FileNotFoundError, OSError, RuntimeError):
        pass
    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in ("Noto Sans CJK JP", "Noto Sans CJK SC", "IPAexGothic", "WenQuanYi Zen Hei", "Droid Sans Fallback"):
        if name in names:
            rcParams["font.sans-serif"] = [name, *rcParams["font.sans-serif"]]
            rcParams["font.family"] = "sans-serif"
            return name
    print('no CJK font found: Japanese and Chinese labels will show as boxes (pip install -e ".[notebooks]")')
    return None
