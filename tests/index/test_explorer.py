"""index/explorer.py on a real index of the sample handbook and tests/data."""

from __future__ import annotations

import numpy as np

from index import explorer
from index.embedded import FaissSqliteStore


def test_summaries_lengths_empty_pages_and_projection(built_index):
    with FaissSqliteStore(built_index, model_id=None, dim=None, writable=False) as store:
        stats = store.stats()
        summaries = explorer.summaries(store)
        assert len(summaries) == stats.documents
        assert sum(s.chunks for s in summaries) == stats.chunks
        by_name = {s.document.source.rsplit("/", 1)[-1]: s for s in summaries}
        assert by_name["scanned-page.pdf"].empty_pages == (2,)
        assert by_name["multipage.pdf"].empty_pages == ()
        lengths = [c.n_tokens for _, c in explorer.chunks_with_documents(store)]
        assert sum(n for _, _, n in explorer.length_histogram(lengths, bins=7)) == len(lengths)
        xy, labels = explorer.projection(store)
        assert xy.shape == (stats.chunks, 2) and len(labels) == stats.chunks
        assert np.isfinite(xy).all() and xy[:, 0].std() >= xy[:, 1].std() > 0  # principal axes, in order
        few, _ = explorer.projection(store, limit=5)
        assert few.shape == (5, 2)
