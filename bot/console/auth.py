"""Signing in and out of the console: a plain HTML form, a session cookie, a rate limit on failures.

The login form works without JavaScript (a POST that answers 303 to the console or the form again with
the reason), so a password manager and a screen reader see an ordinary form. The cookie is HttpOnly
(no script reads it), SameSite=Strict (no other site's page sends it) and Secure whenever the hub is
reached over https; the session behind it is deleted on logout.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from bot.console.deps import COOKIE, Parts, check_csrf, same_origin, signed_in_agent
from bot.console.live import announce_presence
from bot.console.sessions import LOGIN_WINDOW_SECONDS

STATIC = Path(__file__).resolve().parent / "static"
PAGE_HEADERS = {  # the console's pages load only their own files, and no other site may frame them
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(prefix="/console", include_in_schema=False)


def login_page(message: str = "", status: int = 200, email: str = "") -> HTMLResponse:
    """The form, with why the last try failed and the email typed (both escaped: they are input)."""
    page = (STATIC / "login.html").read_text(encoding="utf-8")
    page = page.replace("{{ message }}", html.escape(message)).replace("{{ email }}", html.escape(email))
    return HTMLResponse(page, status, headers=PAGE_HEADERS)


def secure(request: Request, public_url: str | None) -> bool:
    return request.url.scheme == "https" or (public_url or "").startswith("https://")


@router.get("/login")
async def login_form(request: Request, parts: Parts) -> Response:
    if await signed_in_agent(request, parts) is not None:
        return RedirectResponse("/console", 303)
    return login_page()


@router.post("/login")
async def login(
    request: Request, parts: Parts, email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    if not same_origin(request, parts.hub.settings.public_url):
        return login_page("This form was sent from another site.", 403)
    client = request.client.host if request.client else "unknown"
    if await parts.limiter.blocked(email, client):
        minutes = LOGIN_WINDOW_SECONDS // 60
        return login_page(f"Too many failed sign-ins. Try again in {minutes} minutes.", 429, email)
    agent = await parts.agents.verify(email, password)
    if agent is None:
        await parts.limiter.failed(email, client)
        return login_page("Wrong email or password.", 401, email)
    await parts.limiter.succeeded(email, client)
    session = await parts.sessions.open(agent.id)
    response = RedirectResponse("/console", 303)
    response.set_cookie(COOKIE, session.token, max_age=parts.sessions.ttl, path="/console", httponly=True,
                        samesite="strict", secure=secure(request, parts.hub.settings.public_url))
    return response


@router.post("/logout")
async def logout(request: Request, parts: Parts) -> Response:
    """End the session server-side (the cookie is worthless from now on, wherever a copy of it is)."""
    me = await signed_in_agent(request, parts)
    if me is None:
        raise HTTPException(401, "not signed in")
    check_csrf(request, me)
    await parts.sessions.close(me.session.token)
    await parts.agents.set_offline(me.agent.id)  # gone: the router gives their conversations to others
    await announce_presence(parts.hub.redis, me.agent.id)
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict",
                           secure=secure(request, parts.hub.settings.public_url))
    return response
