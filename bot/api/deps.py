"""Request dependencies: the process's Hub and the bearer API key check."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bot.context.store import new_id
from bot.hub import Hub

API_KEYS = "omni:apikeys"  # hash: sha256(key) -> key name
CALLER = "api_key"  # where `bot.api.guard` leaves the caller's key name in the request state


class Unauthorized(Exception):
    """No valid API key; the message says which way it is wrong."""


async def get_hub(request: Request) -> Hub:  # async: a sync dependency would hop to a thread
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]
_bearer = HTTPBearer(auto_error=False)  # declares the scheme in the OpenAPI schema


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, read as FastAPI's `HTTPBearer` reads it."""
    scheme, _, token = (authorization or "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


async def key_name(hub: Hub, token: str | None) -> str:
    """The name of the caller's key. With no admin token configured the API is open: the CLI serves it
    on loopback only in that case."""
    admin = hub.settings.admin_token
    if token is None:
        if admin is None:
            return "anonymous"
        raise Unauthorized("missing bearer API key")
    if admin is not None and secrets.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return "admin"
    name = await hub.redis.hget(API_KEYS, hashlib.sha256(token.encode()).hexdigest())
    if name is None:
        raise Unauthorized("unknown API key")
    return str(name)


async def require_api_key(
    request: Request, hub: HubDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The caller's key name: under `/api/` the guard checked it before the body was read."""
    checked: str | None = request.scope.get("state", {}).get(CALLER)
    if checked is not None:
        return checked
    try:
        return await key_name(hub, credentials.credentials if credentials else None)
    except Unauthorized as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


ApiKey = Annotated[str, Depends(require_api_key)]


IdempotencyKey = Annotated[str | None, Header(max_length=200, description="the same key: the same command, once")]
COMMAND_WAIT_SECONDS = 5.0  # how long a call waits for the worker to apply its command (then 504)


def command_id(prefix: str, cid: str, key: str | None) -> str:
    """A command's id: from the caller's Idempotency-Key when given (a retry is the same command)."""
    if key is None:
        return new_id(prefix)
    return prefix + hashlib.sha256(f"{cid}\n{key}".encode()).hexdigest()[:24]
