"""Pure-ASGI guards around the routes, for what a route cannot do for itself.

- `ApiGate`: an `/api/` request is authenticated, and its declared size checked, before a byte of its
  body is read (a route's dependencies run only after FastAPI read the whole body, however large).
- `JsonErrors`: an unexpected error is answered as a JSON 500 and goes no further. Starlette's
  `ServerErrorMiddleware` answers 500 too but then re-raises, and uvicorn closes a connection whose
  app raised, so the client's next request on that keep-alive connection was reset.
"""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.api.deps import CALLER, Unauthorized, bearer_token, key_name
from bot.hub import Hub

log = logging.getLogger(__name__)
API_PREFIX = "/api/"


class ApiGate:
    """401 without a valid key, 413 for a body over `settings.max_body_bytes`, before reading it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        hub: Hub = scope["app"].state.hub
        headers = Headers(scope=scope)
        try:
            scope.setdefault("state", {})[CALLER] = await key_name(hub, bearer_token(headers.get("authorization")))
        except Unauthorized as exc:
            await _answer(scope, receive, send, 401, str(exc), {"WWW-Authenticate": "Bearer"})
            return
        limit = hub.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(scope, receive, send, 413, f"body larger than {limit} bytes")
            return
        body = await _read_capped(receive, limit)
        if body is None:  # a chunked body that grew past the cap
            await _answer(scope, receive, send, 413, f"body larger than {limit} bytes")
            return
        await self.app(scope, _replay(body, receive), send)


class JsonErrors:
    """The outermost of our middlewares: an error escaping the app becomes a JSON answer, here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:  # half an answer is out: only closing the connection can tell the client
                raise
            if isinstance(exc, RedisConnectionError | RedisTimeoutError):  # not a refused command: a bug
                log.error("%s %s: Redis unavailable: %s", scope["method"], scope["path"], exc)
                await _answer(scope, receive, send, 503, "storage unavailable; retry later")
            else:
                log.exception("%s %s failed", scope["method"], scope["path"])
                await _answer(scope, receive, send, 500, "internal error")


async def _read_capped(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `limit`."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away; the app will see it too
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then whatever the client does next."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    await JSONResponse({"detail": detail}, status, headers=headers)(scope, receive, send)
