"""The connection pool of the hub's Redis client on one server: redis-py's pool without its per-checkout toll.

redis-py 8.1's `BlockingConnectionPool` takes, for every command and pipeline, a Condition, a
timeout, a lock, four observability calls and a zero-timeout socket read that looks for stray data;
its release dispatches an event. py-spy put that at a tenth of a worker's CPU during a campaign
(tests/bench/campaign.py). This pool keeps what the hub relies on: at most `max_connections`, a
caller waits for a free one (up to `timeout`, then `ConnectionError`) instead of failing, and a
connection that was dropped is connected again when it is next handed out. The stray-data check is
left out because redis-py itself disconnects a connection whose command was interrupted (its
`read_response` and `send_packed_command` close it on any exception), so a pooled connection cannot
hold an unread reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError


class LeanPool(ConnectionPool):
    def __init__(self, *args: Any, timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self._freed = asyncio.Condition()
        self._waiting = 0

    def _can_get(self) -> bool:
        return bool(self._available_connections) or len(self._in_use_connections) < self.max_connections

    async def get_connection(self, *_args: Any, **_options: Any) -> AbstractConnection:
        while not self._can_get():  # again after waking: another caller may have taken it meanwhile
            await self._wait_for_one()
        connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        if not connection.is_connected:
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                await self.release(connection)
                raise
        return connection

    async def _wait_for_one(self) -> None:
        self._waiting += 1
        try:
            async with self._freed:
                await asyncio.wait_for(self._freed.wait_for(self._can_get), self.timeout)
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        finally:
            self._waiting -= 1

    async def release(self, connection: AbstractConnection) -> None:
        self._in_use_connections.discard(connection)
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            await connection.disconnect()
        self._available_connections.append(connection)
        if self._waiting:  # every waiter looks again: one notified and then cancelled would strand the rest
            async with self._freed:
                self._freed.notify_all()
