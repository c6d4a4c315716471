"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from index.records import ACL_ENTRY, check_acl
from service.answering import Step
from service.citations import Citation

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Strict(BaseModel):
    """Request bodies: unknown fields refused."""

    model_config = ConfigDict(extra="forbid")


class SearchFilters(Strict):
    document_ids: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(None, max_length=1000)
    kinds: list[Literal["pdf", "html", "markdown", "text", "docx", "csv", "json", "xlsx"]] | None = None
    source_prefix: Annotated[str, StringConstraints(max_length=4096)] | None = None


class SearchRequest(Strict):
    query: Annotated[Text, StringConstraints(max_length=2000)]
    top_k: int = Field(5, ge=1, le=50)
    filters: SearchFilters | None = None
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"


class ChunkOut(BaseModel):
    chunk_id: str
    document_id: str
    source: str
    title: str
    page: int | None
    heading_path: list[str]
    text: str
    score: float
    dense_score: float | None = None
    keyword_score: float | None = None
    char_start: int
    char_end: int
    also_in: list[str] = []


class SearchResponse(BaseModel):
    results: list[ChunkOut]
    generation: int


class AskRequest(Strict):
    question: Annotated[Text, StringConstraints(max_length=4000)]
    top_k: int | None = Field(None, ge=1, le=50)
    session_id: SessionId | None = None
    stream: bool = Field(False, strict=True)  # `"stream": 0` is an error, as the schema says
    filters: SearchFilters | None = None
    mode: Literal["single", "agent"] = Field(
        "single", description="'single': one retrieval, one answer; 'agent': the model plans and calls tools "
                              "(search, read, list_documents, calculate, today), then answers from what they "
                              "returned (needs a language model; 501 otherwise)")
    tools: list[Literal["search", "read", "list_documents", "calculate", "today"]] | None = Field(
        None, min_length=1, description="agent mode: the tools this request may use (default: all enabled; a "
                                        "single-shot answer uses none)")


CitationOut = Citation  # a checked citation (service/citations.py): n, document, page, quote, support


class AskResponse(BaseModel):
    answer: str
    citations: list[CitationOut]
    grounded: bool
    abstained: bool = Field(description="true when the documents do not hold the answer")
    unsupported: list[str] = Field(default_factory=list,
                                   description="sentences the model wrote that no retrieved passage supports: "
                                               "removed from `answer` (generated answers only)")
    session_id: str
    generation: int
    steps: list[Step] | None = Field(None, description="agent mode: each step's thought, tool, input and "
                                                       "observation (only documents the caller may read)")
    fallback: str | None = Field(None, description="agent mode: why the run ended before the model finished "
                                                   "it, so the answer was written from what it had observed")


class DocumentOut(BaseModel):
    id: str
    source: str
    title: str
    kind: str
    pages: int | None
    size: int
    content_hash: str
    warnings: list[str]
    chunks: int | None = None
    acl: list[str] | None = Field(None, description="who may read it ('public', 'group:<g>', 'user:<u>'); shown "
                                                      "to administrators only")


class SectionOut(BaseModel):
    document_id: str
    title: str
    kind: str
    page: int | None
    heading_path: list[str]
    text: str = Field(description="the consecutive chunks under the chunk's heading (or on its page), joined "
                                  "without the words overlapping chunks repeat; at most 12,000 characters")
    start: int = Field(description="where the asked chunk starts in `text`")
    end: int = Field(description="where it ends")


class AclIn(Strict):
    acl: list[Annotated[str, StringConstraints(pattern=ACL_ENTRY, max_length=200)]] = Field(
        min_length=1, max_length=100, description="'public', 'group:<name>' or 'user:<name>'",
        examples=[["group:hr", "user:alice"]])

    @field_validator("acl")
    @classmethod
    def _check(cls, v: list[str]) -> list[str]:
        return list(check_acl(v))


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    total: int
    offset: int
    limit: int


class UploadReport(BaseModel):
    status: Literal["added", "updated", "unchanged"]
    document: DocumentOut | None
    chunks_written: int
    warnings: list[str] = []


class ErrorOut(BaseModel):
    error: str
    detail: Any = None


class LLMErrorOut(BaseModel):
    """A 503 from /v1/ask: the model is unavailable (`reason`, and the retrieved `sources`), or the service is
    overloaded (`detail`; see Retry-After)."""
    error: str
    reason: str = ""
    sources: list[CitationOut] = []
    detail: Any = None
