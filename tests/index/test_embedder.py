from __future__ import annotations

import numpy as np
import pytest

from index.errors import ConfigError


def test_vectors_are_normalised_and_the_model_is_recorded(embedder):
    assert embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2" and embedder.dim == 384
    vecs = embedder.embed_passages(["Annual leave is 25 days.", "在宅勤務は週に三日まで。", "x" * 5000])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("text", ["How many days of leave?", "出差餐补标准是多少？", "long " * 600])
def test_the_fast_query_path_gives_the_same_vector_as_encode(embedder, text):
    fast = embedder.embed_query(text)
    slow = embedder._encode([text])[0]
    assert fast.shape == (384,) and float(fast @ slow) > 0.9999


def test_tokenizer_spans_are_character_offsets(embedder):
    text = "Per diem: 80 EUR. 在宅勤務"
    spans = embedder.tokenizer.spans(text)
    assert spans[0] == (0, 3) and all(0 <= a < b <= len(text) for a, b in spans)
    assert embedder.tokenizer.max_tokens == 254


def test_an_unknown_model_is_a_clear_error(tmp_path):
    from index.embedders.sbert import SentenceTransformerEmbedder

    with pytest.raises(ConfigError, match="cannot load embedding model"):
        SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))


def test_query_and_passage_prefixes_follow_the_model(embedder, tmp_path):
    from sentence_transformers import SentenceTransformer

    from index.embedders.base import model_prefixes
    from index.embedders.sbert import SentenceTransformerEmbedder

    assert model_prefixes("intfloat/multilingual-e5-small", {}) == ("query: ", "passage: ")
    assert model_prefixes("intfloat/e5-base-v2", {}) == ("query: ", "passage: ")
    assert model_prefixes("intfloat/multilingual-e5-large-instruct", {}) == ("", "")
    assert model_prefixes("BAAI/bge-m3", {}) == ("", "")
    assert model_prefixes("BAAI/bge-small-en-v1.5", {})[0].startswith("Represent this sentence")
    assert model_prefixes("/models/all-MiniLM-L6-v2", {}) == ("", "")
    assert model_prefixes("any", {"query": "q: ", "document": "d: "}) == ("q: ", "d: ")
    assert (embedder.query_prefix, embedder.passage_prefix) == ("", "")

    # a real local model whose configuration carries its prompts; another named like an E5 model
    weights = embedder._model
    with_prompts = tmp_path / "with-prompts"
    SentenceTransformer(modules=list(weights), prompts={"query": "q: ", "document": "d: "}).save(str(with_prompts))
    loaded = SentenceTransformerEmbedder(str(with_prompts))
    assert (loaded.query_prefix, loaded.passage_prefix) == ("q: ", "d: ")
    e5_like = tmp_path / "models" / "multilingual-e5-small"
    weights.save(str(e5_like))
    loaded = SentenceTransformerEmbedder(str(e5_like))
    assert (loaded.query_prefix, loaded.passage_prefix) == ("query: ", "passage: ")
    prefixed, bare = embedder.embed_passages(["query: vacation days", "vacation days"])
    got = loaded.embed_query("vacation days")
    assert float(got @ prefixed) > 0.9999 and float(got @ bare) < 0.999  # the prefix was applied
    explicit = SentenceTransformerEmbedder(str(e5_like), query_prefix="", passage_prefix="")
    assert (explicit.query_prefix, explicit.passage_prefix) == ("", "")


def test_precision_follows_the_hardware_and_refuses_what_it_cannot_run():
    from index.embedders.base import auto_batch_size, cpu_has_bf16, resolve_precision

    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("auto", "cuda:0") == "fp16" and resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="bf16 is the CPU path"):
        resolve_precision("bf16", "cuda")
    with pytest.raises(ConfigError, match="unknown embedding precision 'int4'"):
        resolve_precision("int4", "cpu")
    assert auto_batch_size(32, "cpu") == 32


def test_bf16_vectors_match_fp32(embedder):
    """bf16 runs on any CPU (emulated where it has no bf16 units, so only `auto` picks it where it has)."""
    from index.embedders.sbert import SentenceTransformerEmbedder

    bf16 = SentenceTransformerEmbedder(precision="bf16")
    assert bf16.precision == "bf16"
    texts = ["Annual leave is 25 days per calendar year.", "Badges must be worn visibly at all times.",
             "在宅勤務は週に三日まで認められます。"]
    cos = (bf16.embed_passages(texts) * embedder.embed_passages(texts)).sum(axis=1)
    assert cos.min() > 0.999, cos
    q = "How many days of leave do I get?"
    assert float(bf16.embed_query(q) @ embedder.embed_query(q)) > 0.999
    # queries run on a bf16 copy of the weights (half the bytes to read per query), passages on fp32 ones
    import torch

    assert next(bf16._query_model.parameters()).dtype == torch.bfloat16
    assert next(bf16._model.parameters()).dtype == torch.float32


def test_the_precision_setting_is_checked():
    from pydantic import ValidationError

    from service.config import Settings

    with pytest.raises(ValidationError, match="embed_precision"):
        Settings(_env_file=None, embed_precision="int4")
