from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse

from index.faiss_store import FaissSqliteStore
from index.records import check_acl, readable
from service.auth import Principal
from service.errors import IngestUnavailable, NotFoundError
from service.routes.common import CONFLICT, ERRORS, FORBIDDEN, NOT_FOUND, access, admin, document_out, principal
from service.schemas import AclIn, DocumentList, DocumentOut, ErrorOut, UploadReport
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


def _writer(svc: Services) -> FaissSqliteStore:
    return FaissSqliteStore(svc.settings.data_dir, model_id=svc.store.model_id, dim=svc.store.dim, writable=True,
                            vector_policy=svc.settings.vector_policy())


@router.delete("/v1/documents/{document_id}", status_code=204,
               responses={**ERRORS, **FORBIDDEN, **NOT_FOUND, **CONFLICT})
def delete_document(document_id: str, svc: Services = Depends(services), _: Principal = Depends(admin)) -> None:
    """Remove a document and its chunks from the index (a new generation). Administrators only."""
    if svc.store.document(document_id) is None:
        raise NotFoundError(f"no document with id {document_id!r}")
    with _writer(svc) as writer:
        if not writer.delete(document_id):
            raise NotFoundError(f"no document with id {document_id!r}")
        writer.commit()
    svc.store.refresh()


@router.put("/v1/documents/{document_id}/acl", response_model=DocumentOut,
            responses={**ERRORS, **FORBIDDEN, **NOT_FOUND, **CONFLICT})
def set_document_acl(document_id: str, body: AclIn, svc: Services = Depends(services),
                     _: Principal = Depends(admin)) -> DocumentOut:
    """Replace who may read a document. It holds from the next request on: the change is committed (a new
    generation) before this returns. Administrators only."""
    with _writer(svc) as writer:
        if not writer.set_acl(document_id, tuple(body.acl)):
            raise NotFoundError(f"no document with id {document_id!r}")
        writer.commit()
    svc.store.refresh()
    doc = svc.store.document(document_id)
    if doc is None:  # deleted by another writer in between
        raise NotFoundError(f"no document with id {document_id!r}")
    return document_out(doc, show_acl=True)


_SAFE = re.compile(r"[^A-Za-z0-9._\-\u3040-\u30ff\u3400-\u9fff]+")


@router.post("/v1/documents", response_model=UploadReport, status_code=201,
             responses={**ERRORS, **FORBIDDEN, **CONFLICT,
                        501: {"model": ErrorOut, "description": "uploads are not enabled"}})
def upload_document(file: UploadFile = File(..., description="a PDF, HTML, Markdown, text or DOCX file"),
                    acl: str | None = Form(None, max_length=4000, description="who may read it, e.g. "
                                           "'group:hr,user:alice' (default: the settings' rules)"),
                    svc: Services = Depends(services), _: Principal = Depends(admin)):  # type: ignore[no-untyped-def]
    """Ingest one uploaded file through the ingestion pipeline; returns that file's report. Administrators
    only."""
    entries = None
    if acl is not None:
        try:
            entries = check_acl([e for e in acl.split(",") if e.strip()])
        except ValueError as exc:
            return JSONResponse(status_code=422, content={"error": f"invalid request: acl: {exc}",
                                                          "detail": [{"field": "acl", "message": str(exc)}]})
    if svc.ingest_file is None:
        raise IngestUnavailable("this service was started without an ingestion pipeline")
    name = _SAFE.sub("_", Path(file.filename or "upload").name).strip("._") or "upload"
    uploads = svc.settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=uploads, delete=False) as tmp:
        digest = hashlib.sha256()
        while block := file.file.read(1 << 20):
            digest.update(block)
            tmp.write(block)
    folder = uploads / digest.hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    target = folder / name[:200]
    Path(tmp.name).replace(target)
    result = svc.ingest_file(target, entries)
    if result["status"] == "failed":
        target.unlink(missing_ok=True)
        return JSONResponse(status_code=422, content={"error": f"cannot ingest {name}", "detail": result["reason"]})
    svc.store.refresh()
    doc = svc.store.document(result["document_id"]) if result.get("document_id") else None
    return UploadReport(status=result["status"], document=document_out(doc, show_acl=True) if doc else None,
                        chunks_written=result.get("chunks_written", 0), warnings=result.get("warnings", []))
