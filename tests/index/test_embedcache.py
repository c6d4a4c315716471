"""Query-time embedding reuse (index/embedders/cache.py) over the real bundled MiniLM."""

from __future__ import annotations

import threading

import numpy as np

from index.embedders.cache import CachingEmbedder, cached, similarities


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner, self.model_id, self.dim, self.tokenizer = inner, inner.model_id, inner.dim, inner.tokenizer
        self.texts = 0

    def embed_passages(self, texts):  # noqa: ANN001, ANN201
        self.texts += len(texts)
        return self.inner.embed_passages(texts)

    def embed_query(self, text):  # noqa: ANN001, ANN201
        self.texts += 1
        return self.inner.embed_query(text)


def test_cached_vectors_are_the_models_and_each_text_is_embedded_once(embedder):
    counting = Counting(embedder)
    fast = cached(counting, 100)
    assert isinstance(fast, CachingEmbedder) and fast.model_id == embedder.model_id and fast.dim == embedder.dim
    texts = ["Annual leave is 25 days.", "Badges open doors.", "Annual leave is 25 days."]
    first = fast.embed_passages(texts)
    assert counting.texts == 2  # the repeated text once
    assert np.allclose(first, embedder.embed_passages(texts), atol=1e-5)
    again = fast.embed_passages(["Badges open doors.", "Parental leave is 16 weeks."])
    assert counting.texts == 3 and np.allclose(again[0], first[1])
    q = fast.embed_query("How long is leave?")
    q[:] = 0  # a caller that scribbles on its vector does not change the cached one
    assert np.allclose(fast.embed_query("How long is leave?"), embedder.embed_query("How long is leave?"), atol=1e-5)
    assert counting.texts == 4
    scores = similarities(fast, "How long is leave?", texts)
    assert np.allclose(scores, embedder.embed_passages(texts) @ embedder.embed_query("How long is leave?"), atol=1e-5)
    assert cached(embedder, 0) is embedder


def test_the_cache_is_bounded_least_recently_used_out(embedder):
    counting = Counting(embedder)
    fast = CachingEmbedder(counting, 3)
    for t in ["a one", "b two", "c three"]:
        fast.embed_passages([t])
    fast.embed_passages(["a one"])  # used again: now the most recent
    fast.embed_passages(["d four"])  # pushes out "b two", the least recently used
    before = counting.texts
    fast.embed_passages(["a one", "c three", "d four"])
    assert counting.texts == before
    fast.embed_passages(["b two"])
    assert counting.texts == before + 1 and len(fast._passages) == 3


def test_concurrent_callers_get_the_same_vectors(embedder):
    fast = CachingEmbedder(embedder, 50)
    texts = [f"Sentence number {i} about leave." for i in range(20)]
    # one by one, as the workers ask: with bf16 autocast a vector depends a little on its batch's padding
    want = np.vstack([embedder.embed_passages([t]) for t in texts])
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(20):
            j = (i + offset) % 20
            if not np.allclose(fast.embed_passages([texts[j]])[0], want[j], atol=1e-5):
                errors.append(texts[j])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(fast._passages) == 20
