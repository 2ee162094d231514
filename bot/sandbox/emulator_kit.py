"""What the Twilio and Viber emulators share: the `Emulator` base (outbox, injected faults, the
`/_/outbox` and `/_/faults` control routes, JSON errors), webhook delivery with one HTTP client and
delayed status callbacks (`Courier`: a `HubReply`, or `Undelivered`), and `serve()` to run an emulator
(or any ASGI app) on a real loopback port inside the current event loop.

Only the provider's wire format and its signature differ between emulators; those stay in
`twilio_api.py` and `viber_api.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx
import orjson
import uvicorn
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bot.sandbox.outbox import Outbox

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
TIMEOUT = 10  # seconds a webhook may take to be answered
T = TypeVar("T")


class Fault(BaseModel):
    """The next `times` sends fail with HTTP `status` and provider error `code`, optionally with a
    Retry-After header; each emulator words the failure as its provider does (see its docstring)."""

    status: int
    code: int | None = None
    times: int = 1
    retry_after: float | None = None

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": f"{self.retry_after:g}"} if self.retry_after is not None else None


class Faults:
    def __init__(self) -> None:
        self._queue: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._queue.append(fault)

    def take(self) -> Fault | None:
        """The fault for this send, if one is pending (faults apply in the order they were set)."""
        if not self._queue:
            return None
        fault = self._queue[0]
        fault.times -= 1
        if fault.times <= 0:
            self._queue.pop(0)
        return fault


@dataclass(frozen=True)
class HubReply:
    """How the hub answered a webhook an emulator posted."""

    status: int
    body: bytes

    def summary(self) -> dict[str, Any]:
        """Status and body (JSON when it is JSON, else text, None if empty), as control routes relay it."""
        body: Any = None
        if self.body:
            try:
                body = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                body = self.body.decode("utf-8", errors="replace")
        return {"status": self.status, "body": body}


class Undelivered(Exception):
    """The hub could not be reached (refused, reset, no answer in time): a provider gives up too."""


class Courier:
    """Posts webhooks with one client per emulator lifespan, and keeps its delayed status callbacks
    referenced (so they are not garbage-collected) and cancelled at shutdown (so none outlives it).

    Over the network it posts with aiohttp: httpx's connection pool walks every connection and waiting
    request at each request's start and end, which made the emulators, not the hub, the bottleneck of
    the four-channel benchmark (12.8 CPU ms per message with httpx, 1.3-1.4 with aiohttp). `transport`
    delivers without a network hop instead, through httpx (`httpx.ASGITransport(hub_app)`), where
    there is no pool to walk.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, connections: int = 100) -> None:
        self._transport = transport
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._in_process: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        if self._transport is not None:
            self._in_process = httpx.AsyncClient(transport=self._transport, timeout=TIMEOUT)
            return
        # Kept alive for less than the hub's 5 s (uvicorn's default): reusing a connection the server has
        # just closed fails the post with ServerDisconnectedError.
        connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=4)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._in_process is not None:
            await self._in_process.aclose()
            self._in_process = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        await self.open()
        try:
            yield
        finally:
            await self.aclose()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HubReply:
        """Post `body` to `url`; raises `Undelivered` when no answer came."""
        try:
            if self._session is not None:
                async with self._session.post(url, data=body, headers=headers) as response:
                    return HubReply(response.status, await response.read())
            if self._in_process is not None:
                answer = await self._in_process.post(url, content=body, headers=dict(headers))
                return HubReply(answer.status_code, answer.content)
        except (aiohttp.ClientError, httpx.HTTPError, TimeoutError) as exc:
            raise Undelivered(repr(exc)) from exc
        raise RuntimeError("the emulator's HTTP client is closed: run the app's lifespan or await open()")

    def progress(self, delay: float, steps: list[str], post: Callable[[str], Awaitable[object]]) -> None:
        """In the background, `post` each step (a status) `delay` seconds after the previous one."""

        async def run() -> None:
            for step in steps:
                await asyncio.sleep(delay)
                try:
                    await post(step)
                except (Undelivered, ControlError) as exc:  # no hub (any more): a provider gives up too
                    log.warning("emulator could not post %s callback: %s", step, exc)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


async def read_model(request: Request, model: type[M]) -> M:
    """The control body as `model`; a `ControlError` (400) says which field is wrong."""
    try:
        return model.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise ControlError(f"bad {request.url.path} request: {where}: {error['msg']}") from None


class ControlError(Exception):
    """A control request refused; answered `{"error": message}` with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def response(self) -> Response:
        return json_response({"error": str(self)}, self.status)


async def _control_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ControlError)  # the app registers this handler for ControlError only
    return exc.response()


async def ask_hub(delivery: Awaitable[HubReply]) -> dict[str, Any]:
    """The `HubReply.summary` of a post still to make; status None and the error when it was undelivered."""
    try:
        return (await delivery).summary()
    except Undelivered as exc:
        return {"status": None, "body": None, "error": str(exc)}


def relayed(answer: dict[str, Any], **ids: Any) -> Response:
    """A control route's answer to a post it relayed to the hub: 502 when the hub was unreachable."""
    return json_response({**ids, **answer}, 502 if answer["status"] is None else 200)


class Emulator:
    """What every emulator holds: the hub's webhook URL, the outbox, pending faults and the courier;
    and the control routes over them, shaped as the Telegram emulator's."""

    def __init__(self, webhook_url: str | None, transport: httpx.AsyncBaseTransport | None) -> None:
        self.webhook_url = webhook_url
        self.outbox = Outbox()
        self.faults = Faults()
        self.courier = Courier(transport)

    def hook(self) -> str:
        if not self.webhook_url:
            raise ControlError("no webhook URL: give the emulator webhook_url (or set one)", 409)
        return self.webhook_url

    def app(self, routes: list[Route]) -> Starlette:
        """The ASGI app: `routes`, `/_/outbox[/{user_id}]?after=SEQ&wait=SECONDS` and `/_/faults`.
        `app.state.emulator` is this object. Mounted inside another app, run the lifespan there
        (`app.router.lifespan_context(app)`)."""
        control = [
            Route("/_/outbox", self.read_outbox, methods=["GET"]),
            Route("/_/outbox/{user_id}", self.read_outbox, methods=["GET"]),
            Route("/_/faults", self.set_fault, methods=["POST"]),
        ]
        app = Starlette(
            routes=[*routes, *control],
            lifespan=self.courier.lifespan,
            exception_handlers={ControlError: _control_error},
        )
        app.state.emulator = self
        return app

    async def read_outbox(self, request: Request) -> Response:
        user_id = request.path_params.get("user_id")
        after = int(request.query_params.get("after", 0))
        wait = float(request.query_params.get("wait", 0))
        items = self.outbox.after(user_id, after)
        if not items and wait > 0:
            items = await unless_disconnected(request, self.outbox.wait(user_id, after, wait), wait) or []
        return json_response({"items": [sent.as_json() for sent in items]})

    async def set_fault(self, request: Request) -> Response:
        self.faults.add(await read_model(request, Fault))
        return json_response({"ok": True})


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T], seconds: float) -> T | None:
    """Await a long poll, giving up after `seconds` or when the client hangs up (so shutdown never waits)."""
    task = asyncio.ensure_future(work)
    hung_up = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, hung_up}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        hung_up.cancel()
        await asyncio.gather(task, hung_up, return_exceptions=True)
    return None if task.cancelled() else task.result()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run `app` with uvicorn on a free port of `host` in this event loop; yield its base URL.

    The socket is bound before uvicorn starts, so the port is known and cannot be taken meanwhile.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise why
                raise RuntimeError("uvicorn stopped during startup")
            await asyncio.sleep(0.005)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
