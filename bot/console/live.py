"""Live updates for the console: one Redis pub/sub subscription per API process, fanned out to sockets.

Workers publish a small JSON notice (`bot.handoff.live.Change`) on `omni:console` after every change a console
shows; every API process holds one subscription (started with its first socket, stopped with its last)
and offers each notice to each of its sockets, which take only what their agent may see. Browsers
then re-fetch what changed, so a notice carries ids and no customer data, and a lost notice costs at
most staleness until the next one (the page also re-fetches on reconnect). An agent coming online
or signing out is announced on `omni:console:presence` and makes every console reload its lists, so
the agents offered for a transfer are the ones there now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import ValidationError
from redis.asyncio import Redis

from bot.console.access import Person, may_see
from bot.handoff.live import CONSOLE, Change
from bot.redis_server import REDIS_FAILURES

QUEUE_LIMIT = 256  # notices a slow socket may lag behind before it is told to reload everything
PRESENCE = "omni:console:presence"  # an agent came online or signed out (the message is their id)
RESYNC = None  # in an inbox: "reload everything" (an overflow, a lost subscription, an agent came or went)
Notice = Change | None

log = logging.getLogger(__name__)


class Listener:
    """One socket's inbox, for one agent: it takes only the notices that agent may see now or saw
    before (so a conversation transferred away leaves their lists), deciding as the notice arrives —
    a busy hub then wakes only the sockets a notice concerns. Bounded: an overflow becomes one resync."""

    def __init__(self, agent: Person) -> None:
        self.agent = agent
        self.inbox: asyncio.Queue[Notice] = asyncio.Queue(QUEUE_LIMIT)
        self.shown: set[str] = set()  # conversations this socket was told about and may still list

    def offer(self, notice: Notice) -> None:
        if notice is not None:
            visible = may_see(self.agent, notice.mode, notice.assignee, notice.team)
            if not visible and notice.conversation not in self.shown:
                return
            (self.shown.add if visible else self.shown.discard)(notice.conversation)
        try:
            self.inbox.put_nowait(notice)
        except asyncio.QueueFull:
            while not self.inbox.empty():
                self.inbox.get_nowait()
            self.inbox.put_nowait(RESYNC)


class Fanout:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None

    def join(self, listener: Listener) -> None:
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="console-fanout")

    async def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if not self.listeners and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        """Subscribe, and subscribe again after Redis went away (sockets are told to resync then)."""
        delay = 0.1
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CONSOLE, PRESENCE)
                    self._broadcast(RESYNC)  # whatever was published while we were away
                    delay = 0.1
                    async for message in pubsub.listen():
                        if message.get("channel") == PRESENCE:
                            self._broadcast(RESYNC)
                        elif (notice := _parse(message.get("data"))) is not None:
                            self._broadcast(notice)
            except REDIS_FAILURES as exc:
                log.warning("console live updates: Redis unavailable, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _broadcast(self, notice: Notice) -> None:
        for listener in list(self.listeners):
            listener.offer(notice)


def _parse(data: object) -> Change | None:
    if not isinstance(data, str | bytes):
        return None
    try:
        return Change.model_validate_json(data)
    except ValidationError:
        log.warning("console live updates: ignored a notice that is not a Change: %r", data)
        return None


async def announce_presence(redis: Redis, agent_id: str) -> None:
    await redis.publish(PRESENCE, agent_id)
