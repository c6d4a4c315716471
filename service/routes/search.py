from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from service.routes.common import ERRORS, OVERLOADED, access, chunk_out, principal, to_filter
from service.schemas import SearchRequest, SearchResponse
from service.state import Services, services

router = APIRouter(tags=["retrieval"], dependencies=[Depends(principal)])


@router.post("/v1/search", response_model=SearchResponse, responses={**ERRORS, **OVERLOADED})
def search(req: SearchRequest, svc: Services = Depends(services),
           readable: frozenset[str] | None = Depends(access)) -> SearchResponse:
    """Ranked chunks for a query: dense + keyword fused with reciprocal rank fusion (or one path by `mode`)."""
    started = time.perf_counter()
    with svc.gate:  # queue for the CPU rather than all slowing down together
        got = svc.retriever.search(req.query, req.top_k, to_filter(req.filters, readable), mode=req.mode)
    svc.metrics.observe_retrieval(time.perf_counter() - started, got.timings)
    return SearchResponse(results=[chunk_out(c) for c in got.candidates], generation=got.generation)
