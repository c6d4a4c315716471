from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.state import Services, services

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "still loading the model or the index"}})
def readyz(request: Request) -> JSONResponse:
    """The index and the model are loaded; `documents` says how many documents the index holds (with a
    `warning` when none)."""
    svc: Services | None = getattr(request.app.state, "services", None)
    if svc is None or not svc.ready:
        return JSONResponse(status_code=503, content={"status": "loading"})
    generation = svc.store.refresh()
    documents = svc.store.documents(0, 1)[1]
    body = {"status": "ready", "generation": generation, "model": svc.embedder.model_id, "documents": documents}
    if documents == 0:
        body["warning"] = "the index holds no documents: every answer will be 'not found' until some are ingested"
    return JSONResponse(body)


@router.get("/metrics", response_class=Response)
def metrics(svc: Services = Depends(services)) -> Response:
    """Prometheus metrics: requests and latency by route, retrieval and LLM latency, LLM tokens, index size."""
    stats = svc.store.stats()
    svc.metrics.documents.set(stats.documents)
    svc.metrics.chunks.set(stats.chunks)
    svc.metrics.generation.set(stats.generation)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
