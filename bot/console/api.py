"""`/console/api/*`: the JSON the console page reads and the actions it takes, as the signed-in agent.

Every route needs a session (401) and a role that handles conversations (403); every state-changing
route also needs the session's CSRF token in `X-CSRF-Token` (403). Reading or acting on a conversation
the agent may not see (`bot.console.access`) is a 403 before the desk is asked. Actions go through
`bot.handoff.desk.Desk`, which records the agent id with each and applies it in the contact's
partition; its refusals (409: another agent holds it) reach the browser with their reason.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, HttpUrl

from bot.console.access import HANDLERS, may_see, oversees
from bot.console.campaigns import CAMPAIGNERS
from bot.console.canned import canned_for
from bot.console.deps import Acting, AnyRole, Me, Parts, SignedIn
from bot.handoff import sla
from bot.handoff.desk import ConversationView, DeskError
from bot.models import Button

router = APIRouter(prefix="/console/api", include_in_schema=False)


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=4096)
    buttons: list[str] = Field(default_factory=list, max_length=10)  # quick replies, by title
    attachment: HttpUrl | None = None  # a link sent with the text


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=4096)


class TransferIn(BaseModel):
    agent_id: str | None = Field(None, max_length=100)
    team: str | None = Field(None, max_length=100)


async def visible(parts: Parts, me: SignedIn, conversation_id: str) -> ConversationView:
    """The conversation, if this agent may see it; 404 and 403 otherwise (checked before any action)."""
    try:
        view = await parts.desk.get(conversation_id)
    except DeskError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if not may_see(me.agent, view.mode, view.assignee, view.team):
        raise HTTPException(403, "this conversation is neither yours nor in your team's queue")
    return view


async def desk_call(action: Awaitable[object]) -> dict[str, bool]:
    try:
        await action
    except DeskError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return {"ok": True}


async def sla_breaches(parts: Parts) -> list[str]:
    """Contact ids whose first-response or reply clock (`bot.handoff.sla`) is past its deadline."""
    return sorted({cid for _, cid in await sla.overdue(parts.hub.redis)})


@router.get("/me")
async def whoami(me: AnyRole) -> dict[str, Any]:
    """Who is signed in (any role), and what the console holds for them: conversations (`handles`), the
    Campaigns page (`campaigns`: a marketer's page goes straight there)."""
    agent = me.agent
    return {"id": agent.id, "email": agent.email, "name": agent.name, "role": agent.role,
            "teams": list(agent.teams), "handles": agent.role in HANDLERS, "oversees": oversees(agent),
            "campaigns": agent.role in CAMPAIGNERS, "csrf": me.session.csrf}


@router.get("/conversations")
async def conversations(parts: Parts, me: Me) -> dict[str, Any]:
    """The queue this agent may take from, and the conversations they hold (supervisors: every one)."""
    queue = [v.model_dump() for v in await parts.desk.queued() if may_see(me.agent, v.mode, v.assignee, v.team)]
    answer: dict[str, Any] = {"queue": queue}
    if oversees(me.agent):
        assigned = await parts.desk.assigned()
        answer["mine"] = [v.model_dump() for v in assigned if v.assignee == me.agent.id]
        answer["others"] = [v.model_dump() for v in assigned if v.assignee != me.agent.id]
        answer["sla_breaches"] = await sla_breaches(parts)
    else:
        answer["mine"] = [v.model_dump() for v in await parts.desk.assigned(me.agent.id)]
    return answer


@router.get("/conversations/{conversation_id}")
async def conversation(conversation_id: str, parts: Parts, me: Me) -> dict[str, Any]:
    """One conversation with everything the agent reads before answering (one fetch for the pane)."""
    view = await visible(parts, me, conversation_id)
    history = await parts.desk.history(conversation_id)
    profile = (await parts.desk.profile(conversation_id)).model_dump()
    return {
        "conversation": view.model_dump(),
        "history": [entry.model_dump(mode="json", exclude={"answers"}) for entry in history],
        "profile": profile,
        "canned": canned_for(profile),
        "whatsapp_template": parts.hub.settings.twilio.whatsapp_fallback_template,
    }


@router.get("/agents")
async def agents(parts: Parts, me: Me) -> dict[str, Any]:
    """Whom to transfer to (and who is online: a transfer to an absent agent would bounce back to the
    queue); supervisors also see each agent's load and capacity."""
    listed = [a for a in await parts.agents.list() if not a.disabled and a.role != "marketer"]
    teams = sorted(set(await parts.hub.teams.all()) | {t for a in listed for t in a.teams})
    online = await parts.agents.online_ids()
    people: list[dict[str, Any]] = [
        {"id": a.id, "name": a.name, "role": a.role, "teams": list(a.teams), "online": a.id in online}
        for a in listed]
    if oversees(me.agent):
        loads = await parts.agents.loads([a.id for a in listed])
        for person, agent in zip(people, listed, strict=True):
            person.update(capacity=agent.capacity, load=loads[agent.id])
    return {"agents": people, "teams": teams}


@router.post("/conversations/{conversation_id}/claim")
async def claim(conversation_id: str, parts: Parts, me: Acting) -> dict[str, Any]:
    await visible(parts, me, conversation_id)
    return await desk_call(parts.desk.assign(conversation_id, me.agent.id, actor=me.agent.id))


@router.post("/conversations/{conversation_id}/reply")
async def reply(conversation_id: str, body: ReplyIn, parts: Parts, me: Acting) -> dict[str, Any]:
    await visible(parts, me, conversation_id)
    text = f"{body.text}\n{body.attachment}" if body.attachment else body.text
    buttons = tuple(Button(title=title, payload=title) for title in body.buttons if title.strip())
    return await desk_call(parts.desk.reply(conversation_id, me.agent.id, text, buttons=buttons,
                                            may_answer_any=oversees(me.agent)))


@router.post("/conversations/{conversation_id}/notes")
async def note(conversation_id: str, body: NoteIn, parts: Parts, me: Acting) -> dict[str, Any]:
    await visible(parts, me, conversation_id)
    return await desk_call(parts.desk.note(conversation_id, me.agent.id, body.text))


@router.post("/conversations/{conversation_id}/transfer")
async def transfer(conversation_id: str, body: TransferIn, parts: Parts, me: Acting) -> dict[str, Any]:
    if (body.agent_id is None) == (body.team is None):
        raise HTTPException(422, "name either an agent_id or a team")
    await visible(parts, me, conversation_id)
    return await desk_call(parts.desk.transfer(conversation_id, me.agent.id, to_agent=body.agent_id,
                                               to_team=body.team))


@router.post("/conversations/{conversation_id}/resolve")
async def resolve(conversation_id: str, parts: Parts, me: Acting) -> dict[str, Any]:
    await visible(parts, me, conversation_id)
    return await desk_call(parts.desk.resolve(conversation_id, me.agent.id))
