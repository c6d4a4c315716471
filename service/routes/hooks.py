"""Webhooks: changes named by a signed request, pushes to a repository Quelle keeps a checkout of; and where
their work (and the folder watcher's) can be seen. service/hooks.py has the rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from service.auth import Principal
from service.errors import NotFoundError
from service.hooks import HookRefused, check_signature, check_timestamp, json_object, under_roots
from service.routes.common import ERRORS, FORBIDDEN, admin
from service.schemas import ErrorOut
from service.state import Services, services

router = APIRouter(prefix="/v1/hooks", tags=["webhooks"])

REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "a malformed body"},
    401: {"model": ErrorOut, "description": "a missing or wrong signature, a timestamp out of the allowed window, "
                                            "or a replay"},
    403: {"model": ErrorOut, "description": "a path outside the folders open to webhooks, or an unknown repository"},
    404: {"model": ErrorOut, "description": "webhooks are off (no QUELLE_WEBHOOK_SECRET)"}}
MAX_PATHS = 100_000


def _enabled(svc: Services) -> str:
    if svc.settings.webhook_secret is None or svc.jobs is None:
        raise HookRefused(404, "webhooks are off: set QUELLE_WEBHOOK_SECRET (and QUELLE_WATCH_ROOTS)")
    return svc.settings.webhook_secret.get_secret_value()


def _accepted(job: Any, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=202, content={"job": job.id, "status": job.status,
                                                  "status_url": f"/v1/hooks/jobs/{job.id}", **extra})


@router.post("/ingest", status_code=202, responses=REFUSED)
async def ingest_hook(request: Request, svc: Services = Depends(services),
                      x_quelle_signature: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Changed and deleted paths, e.g. from a document system's own hook: `{"timestamp": <Unix seconds>,
    "changed": ["/srv/docs/a.pdf"], "deleted": ["/srv/docs/old/"]}`, signed with `X-Quelle-Signature:
    sha256=<HMAC-SHA256 of the raw body>`. Paths must be absolute and under QUELLE_WATCH_ROOTS (a folder stands
    for everything in it). 202 with a job; the index follows once the job is done."""
    secret = _enabled(svc)
    body = await request.body()
    check_signature(secret, body, x_quelle_signature, "X-Quelle-Signature")
    data = json_object(body)
    tolerance = svc.settings.webhook_tolerance
    check_timestamp(data.get("timestamp"), tolerance)
    assert svc.jobs is not None
    if not svc.jobs.seen["quelle"].first_time(x_quelle_signature or ""):
        raise HookRefused(401, "this signed request was received already (a replay)")
    lists = {}
    for name in ("changed", "deleted"):
        value = data.get(name, [])
        if not isinstance(value, list) or len(value) > MAX_PATHS:
            raise HookRefused(400, f"'{name}' must be a list of at most {MAX_PATHS} paths")
        lists[name] = value
    if not lists["changed"] and not lists["deleted"]:
        raise HookRefused(400, "name at least one path in 'changed' or 'deleted'")
    roots = svc.settings.watch_roots or svc.settings.watch
    changed = under_roots(lists["changed"], roots, "changed")
    deleted = under_roots(lists["deleted"], roots, "deleted")
    return _accepted(svc.jobs.submit("hook", changed, deleted))


@router.post("/github", status_code=202, responses={**REFUSED, 200: {"description": "a ping, or an event that "
                                                                      "asks for nothing"}})
async def github_hook(request: Request, svc: Services = Depends(services),
                      x_hub_signature_256: Annotated[str | None, Header()] = None,
                      x_github_event: Annotated[str | None, Header()] = None,
                      x_github_delivery: Annotated[str | None, Header()] = None) -> JSONResponse:
    """A push to a repository of QUELLE_GIT_CHECKOUTS (GitHub's push event and signature, `X-Hub-Signature-256`;
    other hosts that send the same work too): its checkout is fetched from its configured remote and moved to
    the pushed branch's head, and the files changed and deleted since are applied as one job."""
    secret = _enabled(svc)
    body = await request.body()
    check_signature(secret, body, x_hub_signature_256, "X-Hub-Signature-256")
    data = json_object(body)
    if x_github_event == "ping":
        return JSONResponse({"ok": True, "zen": "pong"})
    if x_github_event != "push":
        return JSONResponse({"ignored": f"event {x_github_event!r}: only push events change documents"})
    assert svc.jobs is not None
    if x_github_delivery and not svc.jobs.seen["github"].first_time(x_github_delivery):
        raise HookRefused(401, f"delivery {x_github_delivery} was received already (a replay)")
    repo = data.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    if not isinstance(name, str):
        raise HookRefused(400, "a push event names its repository.full_name")
    checkout = next((c.path for c in svc.settings.git_checkouts if c.repository.lower() == name.lower()), None)
    if checkout is None:
        raise HookRefused(403, f"repository {name!r} has no checkout here (QUELLE_GIT_CHECKOUTS)")
    return _accepted(svc.jobs.submit("git", [], [], checkout=Path(checkout)), repository=name)


@router.get("/status", responses={**ERRORS, **FORBIDDEN})
def hooks_status(svc: Services = Depends(services), _: Principal = Depends(admin)) -> dict[str, Any]:
    """Administrators: the folder watcher (what it watches, pending changes, its last run) and the last webhook
    jobs, newest first."""
    watcher = svc.watcher.status.__dict__ if svc.watcher is not None else None
    jobs = svc.jobs.recent() if svc.jobs is not None else []
    return {"watch": watcher, "queued": svc.jobs.queued() if svc.jobs else 0, "jobs": [j.out() for j in jobs]}


@router.get("/jobs/{job_id}", responses={**ERRORS, **FORBIDDEN, 404: {"model": ErrorOut,
                                                                     "description": "no such job (or too old)"}})
def hook_job(job_id: Annotated[str, PathParam(max_length=64)], svc: Services = Depends(services),
             _: Principal = Depends(admin)) -> dict[str, Any]:
    """Administrators: one webhook job: queued, running, done (with its ingestion report) or failed (why)."""
    job = svc.jobs.get(job_id) if svc.jobs is not None else None
    if job is None:
        raise NotFoundError(f"no webhook job {job_id!r} (the last 200 are kept)")
    return job.out()
