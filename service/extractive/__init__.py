"""Extractive answerers: the embedded default, no model server. Each takes the question and the retrieved
context blocks and returns an `Extract`: the answer text with [n] markers (n: the context block) and the exact
spans it quotes, so every citation shows the words it stands for.

- `passages.PassageAnswerer` (the default): the best short passage of the best-matching chunk, sentences whole
  and in order, code kept as code (docs/quality.md).
- `sentences.SentenceAnswerer`: the answerer before it, the closest sentences of all chunks (kept to measure
  against).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from service.retrieval import Candidate

if TYPE_CHECKING:
    from service.extractive.meaning import Meaning


@dataclass(frozen=True)
class Quote:
    n: int  # the context block (1-based, in retrieval order)
    text: str  # exactly the words quoted, as shown in the answer
    start: int  # their span in the block's chunk text
    end: int


@dataclass(frozen=True)
class Extract:
    text: str  # the answer, each passage followed by its [n]
    quotes: list[Quote]
    evidence: dict[str, float] = field(default_factory=dict)  # what the answerer saw (evaluation, logs)


class Extractor(Protocol):
    def extract(self, question: str, contexts: list[Candidate]) -> Extract | None:
        """The answer and what it quotes, or None when nothing in the contexts answers the question."""
        ...


def build(name: str, embedder: object, meaning: Meaning | None = None) -> Extractor:
    """The extractive answerer called `name` ("passage" or "sentence")."""
    if name == "sentence":
        from service.extractive.sentences import SentenceAnswerer

        return SentenceAnswerer(embedder)  # type: ignore[arg-type]
    from service.extractive.passages import PassageAnswerer

    return PassageAnswerer(embedder, meaning=meaning)  # type: ignore[arg-type]
