"""The agent console at `/console`: sign-in, the queue and conversations, live over a WebSocket; and the
marketers' Campaigns page at `/console/campaigns`.

One router gathers the pages, the JSON API and the socket, so the app mounts the console in one line.
"""

from fastapi import APIRouter

from bot.console import api, auth, campaigns, pages, websocket

router = APIRouter()
for part in (auth, pages, api, campaigns, websocket):
    router.include_router(part.router)
