"""The ASGI application: one Hub per process, built in the lifespan, torn down with it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from redis.exceptions import RedisError

from bot import console
from bot.api import (
    agents,
    campaigns,
    contact_commands,
    contacts,
    conversations,
    dead_letters,
    merges,
    rasa,
    subscriptions,
    webhooks,
)
from bot.api.guard import ApiGate, JsonErrors
from bot.api.metrics import CONTENT_TYPE_LATEST, FEED, RASA, REGISTRY, STREAM_DEPTH, generate_latest
from bot.context import keys
from bot.hub import Hub
from bot.redis_server import connect
from bot.sandbox import emulators as sandbox
from bot.sandbox import page as sandbox_page
from bot.settings import Settings


def create_app(settings: Settings, *, run_workers: bool = True) -> FastAPI:
    """The hub's app. With `run_workers` it also works the partitions (`omnihub run`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings.redis_url or "redis://127.0.0.1:6379/0")
        hub = Hub(settings, redis, run_api=True, run_workers=run_workers)
        app.state.hub = hub
        emulators = hub.build_emulators()
        for name, emulator in emulators.items():
            app.mount(f"/emulator/{name}", emulator)
        async with sandbox.running(emulators):
            await hub.start()
            try:
                yield
            finally:
                await hub.stop()
                await redis.aclose()

    # FastAPI's native OpenTelemetry is off: the hub has its own /metrics, and with it on FastAPI asks
    # OpenTelemetry for its providers (an os.environ lookup) on every request — 2 % of a message's CPU
    off: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="Omnihub", version="0.1.0", lifespan=lifespan, telemetry=off)
    app.include_router(webhooks.router)
    app.include_router(contacts.router)
    app.include_router(merges.router)
    app.include_router(conversations.router)
    app.include_router(contact_commands.router)
    app.include_router(dead_letters.router)
    app.include_router(agents.router)
    app.include_router(subscriptions.router)
    app.include_router(campaigns.router)
    app.include_router(rasa.router)
    app.include_router(sandbox_page.router)
    app.include_router(console.router)

    app.add_middleware(ApiGate)
    app.add_middleware(JsonErrors)  # added last: the outermost of ours

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only the parts that are always JSON: an error's `input` may be the raw body (bytes) and its
        # `ctx` an exception object, and failing to encode them turned a 422 into a 500.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        if first["loc"] == ["body"] and "json" not in request.headers.get("content-type", ""):
            detail += " (send the body as JSON, with Content-Type: application/json)"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """200 while Redis answers and every partition has a worker; 503 with the reasons otherwise."""
        ready, report = await request.app.state.hub.readiness()
        return JSONResponse(report, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics(request: Request) -> Response:
        hub: Hub = request.app.state.hub
        for p in range(settings.pipeline.partitions):
            for stream in (keys.inbound(p), keys.inbound_bulk(p), keys.outbound(p), keys.bulk(p)):
                with contextlib.suppress(RedisError):
                    summary = await hub.redis.xpending(stream, keys.GROUP)
                    STREAM_DEPTH.labels(stream).set(summary["pending"])
        await FEED.refresh(hub.redis, settings.pipeline.partitions, hub.subscriptions, hub.feed.adapters)
        await RASA.refresh(hub.redis)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
