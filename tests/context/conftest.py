"""The identity services wired on the test Redis, and contacts written the way turns write them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.context.history import HistoryEntry
from bot.context.identity import Identities
from bot.context.merge import Merger
from bot.context.privacy import Privacy
from bot.context.store import Changes, ContextStore
from bot.pipeline.ingest import Ingest

PARTITIONS = 4
DEDUPE_TTL = 3600


@dataclass
class Parts:
    redis: Redis
    store: ContextStore
    identities: Identities
    merger: Merger
    privacy: Privacy
    ingest: Ingest

    async def contact(
        self, cid: str, profile: dict[str, str], conversation: dict[str, str] | None = None,
        history: tuple[tuple[str, float, str], ...] = (),
    ) -> None:
        """A contact with an index key per identity and phone, and history entries (channel, at, text)."""
        entries = [HistoryEntry(id=f"{cid}-{n}", channel=ch, direction="in", at=at, author="customer", text=tx)
                   for n, (ch, at, tx) in enumerate(history)]
        await self.store.commit(cid, Changes(profile=profile, conversation=conversation or {}, history=entries))
        for key in self.identities.index_keys(profile):
            await self.redis.set(key, cid)
        for name in profile:
            if name.startswith("t:"):
                await self.redis.sadd(keys.tag(name[2:]), cid)


@pytest.fixture
def parts(redis: Redis) -> Parts:
    store = ContextStore(redis, history_cap=50)
    identities = Identities(redis, store, "RU")
    return Parts(
        redis, store, identities, Merger(redis, identities, 50, DEDUPE_TTL, PARTITIONS),
        Privacy(redis, identities, PARTITIONS),
        Ingest(redis, identities, PARTITIONS, DEDUPE_TTL),
    )
