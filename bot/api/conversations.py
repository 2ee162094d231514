"""`/api/v1/conversations`: conversations by mode, newest activity first."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from bot.api.deps import ApiKey, HubDep
from bot.context import keys

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


class ConversationOut(BaseModel):
    id: str
    contact_id: str
    mode: str
    channel: str | None
    user_id: str | None
    handoff_reason: str | None = None


class ConversationList(BaseModel):
    items: list[ConversationOut]


@router.get("", response_model=ConversationList)
async def list_conversations(
    hub: HubDep,
    _: ApiKey,
    mode: Literal["bot", "queued", "assigned", "resolved"] = "queued",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ConversationList:
    contact_ids = await hub.redis.zrevrange(keys.by_mode(mode), 0, limit - 1)
    items = []
    for cid in map(str, contact_ids):
        conv = await hub.redis.hgetall(keys.conversation(cid))
        if conv.get("mode", "bot") == mode:
            items.append(ConversationOut(
                id=conv.get("id", cid), contact_id=cid, mode=mode, channel=conv.get("ch"),
                user_id=conv.get("uid"), handoff_reason=conv.get("handoff"),
            ))
    return ConversationList(items=items)
