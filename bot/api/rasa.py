"""`POST /rasa/webhook`: Omnihub as Rasa's action server (`action_endpoint` in Rasa's endpoints.yml).

Authenticated by `?token=<OMNIHUB_RASA_TOKEN>`, which is what Rasa sends for `action_endpoint:
token:` — 401 without it, 403 with a wrong one or when no token is configured (the endpoint is off).
A hub whose channels are all sandboxed takes `scripts/rasa-env`'s dev token when none is configured,
as it has a demo agent: trying Rasa out locally is then one URL, not two settings kept in step.
Our built-in actions answer here (bot.rasa.actions); any other action goes to the team's own
rasa-sdk server (`OMNIHUB_RASA_ACTIONS_URL`) as it came, and its answer comes back as it went.
"""

from __future__ import annotations

import secrets

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from bot.api.webhooks import read_body
from bot.handoff.customer_turns import contact_of
from bot.hub import Hub
from bot.rasa.actions import BUILT_IN, NEEDS_CONTACT, ActionAnswer, ActionCall, ActionRejected

router = APIRouter(tags=["rasa"])
FORWARD_TIMEOUT_SECONDS = 30.0
SANDBOX_TOKEN = "omnihub-dev-rasa-token"  # scripts/rasa-env's default


@router.post("/rasa/webhook", summary="Rasa action server (rasa-sdk protocol)")
async def rasa_webhook(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    _authenticate(hub, request.query_params.get("token"))
    body = await read_body(request, hub.settings.max_body_bytes)
    try:
        call = ActionCall.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise HTTPException(422, f"not an action call: {where}: {error['msg']}") from None
    name = call.next_action
    try:
        answer = await _run(hub, call)
    except ActionRejected as exc:
        return JSONResponse({"error": f"Custom action '{name}' rejected execution: {exc}", "action_name": name}, 400)
    if answer is not None:
        return JSONResponse(answer)
    if hub.settings.rasa.actions_url is None:
        return JSONResponse({"error": f"No registered action found for name '{name}'.", "action_name": name}, 404)
    return await _forward(hub.settings.rasa.actions_url, name, body)


async def _run(hub: Hub, call: ActionCall) -> ActionAnswer | None:
    """A built-in action's answer; None for an action that is not ours."""
    name = call.next_action
    if name == "action_handoff" and (team := call.slot("handoff_team")) and await hub.teams.get(team) is None:
        raise ActionRejected(f"no team {team!r}")
    if name in BUILT_IN:
        return BUILT_IN[name](call)
    if name in NEEDS_CONTACT:
        contact = await hub.store.load(contact_of(call.sender_id))
        if not contact.profile or "merged_into" in contact.profile:
            raise ActionRejected(f"no contact for the conversation {call.sender_id!r}")
        return NEEDS_CONTACT[name](call, contact)
    return None


def action_token(hub: Hub) -> str | None:
    """The token Rasa must send: the configured one, else in a sandbox hub the dev token."""
    configured = hub.settings.rasa.token
    if configured is not None:
        return configured.get_secret_value()
    return SANDBOX_TOKEN if hub.all_sandbox else None


def _authenticate(hub: Hub, token: str | None) -> None:
    expected = action_token(hub)
    if expected is None:
        raise HTTPException(403, "the Rasa action server is off: set OMNIHUB_RASA_TOKEN (and Rasa's "
                                 "action_endpoint token)")
    if not token:
        raise HTTPException(401, "missing ?token= (Rasa sends the action_endpoint token)")
    if not secrets.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(403, "wrong token")


async def _forward(url: str, name: str, body: bytes) -> Response:
    """The team's own action server answers; when it cannot be reached, Rasa hears a 502 with why."""
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_SECONDS) as http:
            answered = await http.post(url, content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        detail = {"error": f"the action server at {url} did not answer: {exc!r}", "action_name": name}
        return JSONResponse(detail, 502)
    return Response(answered.content, answered.status_code, media_type="application/json")

