"""What every console route needs: the process's console parts, the signed-in agent, the CSRF check.

The parts are built once per process, on first use, around the desk and agent store of the hub the
lifespan built (so mounting the console is one `include_router` line and needs nothing in the lifespan).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from bot.console.access import HANDLERS
from bot.console.live import Fanout
from bot.console.sessions import LoginLimiter, Session, Sessions
from bot.handoff.agents import Agent, AgentStore
from bot.handoff.desk import Desk
from bot.hub import Hub

COOKIE = "omnihub_console"
CSRF_HEADER = "X-CSRF-Token"


@dataclass
class ConsoleParts:
    hub: Hub
    desk: Desk
    agents: AgentStore
    sessions: Sessions
    limiter: LoginLimiter
    fanout: Fanout


def console_parts(conn: HTTPConnection) -> ConsoleParts:
    state = conn.app.state
    parts: ConsoleParts | None = getattr(state, "console", None)
    if parts is None:
        hub: Hub = state.hub
        parts = ConsoleParts(hub, hub.desk, hub.agents, Sessions(hub.redis), LoginLimiter(hub.redis),
                             Fanout(hub.redis))
        state.console = parts
    return parts


Parts = Annotated[ConsoleParts, Depends(console_parts)]


@dataclass(frozen=True)
class SignedIn:
    session: Session
    agent: Agent


async def signed_in_agent(conn: HTTPConnection, parts: ConsoleParts) -> SignedIn | None:
    """The session's agent, or None: no cookie, an unknown or closed session, a removed or disabled agent."""
    session = await parts.sessions.find(conn.cookies.get(COOKIE))
    if session is None:
        return None
    agent = await parts.agents.get(session.agent_id)
    return SignedIn(session, agent) if agent is not None and not agent.disabled else None


async def require_agent(conn: HTTPConnection, parts: Parts) -> SignedIn:
    signed_in = await signed_in_agent(conn, parts)
    if signed_in is None:
        raise HTTPException(401, "sign in at /console/login")
    return signed_in


def check_csrf(conn: HTTPConnection, me: SignedIn) -> None:
    """A state-changing request must echo its session's CSRF token (a cross-site form cannot)."""
    if not me.session.csrf_matches(conn.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")


async def require_handler(me: Annotated[SignedIn, Depends(require_agent)]) -> SignedIn:
    if me.agent.role not in HANDLERS:
        raise HTTPException(403, f"a {me.agent.role} does not handle conversations")
    return me


async def require_acting_handler(conn: HTTPConnection, me: Annotated[SignedIn, Depends(require_handler)]) -> SignedIn:
    check_csrf(conn, me)
    return me


AnyRole = Annotated[SignedIn, Depends(require_agent)]
Me = Annotated[SignedIn, Depends(require_handler)]
Acting = Annotated[SignedIn, Depends(require_acting_handler)]


def same_origin(conn: HTTPConnection, public_url: str | None) -> bool:
    """Whether the request's Origin (if the browser sent one) is this hub: ours by Host, or the public URL."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request: those always carry Origin on POST and WebSocket
    host = conn.headers.get("host", "")
    allowed = {f"http://{host}", f"https://{host}"}
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return any(secrets.compare_digest(origin, candidate) for candidate in allowed)
