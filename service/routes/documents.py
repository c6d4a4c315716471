from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import StringConstraints
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from index.records import check_acl, readable
from index.store import StoreWriter, open_store
from service.auth import Principal
from service.errors import IngestUnavailable, NotFoundError
from service.previews import MAX_HIGHLIGHT_CHARS, MAX_HIGHLIGHTS, section
from service.routes.common import ERRORS, FORBIDDEN, NOT_FOUND, WRITES, access, admin, document_out, principal
from service.schemas import AclIn, DocumentList, DocumentOut, ErrorOut, SectionOut, UploadReport
from service.state import Services, services

router = APIRouter(tags=["documents"], dependencies=[Depends(principal)])


@router.get("/v1/documents", response_model=DocumentList, responses=ERRORS)
def list_documents(offset: int = Query(0, ge=0, le=10**9), limit: int = Query(50, ge=1, le=500),
                   svc: Services = Depends(services),
                   tokens: frozenset[str] | None = Depends(access)) -> DocumentList:
    """The documents the caller may read, ordered by source, a page at a time."""
    docs, total = svc.store.documents(offset, limit, principals=tokens)
    return DocumentList(documents=[document_out(d, show_acl=tokens is None) for d in docs], total=total,
                        offset=offset, limit=limit)


def _readable(svc: Services, document_id: str, tokens: frozenset[str] | None):  # type: ignore[no-untyped-def]
    """The document, or 404 alike for an unknown one and one the caller may not read."""
    doc = svc.store.document(document_id)
    if doc is None or not readable(doc.acl, tokens):
        raise NotFoundError(f"no document with id {document_id!r}")
    return doc


@router.get("/v1/documents/{document_id}", response_model=DocumentOut, responses={**ERRORS, **NOT_FOUND})
def get_document(document_id: str, svc: Services = Depends(services),
                 tokens: frozenset[str] | None = Depends(access)) -> DocumentOut:
    doc = _readable(svc, document_id, tokens)
    return document_out(doc, chunks=len(svc.store.chunks_of(doc.id)), show_acl=tokens is None)


PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
          "description": "the page as PNG; `X-Quelle-Highlights` says how many of the quotes were found and marked"},
    409: {"model": ErrorOut, "description": "the document's file changed since it was ingested"},
    422: {"model": ErrorOut, "description": "a parameter is invalid, or the PDF cannot be drawn"},
    431: {"model": ErrorOut, "description": "the request line (the quotes to highlight) is longer than "
                                            "QUELLE_MAX_HEADER_BYTES"},
    503: {"model": ErrorOut, "description": "drawing the page took too long"}}


@router.get("/v1/documents/{document_id}/pages/{n}", response_class=Response, responses={**ERRORS, **NOT_FOUND, **PNG})
def page_image(document_id: str, n: int = PathParam(ge=1, le=100_000),
               highlight: list[Annotated[str, StringConstraints(max_length=MAX_HIGHLIGHT_CHARS)]] = Query(
                   [], max_length=MAX_HIGHLIGHTS, description="quotes to mark on the page"),
               width: int = Query(1000, ge=100, le=2000, description="the image's width in pixels"),
               svc: Services = Depends(services), tokens: frozenset[str] | None = Depends(access)) -> Response:
    """Page `n` of a PDF document drawn as PNG, with each `highlight` quote marked where it stands on the page
    (whitespace, case and hyphenation do not matter). Other kinds of document have no pages to draw: their text
    is at `/v1/documents/{id}/section`. Unknown documents and those the caller may not read are both 404."""
    doc = _readable(svc, document_id, tokens)
    image = svc.previews.page(doc, n, width=width, highlights=highlight)
    return Response(image.png, media_type="image/png", headers={
        "Cache-Control": "private, max-age=3600", "X-Quelle-Highlights": str(image.highlights)})


@router.get("/v1/documents/{document_id}/section", response_model=SectionOut, responses={**ERRORS, **NOT_FOUND})
def get_section(document_id: str, chunk: str = Query(min_length=1, max_length=64, description="a chunk id, as "
                                                                                                "citations give it"),
                svc: Services = Depends(services), tokens: frozenset[str] | None = Depends(access)) -> SectionOut:
    """The text around a chunk: the chunks under its heading (or on its page), in order, with where the chunk
    stands in it, to show a citation in its place in any kind of document."""
    doc = _readable(svc, document_id, tokens)
    got = section(svc.store.chunks_of(doc.id), chunk)
    if got is None:
        raise NotFoundError(f"document {document_id!r} has no chunk {chunk!r}")
    return SectionOut(document_id=doc.id, title=doc.title, kind=doc.kind, page=got.page,
                      heading_path=list(got.heading_path), text=got.text, start=got.start, end=got.end)


def _writer(svc: Services) -> StoreWriter:
    return open_store(svc.settings.store(), model_id=svc.store.model_id, dim=svc.store.dim, writable=True)


@router.delete("/v1/documents/{document_id}", status_code=204,
               responses={**ERRORS, **FORBIDDEN, **NOT_FOUND, **WRITES})
def delete_document(document_id: str, svc: Services = Depends(services), _: Principal = Depends(admin)) -> None:
    """Remove a document and its chunks from the index (a new generation). Administrators only."""
    doc = svc.store.document(document_id)
    if doc is None:
        raise NotFoundError(f"no document with id {document_id!r}")
    with svc.writing(), _writer(svc) as writer:
        if not writer.delete(document_id):
            raise NotFoundError(f"no document with id {document_id!r}")
        writer.commit()
        uploads = (svc.settings.data_dir / "uploads").resolve()
        if uploads in Path(doc.source).parents:  # an uploaded file has no other home: it goes with its document
            Path(doc.source).unlink(missing_ok=True)
    svc.store.refresh()


@router.put("/v1/documents/{document_id}/acl", response_model=DocumentOut,
            responses={**ERRORS, **FORBIDDEN, **NOT_FOUND, **WRITES})
def set_document_acl(document_id: str, body: AclIn, svc: Services = Depends(services),
                     _: Principal = Depends(admin)) -> DocumentOut:
    """Replace who may read a document. It holds from the next request on: the change is committed (a new
    generation) before this returns. Administrators only."""
    with svc.writing(), _writer(svc) as writer:
        if not writer.set_acl(document_id, tuple(body.acl)):
            raise NotFoundError(f"no document with id {document_id!r}")
        writer.commit()
    svc.store.refresh()
    doc = svc.store.document(document_id)
    if doc is None:  # deleted by another writer in between
        raise NotFoundError(f"no document with id {document_id!r}")
    return document_out(doc, show_acl=True)


_SAFE = re.compile(r"[^A-Za-z0-9._\-\u3040-\u30ff\u3400-\u9fff]+")
NAME_BYTES = 200  # an upload's file name, cut by UTF-8 bytes (file systems allow 255), extension kept

_UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "additionalProperties": False, "properties": {
        "file": {"type": "string", "format": "binary", "description": "a PDF, HTML, Markdown, text or DOCX file"},
        "acl": {"type": "string", "maxLength": 4000, "description": "who may read it, e.g. 'group:hr,user:alice' "
                                                                    "(default: the settings' rules)"}}}}}}}


def upload_name(raw: str | None) -> str:
    """A safe file name for an upload: its last path part, odd characters replaced, at most NAME_BYTES bytes in
    UTF-8 with the extension kept."""
    name = _SAFE.sub("_", Path(raw or "upload").name).strip("._") or "upload"
    suffix = Path(name).suffix if len(Path(name).suffix.encode()) <= 16 else ""
    stem = name[:len(name) - len(suffix)]
    room = NAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip("._") or "upload"
    return stem + suffix


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


@router.post("/v1/documents", response_model=UploadReport, status_code=201, openapi_extra=_UPLOAD_BODY,
             responses={**ERRORS, **FORBIDDEN, **WRITES,
                        501: {"model": ErrorOut, "description": "uploads are not enabled"}})
async def upload_document(request: Request, svc: Services = Depends(services),
                          _: Principal = Depends(admin)):  # type: ignore[no-untyped-def]
    """Ingest one uploaded file (multipart field `file`, optional `acl`) through the ingestion pipeline;
    returns that file's report. Uploading a file under a name already uploaded replaces that document (its
    text and its access list). Administrators only.

    The body is read only after the caller is known to be an administrator (the route declares no body
    parameters, which FastAPI would read before any dependency runs)."""
    if svc.ingest_file is None:
        raise IngestUnavailable("this service was started without an ingestion pipeline")
    try:
        form = await request.form(max_files=1, max_fields=4)
    except MultiPartException as exc:
        return JSONResponse(status_code=400, content={"error": "bad request", "detail": f"multipart body: {exc}"})
    try:
        unknown = sorted(set(form.keys()) - {"file", "acl"})
        if unknown:
            raise _invalid(unknown[0], "unknown field (send 'file' and, optionally, 'acl')")
        if len(form.getlist("file")) > 1 or len(form.getlist("acl")) > 1:
            raise _invalid("file", "one file and one access list per upload")
        file, acl = form.get("file"), form.get("acl")
        if not isinstance(file, UploadFile):
            raise _invalid("file", "a file is required: send multipart/form-data with the file in the field 'file'")
        if acl is not None and not isinstance(acl, str):
            raise _invalid("acl", "must be text, e.g. 'group:hr,user:alice'")
        entries = None
        if acl is not None:
            if len(acl) > 4000:
                raise _invalid("acl", "String should have at most 4000 characters")
            try:
                entries = check_acl([e for e in acl.split(",") if e.strip()])
            except ValueError as exc:
                raise _invalid("acl", str(exc)) from None
        return await run_in_threadpool(_ingest_upload, svc, file, entries)
    finally:
        await form.close()


def _ingest_upload(svc: Services, file: UploadFile, entries: tuple[str, ...] | None):  # type: ignore[no-untyped-def]
    """Writes the upload to uploads/<name> and ingests it, one admin write at a time in this service. A failed
    ingestion leaves the folder as it was (a previous upload of that name is put back)."""
    assert svc.ingest_file is not None
    name = upload_name(file.filename)
    uploads = svc.settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    target = uploads / name
    with tempfile.NamedTemporaryFile(dir=uploads, prefix=".part-", delete=False) as tmp:
        part = Path(tmp.name)
        try:
            shutil.copyfileobj(file.file, tmp, 1 << 20)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    backup = uploads / f".previous-{part.name}"
    try:
        with svc.writing():
            had = target.exists()
            if had:
                target.replace(backup)
            part.replace(target)
            try:
                result = svc.ingest_file(target, entries)
            except BaseException:
                result = {"status": "failed"}
                raise
            finally:
                if result["status"] == "failed":  # put the folder back as it was
                    if had:
                        backup.replace(target)
                    else:
                        target.unlink(missing_ok=True)
                else:
                    backup.unlink(missing_ok=True)
    finally:
        part.unlink(missing_ok=True)
    if result["status"] == "failed":
        return JSONResponse(status_code=422, content={"error": f"cannot ingest {name}", "detail": result["reason"]})
    svc.store.refresh()
    doc = svc.store.document(result["document_id"]) if result.get("document_id") else None
    return UploadReport(status=result["status"], document=document_out(doc, show_acl=True) if doc else None,
                        chunks_written=result.get("chunks_written", 0), warnings=result.get("warnings", []))
