"""Optimistic transactions: WATCH, read, MULTI/EXEC — and start over when someone wrote in between.

Merge, unmerge, erase and profile updates change keys that workers write without locks (a partition
has one owner, so turns never need one). Rather than make every turn take a lock for these rare
operations, the rare ones watch what they read and retry; a few attempts with a growing random pause
are enough, since a contact's keys change at the speed a customer types.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import WatchError

ATTEMPTS = 50
_T = TypeVar("_T")


async def until_committed(attempt: Callable[[], Awaitable[_T]], conflict: Callable[[], Exception]) -> _T:
    """Run `attempt` (one WATCH … EXEC) until it commits; raise `conflict()` after `ATTEMPTS`."""
    for n in range(ATTEMPTS):
        try:
            return await attempt()
        except WatchError:
            await asyncio.sleep(random.uniform(0, 0.002 * (n + 1)))
    raise conflict()
