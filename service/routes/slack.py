"""The chat listener's endpoint (service/slack.py): Slack's Events API, verified by the app's signing secret."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from service.hooks import HookRefused, json_object
from service.slack import verify
from service.state import Services, services

router = APIRouter(prefix="/v1/chat/slack", tags=["chat"])


@router.post("/events", responses={401: {"description": "a missing or wrong signature, or an old timestamp"},
                                   404: {"description": "the chat listener is off (no QUELLE_SLACK_SIGNING_SECRET)"}})
async def slack_events(request: Request, svc: Services = Depends(services),
                       x_slack_request_timestamp: Annotated[str | None, Header()] = None,
                       x_slack_signature: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """Slack's Events API (Request URL of the app's Event Subscriptions, with `app_mention` and `message.im`):
    answers the URL verification; acknowledges mentions and direct messages at once and answers them in their
    thread, from the documents the Slack user may read (QUELLE_SLACK_USERS; anyone else: public documents)."""
    listener = svc.slack
    if listener is None:
        raise HookRefused(404, "the chat listener is off: set QUELLE_SLACK_SIGNING_SECRET and QUELLE_SLACK_BOT_TOKEN")
    body = await request.body()
    verify(listener.signing_secret, body, x_slack_request_timestamp, x_slack_signature)
    return listener.receive(json_object(body), str(request.base_url))
