"""`/console/live`: the WebSocket that tells a signed-in agent's browser what to re-fetch.

Refused before the handshake completes (HTTP 403) without a session or from another site's page
(Origin: a cookie rides along on a cross-site WebSocket, SameSite aside, so the origin is the check).
Each socket's `Listener` takes only the notices its agent may see (bot.console.live). The browser
pings every 20 s; each ping is the agent's heartbeat and re-checks the session, so a socket dies with
its session at logout.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from bot.console.access import HANDLERS
from bot.console.deps import ConsoleParts, SignedIn, console_parts, same_origin, signed_in_agent
from bot.console.live import Listener, announce_presence

router = APIRouter(prefix="/console")
POLICY_VIOLATION = 1008


@router.websocket("/live")
async def live(socket: WebSocket) -> None:
    parts = console_parts(socket)
    me = await signed_in_agent(socket, parts)
    if me is None or me.agent.role not in HANDLERS or not same_origin(socket, parts.hub.settings.public_url):
        await socket.close(POLICY_VIOLATION)  # before accept: the handshake is answered 403
        return
    await socket.accept()
    await parts.agents.heartbeat(me.agent.id)
    await announce_presence(parts.hub.redis, me.agent.id)
    listener = Listener(me.agent)
    parts.fanout.join(listener)
    tasks = [asyncio.create_task(_forward(socket, listener)), asyncio.create_task(_pings(socket, me, parts))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        await parts.fanout.leave(listener)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the browser may have closed it first
            await socket.close()


async def _forward(socket: WebSocket, listener: Listener) -> None:
    while True:
        notice = await listener.inbox.get()
        await socket.send_json({"event": "resync"} if notice is None else notice.model_dump())


async def _pings(socket: WebSocket, me: SignedIn, parts: ConsoleParts) -> None:
    while True:
        await socket.receive_text()
        if await parts.sessions.find(me.session.token) is None:
            await socket.close(POLICY_VIOLATION, "signed out")
            return
        await parts.agents.heartbeat(me.agent.id)
