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
    contact_ids = [str(cid) for cid in await hub.redis.zrevrange(keys.by_mode(mode), 0, limit - 1)]
    async with hub.redis.pipeline(transaction=False) as pipe:  # one round trip, not one per conversation
        for cid in contact_ids:
            pipe.hgetall(keys.conversation(cid))
        conversations = await pipe.execute()
    items = []
    for cid, conv in zip(contact_ids, conversations, strict=True):
        if conv and conv.get("mode", "bot") == mode:  # the index is a superset (bot.context.indexes)
            items.append(ConversationOut(
                id=conv.get("id", cid), contact_id=cid, mode=mode, channel=conv.get("ch"),
                user_id=conv.get("uid"), handoff_reason=conv.get("handoff"),
            ))
    return ConversationList(items=items)
