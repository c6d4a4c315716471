"""What a parser returns: a document's text as ordered sections, each with its page and heading path."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based, for paged formats
    heading_path: tuple[str, ...] = ()


@dataclass
class ParsedDocument:
    title: str
    kind: str
    sections: list[Section]
    pages: int | None = None
    warnings: list[str] = field(default_factory=list)

    SEPARATOR = "\n\n"

    @property
    def text(self) -> str:
        """The whole text; chunk character spans index into it."""
        return self.SEPARATOR.join(s.text for s in self.sections)

    def meta(self) -> DocumentMeta:
        return DocumentMeta(self.title, self.kind, self.pages, list(self.warnings))


@dataclass
class DocumentMeta:
    """What a document record takes from its parse, without the text (sent back from distributed workers)."""
    title: str
    kind: str
    pages: int | None = None
    warnings: list[str] = field(default_factory=list)
