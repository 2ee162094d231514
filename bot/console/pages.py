"""The console's pages (conversations, campaigns) and their static files: plain HTML, CSS and vanilla JS
modules, no build step, no CDN.

A page holds no data: it is served only with a live session (else a 303 to the login form), and its
script fetches everything from `/console/api/*`, which checks the session again on every request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from bot.console.auth import PAGE_HEADERS, STATIC
from bot.console.deps import Parts, signed_in_agent

ASSETS = {"console.js": "text/javascript", "conversation.js": "text/javascript", "dom.js": "text/javascript",
          "campaigns.js": "text/javascript", "funnel.js": "text/javascript", "console.css": "text/css",
          "campaigns.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate (ETag): an upgraded hub serves its new files at once

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def console(request: Request, parts: Parts) -> Response:
    if await signed_in_agent(request, parts) is None:
        return RedirectResponse("/console/login", 303)
    return FileResponse(STATIC / "console.html", headers=PAGE_HEADERS)


@router.get("/campaigns")
async def campaigns(request: Request, parts: Parts) -> Response:
    """The Campaigns page (its API answers 403 to a role without campaigns: the page says so)."""
    if await signed_in_agent(request, parts) is None:
        return RedirectResponse("/console/login", 303)
    return FileResponse(STATIC / "campaigns.html", headers=PAGE_HEADERS)


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:  # a fixed list: no path from the URL ever reaches the file system
        return PlainTextResponse(f"no console asset {name!r}\n", status_code=404)
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=NO_CACHE)
