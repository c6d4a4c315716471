"""The contract every Store backend must keep. A backend's test module subclasses `StoreContract` and
provides the `open_store` fixture: `open_store(path, writable=True) -> Store` (same path, same data)."""

from __future__ import annotations

import numpy as np
import pytest

from index.errors import IndexMismatchError
from index.records import ChunkRecord, DocumentRecord, chunk_id, document_id
from tests.fakes import HashEmbedder

EMB = HashEmbedder(dim=64)


def make_doc(source: str, texts: list[str], content: str | None = None) -> tuple[DocumentRecord, list[ChunkRecord]]:
    doc_id = document_id(source)
    doc = DocumentRecord(id=doc_id, source=source, title=source.rsplit("/", 1)[-1], kind="text",
                         content_hash=content or "h-" + "|".join(texts), size=1, mtime_ns=1)
    chunks, pos = [], 0
    for i, t in enumerate(texts):
        chunks.append(ChunkRecord(id=chunk_id(source, pos, t), document_id=doc_id, ordinal=i, text=t,
                                  char_start=pos, char_end=pos + len(t), n_tokens=len(t.split()), page=i + 1,
                                  heading_path=("H",)))
        pos += len(t) + 2
    return doc, chunks


def put(store, source: str, texts: list[str]) -> DocumentRecord:
    doc, chunks = make_doc(source, texts)
    store.put(doc, chunks, EMB.embed_passages([c.embed_text for c in chunks]))
    return doc


def search_sources(store, query: str, k: int = 5) -> list[str]:
    return [h.source for h in store.search(EMB.embed_query(query), k)]


class StoreContract:
    def test_put_commit_search_and_reopen_give_the_same_results(self, open_store, tmp_path):
        store = open_store(tmp_path)
        put(store, "/d/a.txt", ["alpha apples are red", "alpha bananas are yellow"])
        put(store, "/d/b.txt", ["beta cherries are dark"])
        g = store.commit()
        assert g >= 1
        before = [(h.chunk.id, round(h.score, 5)) for h in store.search(EMB.embed_query("cherries dark"), 3)]
        assert store.search(EMB.embed_query("cherries dark"), 1)[0].source == "/d/b.txt"
        store.close()
        again = open_store(tmp_path)
        after = [(h.chunk.id, round(h.score, 5)) for h in again.search(EMB.embed_query("cherries dark"), 3)]
        assert before == after
        s = again.stats()
        assert (s.documents, s.chunks, s.generation) == (2, 3, g)
        hit = again.search(EMB.embed_query("apples red"), 1)[0]
        assert hit.chunk.page == 1 and hit.chunk.heading_path == ("H",) and hit.title == "a.txt"
        again.close()

    def test_uncommitted_changes_vanish_on_close_and_rollback(self, open_store, tmp_path):
        store = open_store(tmp_path)
        put(store, "/d/a.txt", ["kept text"])
        store.commit()
        put(store, "/d/b.txt", ["lost text"])
        store.rollback()
        assert store.sources() == ["/d/a.txt"]
        put(store, "/d/c.txt", ["also lost"])
        store.close()
        again = open_store(tmp_path)
        assert again.sources() == ["/d/a.txt"] and again.stats().chunks == 1
        again.close()

    def test_replacing_a_document_replaces_exactly_its_chunks(self, open_store, tmp_path):
        store = open_store(tmp_path)
        put(store, "/d/a.txt", ["one old", "two old", "three old"])
        put(store, "/d/b.txt", ["bee text"])
        store.commit()
        put(store, "/d/a.txt", ["one new"])
        store.commit()
        assert store.stats().chunks == 2
        assert "/d/b.txt" in search_sources(store, "bee text")
        assert [h.chunk.text for h in store.search(EMB.embed_query("one new"), 5)] == ["one new", "bee text"]
        store.close()

    def test_delete_removes_vectors_and_rows(self, open_store, tmp_path):
        store = open_store(tmp_path)
        a = put(store, "/d/a.txt", ["gone soon"])
        put(store, "/d/b.txt", ["stays here"])
        store.commit()
        assert store.delete(a.id) is True
        assert store.delete(a.id) is False
        store.commit()
        assert search_sources(store, "gone soon") == ["/d/b.txt"]
        assert store.document_by_source("/d/a.txt") is None
        store.close()

    def test_vectors_for_returns_stored_vectors_by_text_hash(self, open_store, tmp_path):
        store = open_store(tmp_path)
        doc, chunks = make_doc("/d/a.txt", ["shared passage"])
        vec = EMB.embed_passages([chunks[0].embed_text])
        store.put(doc, chunks, vec)
        found = store.vectors_for([chunks[0].text_hash, "nope"])
        assert list(found) == [chunks[0].text_hash]
        assert np.allclose(found[chunks[0].text_hash], vec[0], atol=1e-6)
        store.close()

    def test_identical_passages_collapse_into_one_hit(self, open_store, tmp_path):
        store = open_store(tmp_path)
        put(store, "/d/a.txt", ["the same words"])
        put(store, "/d/b.txt", ["the same words"])
        put(store, "/d/c.txt", ["other words entirely"])
        store.commit()
        hits = store.search(EMB.embed_query("the same words"), 2)
        assert hits[0].source in ("/d/a.txt", "/d/b.txt") and len(hits[0].also_in) == 1
        assert hits[1].source == "/d/c.txt"
        store.close()

    def test_opening_with_another_model_is_refused(self, open_store, tmp_path):
        store = open_store(tmp_path)
        put(store, "/d/a.txt", ["x"])
        store.commit()
        store.close()
        with pytest.raises(IndexMismatchError, match="test/hash-embedder"):
            open_store(tmp_path, model_id="other/model", dim=64)
        with pytest.raises(IndexMismatchError, match="dim 64"):
            open_store(tmp_path, dim=128)

    def test_keyword_search_ranks_by_bm25_in_english_and_cjk(self, open_store, tmp_path):
        store = open_store(tmp_path)
        put(store, "/d/en.txt", ["Receipts must be uploaded within thirty days", "Laptops are replaced often"])
        put(store, "/d/ja.txt", ["在宅勤務は週に三日まで認められます。", "通勤手当は月額二万円です。"])
        put(store, "/d/zh.txt", ["员工每月可以申请最多八天远程办公。"])
        store.commit()
        got = store.retrieve(None, "How long do I have to upload receipts?", 3)
        assert got.dense == [] and got.keyword[0].chunk.text.startswith("Receipts")
        assert store.retrieve(None, "在宅勤務", 1).keyword[0].source == "/d/ja.txt"
        assert store.retrieve(None, "远程办公几天", 1).keyword[0].source == "/d/zh.txt"
        assert store.retrieve(None, "?!", 3).keyword == []
        assert store.retrieve(None, 'quote" OR x', 3).keyword == []  # query syntax is never interpreted
        store.close()

    def test_filters_apply_before_ranking_in_both_paths(self, open_store, tmp_path):
        from index.store import SearchFilter

        store = open_store(tmp_path)
        for i in range(12):
            put(store, f"/pub/p{i}.txt", [f"holiday policy number {i} for everyone"])
        secret = put(store, "/hr/secret.txt", ["holiday policy for executives only, rarely matching"])
        store.commit()
        q = EMB.embed_query("holiday policy number")
        unfiltered = store.retrieve(q, "holiday policy number", 3)
        assert "/hr/secret.txt" not in [h.source for h in unfiltered.dense + unfiltered.keyword]
        only = SearchFilter(document_ids=frozenset({secret.id}))
        got = store.retrieve(q, "holiday policy number", 3, only)
        assert [h.source for h in got.dense] == ["/hr/secret.txt"] == [h.source for h in got.keyword]
        pub = store.retrieve(q, "executives", 5, SearchFilter(source_prefix="/pub/"))
        assert len(pub.dense) == 5 and all(h.source.startswith("/pub/") for h in pub.dense + pub.keyword)
        none = store.retrieve(q, "holiday", 5, SearchFilter(document_ids=frozenset()))
        assert none.dense == [] and none.keyword == []
        store.close()

    def test_access_lists_filter_before_ranking_and_changes_hold_from_the_next_commit(self, open_store, tmp_path):
        from index.store import SearchFilter

        store = open_store(tmp_path)
        acls = {"/a.txt": ("public",), "/b.txt": ("group:hr",), "/c.txt": ("user:alice", "group:legal"),
                "/d.txt": ("group:hr", "group:finance")}
        docs = {}
        for i, (source, acl) in enumerate(acls.items()):
            doc, chunks = make_doc(source, [f"salary review budget memo {i} " + "filler " * i])
            doc = DocumentRecord(**{**doc.__dict__, "acl": acl})
            store.put(doc, chunks, EMB.embed_passages([c.embed_text for c in chunks]))
            docs[source] = doc
        store.commit()
        assert store.document(docs["/c.txt"].id).acl == ("user:alice", "group:legal")
        q, text = EMB.embed_query("salary review budget memo"), "salary review budget memo"

        reader = open_store(tmp_path, writable=False)

        def visible(principals):
            got = reader.retrieve(q, text, 10, SearchFilter(principals=frozenset(principals)))
            assert {h.source for h in got.dense} == {h.source for h in got.keyword}
            return {h.source for h in got.dense}

        assert visible({"public"}) == {"/a.txt"}
        assert visible({"public", "group:hr"}) == {"/a.txt", "/b.txt", "/d.txt"}
        assert visible({"public", "user:alice"}) == {"/a.txt", "/c.txt"}
        assert visible(set()) == set()
        assert len(reader.retrieve(q, text, 10).dense) == 4  # no restriction
        assert store.set_acl(docs["/b.txt"].id, ("group:finance",)) and not store.set_acl("nope", ("public",))
        assert visible({"public", "group:hr"}) == {"/a.txt", "/b.txt", "/d.txt"}  # not committed yet
        store.commit()
        assert visible({"public", "group:hr"}) == {"/a.txt", "/d.txt"}
        assert visible({"group:finance"}) == {"/b.txt", "/d.txt"}
        reader.close()
        store.close()

    def test_a_reader_sees_new_generations_without_reopening(self, open_store, tmp_path):
        writer = open_store(tmp_path)
        put(writer, "/d/a.txt", ["first text"])
        writer.commit()
        reader = open_store(tmp_path, writable=False)
        assert reader.stats().chunks == 1
        put(writer, "/d/b.txt", ["second text here"])
        assert reader.stats().chunks == 1  # uncommitted work is invisible
        g = writer.commit()
        got = reader.retrieve(EMB.embed_query("second text here"), "second", 2)
        assert got.generation == g and got.dense[0].source == "/d/b.txt" and got.keyword[0].source == "/d/b.txt"
        writer.delete(writer.document_by_source("/d/a.txt").id)
        writer.commit()
        assert reader.sources() == ["/d/b.txt"]
        writer.close()
        reader.close()
