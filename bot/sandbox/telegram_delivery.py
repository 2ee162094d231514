"""How the Telegram emulator posts updates to the webhook: as Telegram does, in parallel, in order per chat.

Telegram delivers over up to `max_connections` simultaneous connections (a `setWebhook` parameter,
1-100, default 40), and the updates of one chat one after another: the next is posted only once the
webhook answered the previous one. Different chats do not wait for each other, so a hub is offered as
many webhooks at once as it would be by Telegram — no more (the emulator once posted as many as its
callers sent) and no fewer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
DEFAULT_CONNECTIONS = 40
CONNECTIONS = range(1, 101)  # what setWebhook's max_connections may be


@dataclass
class _Chat:
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # FIFO: updates keep the order they came in
    waiting: int = 0


class Deliveries:
    """At most `connections` posts at once; one at a time per chat, in the order they were asked for."""

    def __init__(self, connections: int = DEFAULT_CONNECTIONS) -> None:
        self.connections = 0
        self._slots: asyncio.Semaphore
        self.resize(connections)
        self._chats: dict[int, _Chat] = {}

    def resize(self, connections: int) -> None:
        """A new `max_connections` (clamped to Telegram's 1-100); posts under way finish as they are."""
        connections = min(max(connections, CONNECTIONS.start), CONNECTIONS.stop - 1)
        if connections != self.connections:
            self.connections, self._slots = connections, asyncio.Semaphore(connections)

    async def deliver(self, chat_id: int | None, post: Callable[[], Awaitable[T]]) -> T:
        """`post()` once the chat's earlier updates were answered and a connection is free; an update
        with no chat (a replayed payload of another kind) waits for a connection only."""
        if chat_id is None:
            async with self._slots:
                return await post()
        chat = self._chats.setdefault(chat_id, _Chat())
        chat.waiting += 1
        try:
            async with chat.turn, self._slots:  # the turn first: a chat waiting its turn holds no connection
                return await post()
        finally:
            chat.waiting -= 1
            if not chat.waiting:
                del self._chats[chat_id]


def chat_of(update: dict[str, Any]) -> int | None:
    """The chat an update belongs to: a message's, or for a button press its message's (or sender's)."""
    message = update.get("message") or update.get("edited_message") or update.get("channel_post")
    query = update.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message") or {"chat": query.get("from")}
    chat = message.get("chat") if isinstance(message, dict) else None
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    return chat_id if isinstance(chat_id, int) else None
