"""What an emulator records of the hub's sends, per customer, with a long-poll wait for new ones.

Every emulator keeps one `Outbox`; the sandbox page, `omnihub chat`, the tests and the benchmark read
it through the emulator's `/_/outbox/{user}` route.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Sent:
    seq: int
    user_id: str
    text: str | None
    buttons: list[dict[str, str]] = field(default_factory=list)  # {"title", "payload"} as shown
    media: list[str] = field(default_factory=list)
    provider_id: str = ""
    status: str = "sent"
    at: float = field(default_factory=time.time)
    raw: dict[str, Any] = field(default_factory=dict)  # the request as the provider received it

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Outbox:
    def __init__(self, keep_per_user: int = 500) -> None:
        self._seq = itertools.count(1)
        self._by_user: dict[str, list[Sent]] = defaultdict(list)
        self._recent: deque[Sent] = deque(maxlen=100_000)  # all users, newest last: cheap "what is new"
        self._keep = keep_per_user
        self._changed = asyncio.Condition()
        self.total = 0

    async def record(self, sent_without_seq: dict[str, Any]) -> Sent:
        sent = Sent(seq=next(self._seq), **sent_without_seq)
        messages = self._by_user[sent.user_id]
        messages.append(sent)
        del messages[: -self._keep]
        self._recent.append(sent)
        self.total += 1
        async with self._changed:
            self._changed.notify_all()
        return sent

    def find(self, provider_id: str) -> Sent | None:
        for messages in self._by_user.values():
            for sent in messages:
                if sent.provider_id == provider_id:
                    return sent
        return None

    def after(self, user_id: str | None, seq: int) -> list[Sent]:
        pool = self._by_user.get(user_id, []) if user_id else self._recent
        newer: list[Sent] = []
        for sent in reversed(pool):  # both pools are in seq order: walk back only over what is new
            if sent.seq <= seq:
                break
            newer.append(sent)
        return newer[::-1]

    async def wait(self, user_id: str | None, seq: int, seconds: float) -> list[Sent]:
        """New messages after `seq`, waiting up to `seconds` for the first one."""
        deadline = time.monotonic() + seconds
        while not (found := self.after(user_id, seq)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return []
        return found
