"""The system prompt and the human prompt, built from template files to fit the model's context window.

Budget: context window = system + history + context blocks + question + room for the answer. Context blocks
go in by rank while they fit; a block that does not fit is dropped whole and logged, never cut silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources

from service.citations import defuse_markers
from service.conversations import Memory
from service.guard import defuse_delimiters
from service.retrieval import Candidate
from service.tokens import estimate_tokens

log = logging.getLogger(__name__)

NOT_FOUND = {
    "en": "I could not find this in the documents.",
    "ja": "資料の中に該当する情報が見つかりませんでした。",
    "zh": "文档中没有找到相关信息。",
}


def language(text: str) -> str:
    if any("\u3040" <= ch <= "\u30ff" for ch in text):
        return "ja"
    if any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return "zh"
    return "en"


def not_found(question: str) -> str:
    return NOT_FOUND[language(question)]


def template(name: str) -> str:
    return resources.files("service").joinpath("templates", name).read_text(encoding="utf-8")


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    contexts: list[Candidate]  # contexts[n-1] is block [n]
    dropped: list[str] = field(default_factory=list)  # chunk ids left out for lack of room
    tokens: int = 0


def context_block(n: int, cand: Candidate) -> str:
    hit = cand.hit
    page = f' page="{hit.chunk.page}"' if hit.chunk.page else ""
    heading = " > ".join(hit.chunk.heading_path)
    section = f' section="{_attr(heading)}"' if heading else ""
    # a document can neither close its block nor open one, and its own "[1]" marks are no citations
    body = defuse_markers(defuse_delimiters(hit.chunk.text))
    return f'<context n="{n}" title="{_attr(hit.title)}"{page}{section}>\n{body}\n</context>'


def _attr(value: str) -> str:
    return defuse_delimiters(value).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace("\n", " ")


def history_messages(memory: Memory) -> list[dict[str, str]]:
    """The conversation as chat messages: the running summary, then each remembered turn (history the model
    reads, never instructions: the system prompt says so)."""
    history: list[dict[str, str]] = []
    if memory.summary:
        history.append({"role": "system", "content": f"Summary of earlier conversation: {memory.summary}"})
    for turn in memory.turns:
        history += [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer}]
    return history


def build_prompt(question: str, candidates: list[Candidate], memory: Memory, *, context_window: int,
                 answer_tokens: int) -> Prompt:
    system = template("system.txt").format(not_found=not_found(question))
    history = history_messages(memory)
    human = template("human.txt")
    fixed = (estimate_tokens(system) + sum(estimate_tokens(m["content"]) + 4 for m in history)
             + estimate_tokens(human.format(contexts="", question=question)) + 12)
    room = context_window - answer_tokens - fixed
    blocks: list[str] = []
    used: list[Candidate] = []
    dropped: list[str] = []
    for cand in candidates:
        block = context_block(len(used) + 1, cand)
        cost = estimate_tokens(block) + 1
        if cost <= room:
            blocks.append(block)
            used.append(cand)
            room -= cost
        else:
            dropped.append(cand.hit.chunk.id)
    if dropped:
        log.warning("prompt budget: dropped %d context block(s) that did not fit %d tokens: %s",
                    len(dropped), context_window, ", ".join(dropped))
    content = human.format(contexts="\n\n".join(blocks), question=question)
    messages = [{"role": "system", "content": system}, *history, {"role": "user", "content": content}]
    total = context_window - answer_tokens - room
    return Prompt(messages, used, dropped, total)
