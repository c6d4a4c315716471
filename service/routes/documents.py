from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import JSONResponse

from index.faiss_store import FaissSqliteStore
from service.errors import IngestUnavailable, NotFoundError
from service.routes.common import CONFLICT, ERRORS, NOT_FOUND, document_out, principal
from service.schemas import DocumentList, DocumentOut, ErrorOut, UploadReport
from service.state import Services, services

router = APIRouter(tags=["documents"], dependencies=[Depends(principal)])


@router.get("/v1/documents", response_model=DocumentList, responses=ERRORS)
def list_documents(offset: int = Query(0, ge=0, le=10**9), limit: int = Query(50, ge=1, le=500),
                   svc: Services = Depends(services)) -> DocumentList:
    """Documents in the index, ordered by source, a page at a time."""
    docs, total = svc.store.documents(offset, limit)
    return DocumentList(documents=[document_out(d) for d in docs], total=total, offset=offset, limit=limit)


@router.get("/v1/documents/{document_id}", response_model=DocumentOut, responses={**ERRORS, **NOT_FOUND})
def get_document(document_id: str, svc: Services = Depends(services)) -> DocumentOut:
    doc = svc.store.document(document_id)
    if doc is None:
        raise NotFoundError(f"no document with id {document_id!r}")
    return document_out(doc, chunks=len(svc.store.chunks_of(doc.id)))


@router.delete("/v1/documents/{document_id}", status_code=204, responses={**ERRORS, **NOT_FOUND, **CONFLICT})
def delete_document(document_id: str, svc: Services = Depends(services)) -> None:
    """Remove a document and its chunks from the index (a new generation)."""
    if svc.store.document(document_id) is None:
        raise NotFoundError(f"no document with id {document_id!r}")
    with FaissSqliteStore(svc.settings.data_dir, model_id=svc.store.model_id, dim=svc.store.dim,
                          writable=True) as writer:
        if not writer.delete(document_id):
            raise NotFoundError(f"no document with id {document_id!r}")
        writer.commit()


_SAFE = re.compile(r"[^A-Za-z0-9._\-\u3040-\u30ff\u3400-\u9fff]+")


@router.post("/v1/documents", response_model=UploadReport, status_code=201,
             responses={**ERRORS, **CONFLICT, 501: {"model": ErrorOut, "description": "uploads are not enabled"}})
def upload_document(file: UploadFile = File(..., description="a PDF, HTML, Markdown, text or DOCX file"),
                    svc: Services = Depends(services)):  # type: ignore[no-untyped-def]
    """Ingest one uploaded file through the ingestion pipeline; returns that file's report."""
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
    result = svc.ingest_file(target)
    if result["status"] == "failed":
        target.unlink(missing_ok=True)
        return JSONResponse(status_code=422, content={"error": f"cannot ingest {name}", "detail": result["reason"]})
    doc = svc.store.document(result["document_id"]) if result.get("document_id") else None
    return UploadReport(status=result["status"], document=document_out(doc) if doc else None,
                        chunks_written=result.get("chunks_written", 0), warnings=result.get("warnings", []))
