"""`/api/v1/conversations`: the queue and the agents' side of a conversation (bot.handoff.desk).

With an admin key, `agent_id` in the body names the agent who acts; every change goes through the
contact's partition, so the answer reflects what the worker applied (409 when it refused).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from bot.api.deps import ApiKey, HubDep
from bot.handoff.desk import ConversationView, DeskError
from bot.hub import Hub
from bot.models import Button

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])
ListedMode = Literal["bot", "queued", "assigned", "resolved"]


class ConversationList(BaseModel):
    items: list[ConversationView]


class AgentAction(BaseModel):
    agent_id: str = Field(min_length=1, max_length=100)


class AgentText(AgentAction):
    text: str = Field(min_length=1, max_length=4096)


class AgentReply(AgentText):
    buttons: list[Button] = Field(default_factory=list, max_length=10)


class Transfer(AgentAction):
    to_agent: str | None = Field(default=None, max_length=100)
    to_team: str | None = Field(default=None, max_length=100)


class Created(BaseModel):
    id: str


@contextlib.contextmanager
def desk_answers() -> Iterator[None]:
    """The desk's refusals as HTTP answers (404 unknown, 409 held by someone else, 504 not applied yet)."""
    try:
        yield
    except DeskError as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.get("", response_model=ConversationList)
async def list_conversations(
    hub: HubDep, _: ApiKey, mode: ListedMode = "queued", limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ConversationList:
    """Queued ones oldest first (the order they are served in); the others by latest activity."""
    if mode == "queued":
        return ConversationList(items=await hub.desk.queued(limit=limit))
    found = await hub.desk.assigned(limit=limit) if mode == "assigned" else await hub.desk.by_mode(mode, limit)
    return ConversationList(items=found)


@router.get("/{conversation_id}", response_model=ConversationView)
async def get_conversation(conversation_id: str, hub: HubDep, _: ApiKey) -> ConversationView:
    with desk_answers():
        return await hub.desk.get(conversation_id)


@router.post("/{conversation_id}/assign", response_model=ConversationView)
async def assign(conversation_id: str, body: AgentAction, hub: HubDep, _: ApiKey) -> ConversationView:
    """Claim: 409 when another agent holds it or the agent has no free slot."""
    await _known_agent(hub, body.agent_id)
    with desk_answers():
        return await hub.desk.assign(conversation_id, body.agent_id)


@router.post("/{conversation_id}/messages", status_code=202, response_model=Created)
async def reply(conversation_id: str, body: AgentReply, hub: HubDep, _: ApiKey) -> Created:
    """It reaches the customer on the channel they last wrote from."""
    await _known_agent(hub, body.agent_id)
    with desk_answers():
        return Created(id=await hub.desk.reply(conversation_id, body.agent_id, body.text, tuple(body.buttons)))


@router.post("/{conversation_id}/notes", status_code=201, response_model=Created)
async def note(conversation_id: str, body: AgentText, hub: HubDep, _: ApiKey) -> Created:
    """An internal note: in the history, never sent to the customer."""
    await _known_agent(hub, body.agent_id)
    with desk_answers():
        return Created(id=await hub.desk.note(conversation_id, body.agent_id, body.text))


@router.post("/{conversation_id}/resolve", response_model=ConversationView)
async def resolve(conversation_id: str, body: AgentAction, hub: HubDep, _: ApiKey) -> ConversationView:
    """Done: the customer is asked for a 1–5 rating, then the bot has them again."""
    await _known_agent(hub, body.agent_id)
    with desk_answers():
        return await hub.desk.resolve(conversation_id, body.agent_id)


@router.post("/{conversation_id}/transfer", response_model=ConversationView)
async def transfer(conversation_id: str, body: Transfer, hub: HubDep, _: ApiKey) -> ConversationView:
    """To another agent (`to_agent`) or to a team's queue (`to_team`)."""
    if (body.to_agent is None) == (body.to_team is None):
        raise HTTPException(422, "give exactly one of to_agent and to_team")
    await _known_agent(hub, body.agent_id)
    if body.to_agent is not None:
        await _known_agent(hub, body.to_agent)
    with desk_answers():
        return await hub.desk.transfer(conversation_id, body.agent_id, to_agent=body.to_agent, to_team=body.to_team)


async def _known_agent(hub: Hub, agent_id: str) -> None:
    if await hub.agents.get(agent_id) is None:
        raise HTTPException(404, f"no agent {agent_id!r}")
