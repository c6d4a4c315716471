"""Agent mode: plan, act, observe (ReAct), then answer from what was observed.

First the model splits the question into the separate facts it asks for (a constrained JSON list of search
queries: planning), and the harness searches for each. Then the model decides one step at a time
(service/agent/protocols.py: OpenAI tool calling, or one constrained JSON object per step) which tool to run
next (service/agent/tools.py), or that it is done; the harness runs each with the caller's access and shows
the model what came back. When the model is done, the answer is written the single-shot way
(service/answering.py: numbered blocks, streamed, every citation checked) over the blocks the tools returned
in this run, and nothing else: citations can only point at what was observed.

Budgets: at most `max_steps` steps of at most `step_tokens` tokens, `timeout` seconds for the loop. The loop
also ends on a step the harness cannot use, on the same action twice, and when the model is unavailable. Then
the agent falls back to the single-shot answer over what it observed and says why in `Answer.fallback`;
when it observed nothing, the harness first searches for the question itself, as a step of its own (no
tool returned anything, no search enabled: "not in the documents").

Memory: the conversation's sinks and window (the same `Memory` as single-shot answers) come first; then the
run's steps. When they outgrow `context_window`, the oldest observations are replaced by a line saying so;
the step shows it in its `note`, and the blocks stay citable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from index.store import SearchFilter
from service.agent.protocols import (
    Constraint,
    Decision,
    ReActJson,
    StepError,
    StepProtocol,
    ToolCalling,
    plan_queries,
)
from service.agent.tools import TOOLS, Observed, Tool, ToolContext
from service.answering import Answer, AnswerService, Plan, Step
from service.conversations import Memory
from service.errors import LLMUnavailableError, NotEnabled
from service.llm import ChatModel
from service.prompts import history_messages
from service.tokens import estimate_tokens

log = logging.getLogger(__name__)

DROPPED = "Observation: (dropped for room; its blocks stay citable)"


@dataclass(frozen=True)
class AgentConfig:
    protocol: str = "react"  # "react" (constrained JSON steps) or "tools" (OpenAI tool calling)
    constraint: Constraint = "json_schema"  # how a step's schema is sent (protocols.py)
    tools: tuple[str, ...] = tuple(TOOLS)
    max_steps: int = 5
    step_tokens: int = 256
    timeout: float = 120.0  # seconds for the loop (the answer after it has the model's own timeout)
    context_window: int = 8192
    answer_blocks: int = 8  # blocks the answer is written from, taken from every step in turn
    plan_first: bool = True  # split the question into searches before the loop (protocols.plan_queries)


@dataclass
class AgentPlan:
    question: str
    session_id: str
    flt: SearchFilter | None
    top_k: int
    owner: str
    history: list[dict[str, str]]
    memory: Memory
    remember: bool = True  # store the turn (not when the caller sent the conversation itself)
    steps: list[Step] = field(default_factory=list)
    observed: Observed = field(default_factory=Observed)
    notes: list[str] = field(default_factory=list)  # results of tools that return no document (calculate, today)
    fallback: str = ""
    inner: Plan | None = None  # the single-shot plan the answer is written from


class Agent:
    def __init__(self, answers: AnswerService, llm: ChatModel, config: AgentConfig | None = None) -> None:
        self.answers = answers
        self.llm = llm
        self.config = config or AgentConfig()
        self.protocol: StepProtocol = ToolCalling() if self.config.protocol == "tools" else ReActJson(
            self.config.constraint)
        self.tools: list[Tool] = [TOOLS[name] for name in self.config.tools]

    def only(self, tools: Sequence[str]) -> Agent:
        """This agent with fewer tools (a request's choice among those enabled)."""
        missing = [t for t in tools if t not in self.config.tools]
        if missing:
            raise NotEnabled(f"tool(s) not enabled here: {', '.join(missing)} (QUELLE_AGENT_TOOLS)")
        return Agent(self.answers, self.llm, replace(self.config, tools=tuple(dict.fromkeys(tools))))

    def hold(self) -> AbstractContextManager[Any]:
        return nullcontext()  # every step waits on the model: CPU steps take the gate on their own

    def plan(self, question: str, session_id: str | None, top_k: int | None, flt: SearchFilter | None,
             owner: str = "", memory: Memory | None = None) -> AgentPlan:
        sid, memory, remember = self.answers.recall(session_id, owner, flt, memory)
        return AgentPlan(question, sid, flt, top_k or self.answers.default_k, owner, history_messages(memory),
                         memory, remember)

    # -- the loop ------------------------------------------------------------------------------------------
    def deltas(self, plan: AgentPlan) -> Iterator[str | Step]:
        yield from self.run(plan)
        search = next((t for t in self.tools if t.name == "search"), None)
        if not plan.observed.blocks and search is not None:
            # nothing observed (the model failed at once, or answered without looking): the harness searches
            # for the question itself, so the answer still comes from what a tool returned in this run
            if not plan.fallback:
                plan.fallback = "the run observed no document"
            ctx = ToolContext(self.answers.retriever, plan.flt, plan.top_k, plan.observed)
            step = self._act(Decision("(the harness) search for the question itself", search.name, plan.question),
                             ctx, 0)
            plan.steps.append(step)
            yield step
        plan.inner = self._inner(plan)
        yield from self.answers.deltas(plan.inner)

    def run(self, plan: AgentPlan) -> Iterator[Step]:
        cfg = self.config
        ctx = ToolContext(self.answers.retriever, plan.flt, plan.top_k, plan.observed)
        messages = self.protocol.start(plan.question, plan.history, self.tools)
        first = len(messages)
        started = time.monotonic()
        done: set[tuple[str, str]] = set()
        planned = self._planned(plan) if cfg.plan_first and any(t.name == "search" for t in self.tools) else []
        for number in range(1, cfg.max_steps + 1):
            if time.monotonic() - started > cfg.timeout:
                plan.fallback = f"the run took longer than {cfg.timeout:g} s"
                return
            dropped = self._fit(messages, first)
            if planned:  # the plan's searches first: one per part of the question
                decision = planned.pop(0)
            else:
                try:
                    decision = self.protocol.decide(self.llm, messages, self.tools, cfg.step_tokens)
                except StepError as exc:
                    plan.fallback = f"step {number}: {exc}"
                    log.info("agent step refused: %s", exc)
                    return
                except LLMUnavailableError as exc:
                    plan.fallback = f"step {number}: {exc.reason}"
                    log.warning("agent step failed: %s", exc.detail)
                    return
            if decision.tool is None:
                return  # the model is done
            key = (decision.tool, " ".join(decision.input.lower().split()))
            if key in done:
                plan.fallback = f"step {number} repeated an earlier action ({decision.tool} {decision.input[:60]!r})"
                return
            done.add(key)
            step = self._act(decision, ctx, dropped)
            if decision.tool in ("calculate", "today"):
                plan.notes.append(f"{decision.tool}: {step.observation}")
            plan.steps.append(step)
            yield step
            self.protocol.record(messages, decision, step.observation)
        plan.fallback = f"the model was still working after {cfg.max_steps} steps"

    def _planned(self, plan: AgentPlan) -> list[Decision]:
        """Planning: the model splits the question into the separate facts it asks for, one search query each
        (a small model asked to act at once searches for the whole question and stops). Any failure leaves
        the loop to plan step by step."""
        try:
            queries = plan_queries(self.llm, plan.question, self.config.constraint, self.config.step_tokens)
        except (StepError, LLMUnavailableError) as exc:
            log.info("agent plan not made, acting step by step: %s", exc)
            return []
        search = next(t for t in self.tools if t.name == "search")
        return [Decision(f"the question asks for: {q}", "search", q, f"plan_{i}", search.arg)
                for i, q in enumerate(queries, start=1)]

    def _act(self, decision: Decision, ctx: ToolContext, dropped: int) -> Step:
        tool = next(t for t in self.tools if t.name == decision.tool)
        with self.answers.gate:  # a search embeds the query: CPU work, under the same gate as answers
            got = tool.run(decision.input, ctx)
        note = f"{dropped} earlier observation(s) dropped for room (their blocks stay citable)" if dropped else ""
        return Step(decision.thought, tool.name, decision.input, got.text, tuple(got.blocks), note)

    def _fit(self, messages: list[dict[str, Any]], first: int) -> int:
        """Replace the oldest observations (the messages after the `first` ones: system, history, question) by
        a line saying so until the run fits the context window with room for a step; returns how many."""
        room = self.config.context_window - self.config.step_tokens

        def size() -> int:
            return sum(estimate_tokens(str(m.get("content") or "")) + 4 for m in messages)

        replaced = 0
        for m in messages[first:]:
            if size() <= room:
                break
            if m["role"] in ("tool", "user") and m["content"] != DROPPED:
                m["content"] = DROPPED
                replaced += 1
        if replaced:
            log.warning("agent run: %d observation(s) dropped to fit the context window of %d tokens",
                        replaced, self.config.context_window)
        return replaced

    # -- the answer ----------------------------------------------------------------------------------------
    def _inner(self, plan: AgentPlan) -> Plan:
        """The single-shot plan the answer is written from: the observed blocks, each step's best first."""
        answers = self.answers
        blocks = _round_robin([list(s.blocks) for s in plan.steps], self.config.answer_blocks)
        if len(plan.observed.blocks) > len(blocks):
            log.info("agent answer written from %d of the %d blocks observed (each step's best first)",
                     len(blocks), len(plan.observed.blocks))
        if not blocks:  # nothing any tool returned: "not in the documents"
            if not plan.fallback:
                plan.fallback = "the run observed no document"
            return Plan(plan.question, plan.question, plan.session_id, plan.memory, [],
                        answers.retriever.store.generation, abstain=True, owner=plan.owner, remember=plan.remember)
        query = plan.question
        if plan.notes:  # what calculate and today returned: no document says it, the answer may use it
            query += "\n\nResults of tools (not from the documents):\n" + "\n".join(plan.notes)
        contexts = [plan.observed.blocks[n - 1] for n in blocks]
        return Plan(plan.question, query, plan.session_id, plan.memory, contexts,
                    answers.retriever.store.generation, abstain=False, owner=plan.owner, remember=plan.remember)

    def finish(self, plan: AgentPlan, text: str) -> Answer:
        if plan.inner is None:  # finished before the loop ran (a client gone): answer nothing
            plan.inner = self._inner(plan)
        got = self.answers.finish(plan.inner, text)
        return replace(got, steps=list(plan.steps), fallback=plan.fallback)


def _round_robin(lists: list[list[int]], most: int) -> list[int]:
    out: list[int] = []
    depth = 0
    while len(out) < most and any(depth < len(x) for x in lists):
        for x in lists:
            if depth < len(x) and x[depth] not in out and len(out) < most:
                out.append(x[depth])
        depth += 1
    return out
