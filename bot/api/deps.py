"""Request dependencies: the process's Hub and the bearer API key check."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bot.hub import Hub

API_KEYS = "omni:apikeys"  # hash: sha256(key) -> key name


async def get_hub(request: Request) -> Hub:  # async: a sync dependency would hop to a thread
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]
_bearer = HTTPBearer(auto_error=False)


async def require_api_key(
    hub: HubDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The name of the caller's key. With no admin token configured the API is open on loopback only."""
    admin = hub.settings.admin_token
    if credentials is None:
        if admin is None:
            return "anonymous"
        raise HTTPException(401, "missing bearer API key", headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials
    if admin is not None and secrets.compare_digest(given.encode(), admin.get_secret_value().encode()):
        return "admin"
    name = await hub.redis.hget(API_KEYS, hashlib.sha256(given.encode()).hexdigest())
    if name is None:
        raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return str(name)


ApiKey = Annotated[str, Depends(require_api_key)]
