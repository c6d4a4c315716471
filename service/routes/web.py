"""The web page: one HTML file with its script and style, served from the package (no build step, no CDN), and
the few routes it needs besides the API: how to sign in, who the caller is, the last ingestion report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from service.auth import Principal
from service.errors import NotFoundError
from service.routes.common import ERRORS, FORBIDDEN, NOT_FOUND, admin, principal
from service.state import Services, services

WEB = Path(__file__).resolve().parent.parent / "web"  # index.html, app.js, app.css

router = APIRouter()


def _page_headers(svc: Services) -> dict[str, str]:
    """The page runs only its own script and talks only to this service (and to the identity provider's token
    endpoint): what an injected script could not get around. Its address may hold a quote: never sent on."""
    connect = "'self'"
    if svc.settings.oidc_token_url:
        token = urlsplit(svc.settings.oidc_token_url)
        connect += f" {token.scheme}://{token.netloc}"
    return {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": f"default-src 'none'; script-src 'self'; style-src 'self'; "
                                       f"img-src 'self' blob: data:; connect-src {connect}; base-uri 'none'; "
                                       "form-action 'self'; frame-ancestors 'none'"}


@router.get("/", include_in_schema=False, response_model=None)
def index(request: Request, svc: Services = Depends(services)) -> Response | dict[str, Any]:
    """The web page for a browser; where to go from here for a program (one that does not ask for HTML)."""
    if "text/html" in request.headers.get("accept", ""):
        return FileResponse(WEB / "index.html", headers=_page_headers(svc))
    return {"service": "Quelle", "description": "answers questions from your own documents, with cited sources",
            "links": {"web_page": "/ (Accept: text/html)", "api_docs": "/docs", "api_reference": "/redoc",
                      "openapi": "/openapi.json", "ask": "POST /v1/ask", "chat": "POST /v1/chat/completions",
                      "search": "POST /v1/search", "health": "/healthz", "ready": "/readyz"}}


@router.get("/ui/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """The page's script and style (fixed names: nothing else of the package can be read here)."""
    if name not in ("app.js", "app.css"):
        raise NotFoundError(f"no asset {name!r}")
    return FileResponse(WEB / name, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@router.get("/client-config", tags=["web page"])
def client_config(svc: Services = Depends(services)) -> dict[str, Any]:
    """What a client needs before it signs in: whether keys are needed, the SSO provider's endpoints for the
    web page (authorization code with PKCE), whether agent mode is offered. No authentication."""
    s = svc.settings
    sso = None
    if s.auth == "keys" and svc.oidc is not None and s.oidc_client_id and s.oidc_authorization_url \
            and s.oidc_token_url:
        sso = {"client_id": s.oidc_client_id, "authorization_endpoint": s.oidc_authorization_url,
               "token_endpoint": s.oidc_token_url, "scope": s.oidc_scope}
    return {"auth": s.auth, "sso": sso, "agent": "agent" in svc.answerers}


@router.get("/v1/me", tags=["web page"], responses=ERRORS)
def me(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Who the caller is: name, groups, whether an administrator, how they signed in."""
    return {"name": who.name, "groups": sorted(who.groups), "admin": who.is_admin(svc.settings.admin_group),
            "realm": who.realm}


@router.get("/v1/ingest/report", tags=["documents"], responses={**ERRORS, **FORBIDDEN, **NOT_FOUND})
def last_ingest_report(svc: Services = Depends(services), _: Principal = Depends(admin)) -> JSONResponse:
    """The report of the last `quelle ingest` run on this index: counts, failures with their reasons, warnings,
    skipped files, when it finished. Administrators only."""
    path = svc.settings.last_ingest_report()
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError("no ingestion report yet: `quelle ingest` writes one when it runs") from None
    return JSONResponse(body)
