"""API keys and conversations where each backend keeps them (index/state.py): SQLite files beside the embedded
index, tables beside a PostgreSQL index. Two store objects on one database stand for two replicas."""

from __future__ import annotations

import threading

import pytest

from index.store import StoreConfig, open_state
from service.auth import AuthError, KeyStore
from service.conversations import ConversationStore


@pytest.fixture(params=["embedded", "postgres"])
def where(request, tmp_path) -> StoreConfig:
    if request.param == "postgres":
        schema = f"state_{abs(hash(request.node.name)) % 10**8}"
        return StoreConfig(tmp_path / "data", pg_dsn=request.getfixturevalue("pg_server"), pg_schema=schema)
    return StoreConfig(tmp_path / "data")


def test_a_key_made_by_one_replica_works_on_the_other_until_revoked(where):
    a, b = KeyStore.open(where), KeyStore.open(where)
    try:
        key, info = a.create("alice", ("hr", "eng"))
        assert b.verify(key).groups == {"hr", "eng"} and b.verify(key).name == "alice"
        assert [k.id for k in b.list()] == [info.id]
        assert [k.id for k in b.revoke("alice")] == [info.id]
        with pytest.raises(AuthError, match="revoked"):
            a.verify(key)
        with pytest.raises(AuthError, match="unknown"):
            a.verify(key[:-4] + "AAAA")
    finally:
        a.close()
        b.close()
    if where.pg_dsn:
        assert not list(where.data_dir.glob("*.sqlite")) if where.data_dir.exists() else True


def test_a_conversation_goes_on_across_replicas_and_stays_bounded(where):
    def store() -> ConversationStore:
        return ConversationStore(open_state(where, "conversations"), sink_turns=1, window_turns=3,
                                 history_tokens=10_000, max_sessions=2)

    a, b = store(), store()
    try:
        for i in range(8):
            (a if i % 2 else b).append("s", f"question {i}", f"answer {i}", owner="bob", docs=[f"d{i}"])
        mem = a.memory("s", owner="bob")
        assert [t.idx for t in mem.turns] == [0, 5, 6, 7] and mem.total_turns == 8
        assert b.memory("s", owner="bob") == mem and b.stored_turns("s", owner="bob") == 4
        assert a.memory("s", owner="eve").turns == []  # another caller's id space
        assert [t.idx for t in a.memory("s", owner="bob", can_read=lambda docs: "d6" not in docs).turns] == [0, 5, 7]
        b.append("t", "q", "a", owner="bob")
        a.append("u", "q", "a", owner="bob")  # a third conversation: the least recently used one goes
        assert a.sessions("bob") == 2 and a.memory("s", owner="bob").turns == []
        assert b.prune(now=1e12) == 2 and a.sessions("bob") == 0
    finally:
        a.close()
        b.close()


def test_concurrent_turns_from_two_replicas_are_serialised(where):
    """Two replicas appending to one conversation at once: every turn kept once, numbered without a gap."""
    stores = [ConversationStore(open_state(where, "conversations"), sink_turns=100, window_turns=100,
                                history_tokens=1_000_000) for _ in range(2)]
    errors: list[BaseException] = []

    def talk(store: ConversationStore, who: int) -> None:
        try:
            for i in range(15):
                store.append("shared", f"q{who}-{i}", "a", owner="bob")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        turns = stores[0].memory("shared", owner="bob").turns
        assert [t.idx for t in turns] == list(range(30))
        assert sorted(t.question for t in turns) == sorted(f"q{w}-{i}" for w in range(2) for i in range(15))
    finally:
        for s in stores:
            s.close()
