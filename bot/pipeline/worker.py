"""The worker side of a partition: take inbound events in order, run the turn, hand replies to the sender.

Per entry: load the contact, run the turn, save its changes (one MULTI on the contact's slot). Per
batch: append the replies to the outbound stream and acknowledge the inbound entries (one MULTI on
the partition's slot). If the process dies between the two, the replayed entry is recognised by the
conversation's `last` field and its replies are rebuilt from the history instead of being answered
twice. Contacts of one batch run concurrently; the entries of one contact strictly one after another.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.context.linking import Linker
from bot.context.store import ContextStore
from bot.models import Button, EventKind, InboundEvent, OutboundMessage, Reply
from bot.pipeline.streams import Entry, consume, stream_id
from bot.pipeline.turns import TurnHandler

log = logging.getLogger(__name__)
MAX_FAILURES = 3


class Worker:
    def __init__(self, redis: Redis, store: ContextStore, turns: TurnHandler, linker: Linker, batch: int) -> None:
        self.redis = redis
        self.store = store
        self.turns = turns
        self.linker = linker
        self.batch = batch
        self._failures: dict[str, int] = defaultdict(int)

    async def run(self, p: int, halt: asyncio.Event) -> None:
        await consume(self.redis, keys.inbound(p), f"p{p}", self.batch, halt, lambda e: self._batch(p, e))

    async def _batch(self, p: int, entries: list[Entry]) -> None:
        by_contact: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_contact[entry[1]["c"]].append(entry)
        results = await asyncio.gather(*(self._contact(cid, items) for cid, items in by_contact.items()))
        done = [entry_id for finished, _ in results for entry_id in finished]
        outbound = [message for _, messages in results for message in messages]
        async with self.redis.pipeline(transaction=True) as pipe:
            for message in outbound:
                pipe.xadd(keys.outbound(p), {"m": message.model_dump_json(exclude_defaults=True)})
            if done:
                pipe.xack(keys.inbound(p), keys.GROUP, *done)
            await pipe.execute()

    async def _contact(self, cid: str, entries: list[Entry]) -> tuple[list[str], list[OutboundMessage]]:
        """Process one contact's entries in order; stop at the first failure so order holds."""
        done: list[str] = []
        outbound: list[OutboundMessage] = []
        for entry_id, fields in entries:
            try:
                outbound += await self._entry(cid, entry_id, fields)
            except Exception:
                self._failures[entry_id] += 1
                if self._failures[entry_id] < MAX_FAILURES:
                    log.exception("entry %s of contact %s failed; will retry", entry_id, cid)
                    break
                log.exception("entry %s of contact %s failed %s times; dead-lettered", entry_id, cid, MAX_FAILURES)
                await self.redis.xadd("omni:dead", {"c": cid, "id": entry_id, "e": fields.get("e", "")}, maxlen=10_000)
            self._failures.pop(entry_id, None)
            done.append(entry_id)
        return done, outbound

    async def _entry(self, cid: str, entry_id: str, fields: dict[str, str]) -> list[OutboundMessage]:
        event = InboundEvent.model_validate_json(fields["e"])
        snapshot = await self.store.load(cid)
        last = snapshot.conversation.get("last")
        if last and stream_id(entry_id) <= stream_id(last):
            return await self._replay(cid, entry_id, event)
        prepared = await self.linker.prepare(cid, snapshot, event, entry_id)
        if prepared is None:  # the contact was merged or erased since: the event went to its new owner
            return []
        if event.kind is EventKind.status and event.status_of:
            changes: dict[str, Any] = {"st": str(event.status)}
            if event.error:
                changes["err"] = event.error
            await self.store.update_history(cid, ("pid", event.status_of), changes)
            return []
        outcome = await self.turns.handle(prepared.snapshot, event, entry_id, prepared.notice)
        existed, merged_into = await self.store.commit(cid, outcome.changes)
        await self.linker.settle(cid, prepared.snapshot, existed, merged_into)
        return outcome.outbound

    async def _replay(self, cid: str, entry_id: str, event: InboundEvent) -> list[OutboundMessage]:
        """The turn was saved but its replies were not queued: queue them again from the history."""
        log.info("entry %s was saved before a crash; re-queueing its replies", entry_id)
        return [
            OutboundMessage(
                id=item["id"], contact_id=cid, channel=event.channel, user_id=event.user_id,
                reply=Reply(text=item.get("tx"), buttons=tuple(Button(**b) for b in item.get("btn", ()))),
                author=item.get("by", "bot"), keyword_reply=item.get("kw", False),
            )
            for item in await self.store.recent_history(cid, 50)
            if item.get("src") == entry_id and item.get("d") == "out"
        ]
