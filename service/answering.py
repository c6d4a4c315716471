"""Answering a question: memory, standalone rewrite, retrieval, abstention, the answer, checked citations."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from index.store import SearchFilter
from service.citations import (
    MARKER,
    CheckedAnswer,
    CitationChecker,
    drop_invalid_markers,
    marker_numbers,
    renumber,
    reorder,
)
from service.conversations import ConversationStore, Memory, rewrite_rule
from service.errors import LLMUnavailableError
from service.extractive import Extract, Extractor
from service.guard import PromptGuard
from service.llm import ChatModel
from service.metrics import Metrics
from service.prompts import NOT_FOUND, build_prompt, not_found
from service.retrieval import Candidate, Retriever

log = logging.getLogger(__name__)

REWRITE_PROMPT = ("Rewrite the last question so that it can be understood without the conversation. Keep its "
                  "language. Reply with the rewritten question only.")
SUMMARY_PROMPT = ("Update the summary of a conversation with one more exchange. Keep names, numbers and "
                  "topics; at most 80 words. Reply with the summary only.")


@dataclass
class Plan:
    question: str
    query: str  # the standalone form used for retrieval
    session_id: str
    memory: Memory
    contexts: list[Candidate]
    generation: int
    abstain: bool
    owner: str = ""  # whose conversation this is ('' : the unrestricted local user)
    blocked: bool = False  # the model's output repeated the system prompt and was cut (service/guard.py)
    extract: Extract | None = None  # what the extractive answerer quoted
    renumbered: list[int] = field(default_factory=list)  # block numbers as the stream renumbered them (MarkerFilter)
    declined: bool = False  # the model began with the not-found sentence and went on
    remember: bool = True  # store the turn in the conversation (not when the caller sends the history itself)


@dataclass(frozen=True)
class Step:
    """One step of an agent run (service/agent/): why, which tool with what input, what it returned."""

    thought: str
    tool: str
    input: str
    observation: str  # as the model read it: only documents the caller may read
    blocks: tuple[int, ...] = ()  # the numbered blocks it returned (citable by the answer)
    note: str = ""  # what the harness did about it (an observation cut for room, a refused step)


@dataclass
class Answer:
    checked: CheckedAnswer
    abstained: bool
    session_id: str
    generation: int
    steps: list[Step] = field(default_factory=list)  # agent mode: the run's steps
    fallback: str = ""  # agent mode: why the run ended without the model finishing it ('' : it did)


class Answerer(Protocol):
    """What the routes call: plan (recall and retrieve, or prepare a run), the answer as it is produced (text
    deltas; an agent's steps first), then finish (check the citations, remember the turn). Two
    implementations: `AnswerService` (one retrieval, one answer) and `service.agent.Agent` (a ReAct loop)."""

    def plan(self, question: str, session_id: str | None, top_k: int | None, flt: SearchFilter | None,
             owner: str = "", memory: Memory | None = None) -> Any:
        """`memory`: the conversation as the caller sent it (then nothing is stored), instead of the stored
        conversation `session_id`."""
        ...

    def deltas(self, plan: Any) -> Iterator[str | Step]: ...

    def finish(self, plan: Any, text: str) -> Answer: ...

    def hold(self) -> AbstractContextManager[Any]: ...


def answer(answerer: Answerer, plan: Any) -> Answer:
    """The whole answer at once (no stream): the text deltas joined, then checked."""
    return answerer.finish(plan, "".join(d for d in answerer.deltas(plan) if isinstance(d, str)))


class AnswerService:
    def __init__(self, retriever: Retriever, conversations: ConversationStore, checker: CitationChecker,
                 extractive: Extractor, metrics: Metrics, *, llm: ChatModel | None = None,
                 default_k: int = 5, context_window: int = 8192, answer_tokens: int = 512,
                 gate: AbstractContextManager[Any] | None = None) -> None:
        self.retriever = retriever
        self.conversations = conversations
        self.checker = checker
        self.extractive = extractive
        self.metrics = metrics
        self.llm = llm
        self.default_k = default_k
        self.context_window = context_window
        self.answer_tokens = answer_tokens
        # CPU work (query and sentence embeddings) runs under this gate, a bounded semaphore sized to the cores:
        # under load requests queue for it instead of all slowing down together; waiting on a remote model
        # does not hold it
        self.gate = gate or nullcontext()

    def hold(self) -> AbstractContextManager[Any]:
        """The gate for a whole answer when it is all CPU work (the extractive answerer): an admitted request
        then finishes before later ones start, instead of queueing again between steps. Held around a model
        call it would idle a slot, so with an LLM each CPU step takes the gate on its own."""
        return self.gate if self.llm is None else nullcontext()

    # -- planning ------------------------------------------------------------------------------------------
    def plan(self, question: str, session_id: str | None, top_k: int | None, flt: SearchFilter | None,
             owner: str = "", memory: Memory | None = None) -> Plan:
        """Recall, rewrite and retrieve. `flt.principals` (the caller's access) bounds both the retrieval and
        the history recalled; `owner` names the caller whose conversation `session_id` must be; `memory` is
        a conversation the caller sent itself (an OpenAI-style request), used instead and not stored."""
        sid, memory, remember = self.recall(session_id, owner, flt, memory)
        query = self.rewrite(question, memory)
        started = time.perf_counter()
        with self.gate:
            got = self.retriever.search(query, top_k or self.default_k, flt, for_answer=True)
        self.metrics.observe_retrieval(time.perf_counter() - started, got.timings)
        return Plan(question, query, sid, memory, got.candidates, got.generation, abstain=not got.relevant,
                    owner=owner, remember=remember)

    def recall(self, session_id: str | None, owner: str, flt: SearchFilter | None,
               sent: Memory | None = None) -> tuple[str, Memory, bool]:
        """The conversation a turn continues: its id (a new one when none is given), its memory, and whether
        the turn is to be stored. `sent`: the conversation as the caller sent it (not stored); else the
        caller's stored one, less the turns drawn from documents it can no longer read."""
        sid = session_id or self.conversations.new_id()
        if sent is not None:
            return sid, sent, False
        tokens = flt.principals if flt is not None else None

        store = self.retriever.store

        def can_read(doc_ids: set[str]) -> bool:
            """The caller may read them all now (a deleted document: nobody may; an unrestricted caller reads
            every document there is)."""
            if tokens is None:
                return all(store.document(d) is not None for d in doc_ids)
            return store.readable(doc_ids, tokens) == doc_ids

        return sid, self.conversations.memory(sid, owner, can_read), True

    def rewrite(self, question: str, memory: Memory) -> str:
        if not memory.turns:
            return question
        if self.llm is not None:
            history = "\n".join(f"Q: {t.question}\nA: {t.answer}" for t in memory.turns[-3:])
            try:
                text = "".join(self.llm.complete([
                    {"role": "system", "content": REWRITE_PROMPT},
                    {"role": "user", "content": f"{history}\nLast question: {question}"}], max_tokens=96))
                text = " ".join(text.split())
                if 0 < len(text) <= 500:
                    return text
            except LLMUnavailableError as exc:
                log.warning("query rewrite fell back to the rule: %s", exc.detail)
        return rewrite_rule(question, memory)

    def summarise(self, summary: str, question: str, answer: str) -> str:
        """Fold a turn that leaves the window into the running summary (LLM configured only)."""
        assert self.llm is not None
        try:
            text = "".join(self.llm.complete([
                {"role": "system", "content": SUMMARY_PROMPT},
                {"role": "user", "content": f"Summary so far: {summary or '(none)'}\nQ: {question}\nA: {answer}"}],
                max_tokens=160))
            return " ".join(text.split())[:1200] or summary
        except LLMUnavailableError as exc:
            log.warning("conversation summary not updated: %s", exc.detail)
            return summary

    # -- answering -----------------------------------------------------------------------------------------
    def answer(self, plan: Plan) -> Answer:
        return answer(self, plan)

    def deltas(self, plan: Plan) -> Iterator[str]:
        """The answer text as it is produced (invalid [n] markers already removed)."""
        if plan.abstain or not plan.contexts:
            yield not_found(plan.question)
            return
        if self.llm is None:
            with self.gate:
                plan.extract = self.extractive.extract(plan.query, plan.contexts)
            if plan.extract is None:
                yield not_found(plan.question)
                return
            # numbered 1..n by first use as it is shown (streamed too), the contexts and quotes with it
            text, order = renumber(plan.extract.text)
            plan.contexts = reorder(plan.contexts, order)
            plan.extract = replace(plan.extract, text=text, quotes=[
                replace(q, n=order.index(q.n) + 1) for q in plan.extract.quotes if q.n in order])
            yield text
            return
        prompt = build_prompt(plan.question if plan.query == plan.question else plan.query, plan.contexts,
                              plan.memory, context_window=self.context_window, answer_tokens=self.answer_tokens)
        if not prompt.contexts:
            log.warning("no context block fits the prompt budget (context window %d)", self.context_window)
            yield not_found(plan.question)
            return
        plan.contexts = prompt.contexts
        started = time.perf_counter()
        # the rules, less the sentence the model is told to reply with when the answer is not there
        guard = PromptGuard(prompt.messages[0]["content"].replace(not_found(plan.question), " "))
        markers = MarkerFilter(len(prompt.contexts))
        plan.renumbered = markers.order
        try:
            yield from guard.filter(markers.filter(
                self.llm.complete(prompt.messages, max_tokens=self.answer_tokens)))
            if guard.tripped:
                plan.blocked = True
                self.metrics.blocked.inc()
                log.warning("answer cut: the model repeated the system prompt (a prompt injection in a document?)")
        except LLMUnavailableError as exc:
            exc.sources = sources(plan.contexts)
            raise
        finally:
            self.metrics.llm.observe(time.perf_counter() - started)

    def finish(self, plan: Plan, text: str) -> Answer:
        if plan.blocked:
            text = not_found(plan.question)
        declined = _is_not_found(text)
        if declined and self.llm is not None and _has_words(rest := _after_not_found(text)):
            # "not in the documents. But ...": the rest is an answer like any other, checked claim by claim;
            # stored only with what it holds (an abstention never carries document text)
            text, declined = rest, False
            plan.declined = True
        abstained = plan.abstain or not plan.contexts or declined
        if plan.renumbered:  # the stream showed block numbers by first use: the contexts follow
            plan.contexts = reorder(plan.contexts, plan.renumbered)
        if self.llm is not None and not abstained and not _has_words(text):
            # a small model may write only the marker it was asked for ("[1]"): it chose the block, the harness
            # quotes the block's best passage instead of showing an answer with no words
            log.info("the model answered with markers only: the extractive passage of its block stands in")
            text = self._stand_in(plan, text)
            abstained = plan.extract is None
        with self.gate:
            if plan.extract is not None and plan.extract.quotes and not abstained:
                checked = CitationChecker.from_extract(text, [(q.n, q.text) for q in plan.extract.quotes],
                                                      plan.contexts)
            else:
                checked = self.checker.check(text, plan.contexts, abstained=abstained,
                                             attribute=self.llm is not None)
        if plan.declined and not abstained and not checked.citations:
            abstained = True  # the model said "not found", and nothing it added is in the documents
            checked = CheckedAnswer(not_found(plan.question), [], True, checked.unsupported)
        if self.llm is not None and not abstained and checked.unsupported and not checked.citations:
            # nothing the model wrote is in the blocks: the harness shows the passage of the blocks it cited
            # (or of all), never the unsupported text as an answer
            log.info("no generated sentence is supported by the context: the extractive passage stands in")
            removed = checked.unsupported
            self._stand_in(plan, text)
            abstained = plan.extract is None
            with self.gate:
                checked = replace(CitationChecker.from_extract(
                    plan.extract.text, [(q.n, q.text) for q in plan.extract.quotes], plan.contexts)
                    if plan.extract is not None else CheckedAnswer(not_found(plan.question), [], True),
                    unsupported=removed)
        if abstained:
            self.metrics.abstentions.inc()
        if plan.remember:
            self.conversations.append(plan.session_id, plan.question, checked.answer, owner=plan.owner,
                                      docs=[] if abstained else [c.hit.chunk.document_id for c in plan.contexts])
        return Answer(checked, abstained, plan.session_id, plan.generation)


    def _stand_in(self, plan: Plan, text: str) -> str:
        """The extractive passage of the blocks the model's text cites (all when it cites none), which go
        first in `plan.contexts`; returns its text, or the not-found sentence when it finds none."""
        cited = [plan.contexts[n - 1] for n in dict.fromkeys(marker_numbers(text))
                 if 1 <= n <= len(plan.contexts)] or plan.contexts
        with self.gate:
            plan.extract = self.extractive.extract(plan.query, cited)
        plan.contexts = cited + [c for c in plan.contexts if c not in cited]
        return plan.extract.text if plan.extract else not_found(plan.question)


def _has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in MARKER.sub("", text))


def _is_not_found(text: str) -> bool:
    bare = re.sub(r"\[\d+\]", "", text).strip()
    return any(bare.startswith(msg.rstrip(".。")) for msg in NOT_FOUND.values())


def _after_not_found(text: str) -> str:
    """What follows the not-found sentence an answer begins with."""
    bare = text.strip()
    for msg in NOT_FOUND.values():
        stem = msg.rstrip(".。")
        if bare.startswith(stem):
            return bare[len(stem):].lstrip(".。 \n\t")
    return bare


def sources(contexts: list[Candidate]) -> list[dict]:
    """The retrieved contexts as citation-shaped sources (returned when the LLM is unavailable)."""
    out = []
    for n, c in enumerate(contexts, start=1):
        h = c.hit
        first = " ".join(h.chunk.text.split())[:300]
        out.append({"n": n, "document_id": h.chunk.document_id, "source": h.source, "title": h.title,
                    "page": h.chunk.page, "quote": first, "chunk_id": h.chunk.id, "score": c.score,
                    "supported": False})
    return out


class MarkerFilter:
    """Removes [n] markers that point at no context block from a stream of text deltas and renumbers the
    others 1..m in order of first use (`order[k - 1]`: the block [k] stands for), holding back only the few
    characters of a marker that is still open."""

    def __init__(self, n_contexts: int) -> None:
        self.n = n_contexts
        self.order: list[int] = []

    def filter(self, deltas: Iterator[str]) -> Iterator[str]:
        pending = ""
        for delta in deltas:
            pending += delta
            out, pending = self._split(pending)
            if out:
                yield out
        if pending:
            yield self._clean(pending)

    def _split(self, text: str) -> tuple[str, str]:
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:] and len(text) - cut <= 16:
            return self._clean(text[:cut]), text[cut:]
        return self._clean(text), ""

    def _clean(self, text: str) -> str:
        return renumber(drop_invalid_markers(text, self.n), self.order)[0]
