"""Short-term memory: conversations persisted (SQLite in the data dir, or tables beside a PostgreSQL index that
every replica shares: index/state.py), bounded the way StreamingLLM bounds its cache.

The first `sink_turns` turns stay as "sinks" (they usually set the topic), plus a sliding window of the most
recent turns that fits `history_tokens`; the turns in between leave the prompt. When a summariser is given
(an LLM is configured), each turn that leaves the window is folded into a running summary. Only sinks,
window and summary are ever read, and turns that left the window are deleted, so a conversation of 1,000
turns costs the same prompt size, memory and storage as one of 20.

A conversation belongs to the caller who started it: session ids live in each caller's own namespace (stored
as `<owner>\x1f<session id>`), so another caller using the same id starts a conversation of its own: an id can
neither be taken from its owner beforehand nor tested for existence. A caller keeps at most `max_sessions`
conversations (the least recently used goes first), so one key cannot grow the store without bound. Each turn
remembers the documents its answer was drawn from; a turn (or a summary) drawn from a document
the caller may no longer read leaves the prompt from the next question on, so history cannot carry a revoked
document's text.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from index.state import SqliteState, StateDb
from service.tokens import estimate_tokens

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL,
                                     turns INTEGER NOT NULL, summary TEXT NOT NULL DEFAULT '',
                                     updated DOUBLE PRECISION NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '',
                                     summary_docs TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS turns (session_id TEXT NOT NULL, idx INTEGER NOT NULL, question TEXT NOT NULL,
                                  answer TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
                                  docs TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (session_id, idx));
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated);
CREATE INDEX IF NOT EXISTS sessions_owner ON sessions(owner, updated);
"""

_MIGRATIONS = (("sessions", "updated", "REAL NOT NULL DEFAULT 0"),  # SQLite files of earlier versions
               ("sessions", "owner", "TEXT NOT NULL DEFAULT ''"),  # '' : the unrestricted local user
               ("sessions", "summary_docs", "TEXT NOT NULL DEFAULT '[]'"),
               ("turns", "docs", "TEXT NOT NULL DEFAULT '[]'"))

Summariser = Callable[[str, str, str], str]  # (summary so far, question, answer) -> new summary
CanRead = Callable[[set[str]], bool]  # whether the caller may read every one of these documents now


@dataclass(frozen=True)
class Turn:
    idx: int
    question: str
    answer: str
    docs: tuple[str, ...] = field(default=(), compare=False)  # documents the answer was drawn from


@dataclass(frozen=True)
class Memory:
    turns: list[Turn]  # sinks first, then the recent window, in order
    summary: str = ""
    total_turns: int = 0

    @property
    def last_question(self) -> str | None:
        return self.turns[-1].question if self.turns else None


EMPTY = Memory([])


class ConversationStore:
    PRUNE_EVERY = 256  # appends between two sweeps of expired sessions

    def __init__(self, db: StateDb | Path, *, sink_turns: int = 1, window_turns: int = 6, history_tokens: int = 1500,
                 summariser: Summariser | None = None, ttl_seconds: float = 7 * 86400,
                 max_sessions: int = 100) -> None:
        self._db = SqliteState(db) if isinstance(db, Path) else db
        self._db.script(_SCHEMA)
        if self._db.dialect == "sqlite":
            self._migrate_sqlite()
        self._db.script(_INDEXES)
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self.sink_turns = sink_turns
        self.window_turns = window_turns
        self.history_tokens = history_tokens
        self.summariser = summariser
        self.ttl_seconds = ttl_seconds
        self._appends = 0

    def _migrate_sqlite(self) -> None:
        """A conversations.sqlite of an earlier version: the columns added since, and owners' namespaces."""
        for table, column, definition in _MIGRATIONS:
            self._db.add_column(table, column, definition)
        # ids from before owners' namespaces: the bare session id becomes <owner> US <session id>
        with self._db.transaction("conversations"):
            self._db.rows("UPDATE turns SET session_id = coalesce((SELECT owner FROM sessions WHERE id = "
                          "session_id), '') || char(31) || session_id WHERE instr(session_id, char(31)) = 0")
            self._db.rows("UPDATE sessions SET id = owner || char(31) || id WHERE instr(id, char(31)) = 0")

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def memory(self, session_id: str, owner: str = "", can_read: CanRead | None = None) -> Memory:
        """What the prompt may recall of the caller's conversation `session_id` (empty when it has none of that
        id); turns drawn from documents `can_read` refuses are left out (None: the caller reads everything)."""
        session_id = _key(owner, session_id)
        with self._lock:
            found = self._db.rows("SELECT turns, summary, owner, summary_docs FROM sessions WHERE id = ?",
                                  (session_id,))
            if not found:
                return EMPTY
            row = found[0]
            sinks = self._rows("SELECT idx, question, answer, docs FROM turns WHERE session_id = ? AND idx < ? "
                               "ORDER BY idx", (session_id, self.sink_turns))
            recent = self._rows("SELECT idx, question, answer, docs FROM turns WHERE session_id = ? AND idx >= ? "
                                "ORDER BY idx DESC LIMIT ?", (session_id, self.sink_turns, self.window_turns))
        summary = row[1]
        if can_read is not None:
            sinks = [t for t in sinks if not t.docs or can_read(set(t.docs))]
            recent = [t for t in recent if not t.docs or can_read(set(t.docs))]
            summary_docs = set(json.loads(row[3]))
            if summary_docs and not can_read(summary_docs):
                summary = ""
        return self._fit(sinks, recent, summary, row[0])

    def recall(self, turns: list[Turn]) -> Memory:
        """The memory of a conversation the caller sends whole (an OpenAI-style `messages` list), under the same
        policy as a stored one: the first `sink_turns`, then the most recent `window_turns` that fit the budget."""
        sinks = turns[: self.sink_turns]
        recent = turns[self.sink_turns:][::-1][: self.window_turns]
        return self._fit(sinks, recent, "", len(turns))

    def _fit(self, sinks: list[Turn], recent: list[Turn], summary: str, total: int) -> Memory:
        """Sinks, then the recent turns (given newest first) that fit the history budget, in order."""
        budget = self.history_tokens - sum(_cost(t) for t in sinks) - estimate_tokens(summary)
        window: list[Turn] = []
        for turn in recent:  # newest first, while they fit
            budget -= _cost(turn)
            if budget < 0:
                break
            window.append(turn)
        return Memory(sinks + window[::-1], summary, total)

    def _rows(self, sql: str, params: tuple) -> list[Turn]:
        return [Turn(i, q, a, tuple(json.loads(d))) for i, q, a, d in self._db.rows(sql, params)]

    def append(self, session_id: str, question: str, answer: str, *, owner: str = "",
               docs: Iterable[str] = ()) -> None:
        """Add a turn to the caller's conversation `session_id` (started when it has none of that id; its least
        recently used one is forgotten when that makes more than `max_sessions`); `docs`: the documents its
        answer was drawn from."""
        session_id = _key(owner, session_id)
        with self._lock, self._db.transaction(f"conversations {owner}"):  # the owner's sessions, on any replica
            found = self._db.rows("SELECT turns FROM sessions WHERE id = ?", (session_id,))
            idx = found[0][0] if found else 0
            if not found:
                mine = self._db.rows("SELECT id FROM sessions WHERE owner = ? ORDER BY updated DESC, created DESC",
                                     (owner,))
                extra = [r[0] for r in mine[self.max_sessions - 1:]]
                self._db.run_many("DELETE FROM turns WHERE session_id = ?", [(i,) for i in extra])
                self._db.run_many("DELETE FROM sessions WHERE id = ?", [(i,) for i in extra])
                self._db.rows("INSERT INTO sessions (id, created, turns, owner) VALUES (?, ?, 0, ?)",
                              (session_id, time.time(), owner))
            self._db.rows("INSERT INTO turns (session_id, idx, question, answer, created, docs) "
                          "VALUES (?, ?, ?, ?, ?, ?)",
                          (session_id, idx, question, answer, time.time(), json.dumps(sorted(set(docs)))))
            self._db.rows("UPDATE sessions SET turns = ?, updated = ? WHERE id = ?", (idx + 1, time.time(), session_id))
            leaving = self._rows(
                "SELECT idx, question, answer, docs FROM turns WHERE session_id = ? AND idx >= ? AND idx <= ? "
                "ORDER BY idx", (session_id, self.sink_turns, idx - self.window_turns))
        if leaving:
            self._evict(session_id, owner, leaving)
        self._appends += 1
        if self._appends % self.PRUNE_EVERY == 0:
            self.prune()

    def prune(self, now: float | None = None) -> int:
        """Forget sessions idle for longer than the time to live; returns how many."""
        cutoff = (now or time.time()) - self.ttl_seconds
        with self._lock, self._db.transaction("conversations prune"):
            # by the condition, not by ids read first: a session another replica just used is kept
            old = self._db.rows("SELECT COUNT(*) FROM sessions WHERE updated < ?", (cutoff,))[0][0]
            self._db.rows("DELETE FROM turns WHERE session_id IN (SELECT id FROM sessions WHERE updated < ?)",
                          (cutoff,))
            self._db.rows("DELETE FROM sessions WHERE updated < ?", (cutoff,))
        return int(old)

    def _evict(self, session_id: str, owner: str, turns: list[Turn]) -> None:
        """Turns that left the window: folded into the summary (when a summariser is set), then deleted."""
        summary = None
        if self.summariser is not None:
            with self._lock:
                found = self._db.rows("SELECT summary, summary_docs FROM sessions WHERE id = ?", (session_id,))
            if not found:
                return
            summary, docs = found[0]
            summary_docs = set(json.loads(docs))
            for t in turns:
                summary = self.summariser(summary, t.question, t.answer)
                summary_docs.update(t.docs)
        with self._lock, self._db.transaction(f"conversations {owner}"):
            if summary is not None:
                self._db.rows("UPDATE sessions SET summary = ?, summary_docs = ? WHERE id = ?",
                              (summary, json.dumps(sorted(summary_docs)), session_id))
            self._db.run_many("DELETE FROM turns WHERE session_id = ? AND idx = ?",
                              [(session_id, t.idx) for t in turns])

    def stored_turns(self, session_id: str, owner: str = "") -> int:
        with self._lock:
            rows = self._db.rows("SELECT COUNT(*) FROM turns WHERE session_id = ?", (_key(owner, session_id),))
        return int(rows[0][0])

    def sessions(self, owner: str) -> int:
        """How many conversations the caller has stored."""
        with self._lock:
            return int(self._db.rows("SELECT COUNT(*) FROM sessions WHERE owner = ?", (owner,))[0][0])

    def close(self) -> None:
        self._db.close()


def _key(owner: str, session_id: str) -> str:
    """Where a caller's conversation is stored: session ids are per caller (a unit separator cannot occur in
    either part: ids are [A-Za-z0-9_-], owners are realm:name)."""
    return f"{owner}\x1f{session_id}"


def _cost(turn: Turn) -> int:
    return estimate_tokens(turn.question) + estimate_tokens(turn.answer) + 8


_FOLLOW_UP = {"it", "its", "that", "this", "those", "these", "they", "them", "there", "he", "she", "his", "her",
              "same", "also", "else"}
_CJK_FOLLOW_UP = ("それ", "その", "これ", "この", "あれ", "では", "じゃあ", "它", "这", "那", "他们", "呢")


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def rewrite_rule(question: str, memory: Memory) -> str:
    """A follow-up question, made standalone by a simple rule: when it is short or leans on a pronoun,
    prepend the previous question, so retrieval sees the topic."""
    prev = memory.last_question
    if not prev:
        return question
    words = question.lower().replace("?", " ").split()
    # CJK has no spaces between words: count its characters instead (a word is about two)
    cjk = len(_CJK.findall(question))
    short = cjk <= 8 if cjk else len(words) <= 5 and len(question) < 40
    leans = any(w.strip(".,!") in _FOLLOW_UP for w in words[:3]) or question.startswith(_CJK_FOLLOW_UP)
    if short or leans:
        return f"{prev} {question}"
    return question
