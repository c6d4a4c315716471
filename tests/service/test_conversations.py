"""Bounded conversation memory: sinks plus a sliding window, like StreamingLLM's attention sinks."""

from __future__ import annotations

import tracemalloc

from service.conversations import ConversationStore, Memory, Turn, rewrite_rule
from service.prompts import build_prompt


def fill(store: ConversationStore, sid: str, n: int) -> None:
    for i in range(n):
        store.append(sid, f"Question number {i:04d} about the travel policy?",
                     f"Answer number {i:04d}: the travel policy says something specific [1].")


def test_memory_keeps_the_sinks_and_the_most_recent_turns(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite", sink_turns=1, window_turns=4, history_tokens=10_000)
    fill(store, "s", 30)
    mem = store.memory("s")
    assert [t.idx for t in mem.turns] == [0, 26, 27, 28, 29] and mem.total_turns == 30
    assert store.stored_turns("s") == 5  # the turns in between are gone, not just hidden
    again = ConversationStore(tmp_path / "c.sqlite", sink_turns=1, window_turns=4, history_tokens=10_000)
    assert again.memory("s") == mem  # persisted


def test_the_window_also_fits_the_token_budget(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite", sink_turns=1, window_turns=10, history_tokens=120)
    fill(store, "s", 12)
    mem = store.memory("s")
    assert mem.turns[0].idx == 0 and len(mem.turns) < 11
    assert [t.idx for t in mem.turns[1:]] == list(range(12 - len(mem.turns) + 1, 12))


def test_1000_turns_cost_the_same_prompt_and_memory_as_20(tmp_path):
    sizes, peaks = {}, {}
    for n in (20, 1000):
        store = ConversationStore(tmp_path / f"c{n}.sqlite", sink_turns=1, window_turns=6, history_tokens=1500)
        fill(store, "s", n)
        tracemalloc.start()
        mem = store.memory("s")
        prompt = build_prompt("What about hotels?", [], mem, context_window=8192, answer_tokens=512)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        sizes[n] = (prompt.tokens, len(prompt.messages), store.stored_turns("s"))
    assert sizes[20] == sizes[1000]
    assert peaks[1000] < peaks[20] * 1.5 + 20_000


def test_summariser_folds_evicted_turns(tmp_path):
    seen = []

    def summarise(summary: str, q: str, a: str) -> str:
        seen.append(q)
        return (summary + " | " if summary else "") + q[:20]

    store = ConversationStore(tmp_path / "c.sqlite", sink_turns=1, window_turns=2, summariser=summarise)
    fill(store, "s", 6)
    mem = store.memory("s")
    assert [t.idx for t in mem.turns] == [0, 4, 5]
    assert seen == [f"Question number {i:04d} about the travel policy?" for i in (1, 2, 3)]
    assert mem.summary.count("|") == 2
    prompt = build_prompt("next?", [], mem, context_window=8192, answer_tokens=512)
    assert prompt.messages[1]["role"] == "system" and "Summary of earlier conversation" in prompt.messages[1]["content"]


def test_rewrite_rule():
    mem = Memory([Turn(0, "What is the per diem within Europe?", "60 EUR [1].")])
    assert rewrite_rule("And elsewhere?", mem) == "What is the per diem within Europe? And elsewhere?"
    assert rewrite_rule("Does that include hotels?", mem).startswith("What is the per diem")
    standalone = "How many days of paid annual leave do full-time employees get?"
    assert rewrite_rule(standalone, mem) == standalone
    assert rewrite_rule("And elsewhere?", Memory([])) == "And elsewhere?"
    assert rewrite_rule("それは何日ですか", Memory([Turn(0, "在宅勤務について", "...")])).startswith("在宅勤務")
    # a CJK question has no spaces: one that names its own topic is not a follow-up, a few characters are
    ja = Memory([Turn(0, "東京オフィスでは週に何日在宅勤務できますか？", "...")])
    assert rewrite_rule("上海办公室每月可以远程办公几天？", ja) == "上海办公室每月可以远程办公几天？"
    assert rewrite_rule("上海は？", ja) == "東京オフィスでは週に何日在宅勤務できますか？ 上海は？"


def test_prompt_budget_drops_whole_blocks_and_logs_them(caplog, built_index):
    from index.embedded import FaissSqliteStore
    from service.retrieval import Candidate

    store = FaissSqliteStore(built_index, model_id=None, dim=None, writable=False)
    docs, _ = store.documents(0, 100)
    chunks = [c for d in docs for c in store.chunks_of(d.id)][:12]
    from index.records import Hit

    cands = [Candidate(Hit(c, 1.0, "/s", "T"), 1.0) for c in chunks]
    store.close()
    with caplog.at_level("WARNING"):
        prompt = build_prompt("q?", cands, Memory([]), context_window=700, answer_tokens=256)
    assert 0 < len(prompt.contexts) < 12 and len(prompt.dropped) == 12 - len(prompt.contexts)
    assert prompt.tokens <= 700 - 256
    assert "dropped" in caplog.text and prompt.dropped[0] in caplog.text
    for n, cand in enumerate(prompt.contexts, start=1):  # included blocks are whole
        assert cand.hit.chunk.text in prompt.messages[-1]["content"]
        assert f'<context n="{n}"' in prompt.messages[-1]["content"]


def test_idle_sessions_expire(tmp_path):
    import time

    store = ConversationStore(tmp_path / "c.sqlite", ttl_seconds=3600)
    fill(store, "old", 3)
    fill(store, "new", 2)
    assert store.prune(now=time.time() + 1800) == 0
    assert store.prune(now=time.time() + 7200) == 2
    assert store.memory("old").turns == [] and store.stored_turns("old") == 0


def test_a_conversation_file_from_before_expiry_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, turns INTEGER NOT NULL,"
                     " summary TEXT NOT NULL DEFAULT '');"
                     "INSERT INTO sessions VALUES ('s', 0, 0, '');")
    db.commit()
    db.close()
    store = ConversationStore(path)
    store.append("s", "q?", "a.")
    assert store.memory("s").total_turns == 1


def test_conversations_from_before_per_caller_ids_keep_their_owner(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite"
    old = ConversationStore(path)
    fill(old, "s1", 2)
    old.close()
    db = sqlite3.connect(path)  # as the previous version stored them: the bare id, the owner beside it
    db.execute("UPDATE turns SET session_id = 's1'")
    db.execute("UPDATE sessions SET id = 's1', owner = 'user:alice'")
    db.commit()
    db.close()
    store = ConversationStore(path)
    assert store.memory("s1", "user:alice").total_turns == 2 and len(store.memory("s1", "user:alice").turns) == 2
    assert store.memory("s1", "user:bob").turns == []  # the same id is a fresh conversation for anyone else
    store.close()


def test_each_caller_keeps_a_bounded_number_of_conversations(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite", max_sessions=3)
    for i in range(6):
        store.append(f"s{i}", "q?", "a.", owner="key:a")
    store.append("s0", "q?", "a.", owner="key:b")
    store.append("s5", "more?", "b.", owner="key:a")  # an existing conversation: nothing is forgotten
    assert store.sessions("key:a") == 3 and store.sessions("key:b") == 1
    assert [store.memory(f"s{i}", "key:a").total_turns for i in range(6)] == [0, 0, 0, 1, 1, 2]
    assert store.memory("s0", "key:b").total_turns == 1
