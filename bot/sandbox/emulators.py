"""The three provider emulators wired to one hub, with the sandbox credentials both sides share.

`omnihub run` mounts them under `/emulator/<provider>` of its own app when channels have no
credentials; `omnihub emulators` serves them as a separate process, which is how the benchmark and
anyone trying "live" settings against a fake provider use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from starlette.applications import Starlette
from starlette.routing import Mount

from bot.sandbox.telegram_api import create_telegram_emulator
from bot.sandbox.twilio_api import create_twilio_emulator
from bot.sandbox.viber_api import create_viber_emulator

TELEGRAM_TOKEN = "123456789:sandbox-token"
TELEGRAM_SECRET = "sandbox-webhook-secret"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "sandbox-twilio-token"
TWILIO_SMS_FROM = "+15005550006"
TWILIO_WHATSAPP_FROM = "+14155238886"
VIBER_TOKEN = "sandbox-viber-token"
PROVIDERS = ("telegram", "twilio", "viber")


def create_emulators(
    hub_url: str, providers: Iterable[str] = PROVIDERS, status_delay: float = 0.2, auto_read: bool = True
) -> dict[str, Starlette]:
    """Emulators that post their webhooks to `hub_url` (the URL the hub's signatures are checked against).
    `auto_read=False`: Viber and WhatsApp report a message read only when told (`/_/read`)."""
    hooks = f"{hub_url.rstrip('/')}/webhooks"
    built: dict[str, Starlette] = {}
    for provider in providers:
        if provider == "telegram":
            built[provider] = create_telegram_emulator(
                TELEGRAM_TOKEN, webhook_url=f"{hooks}/telegram", webhook_secret=TELEGRAM_SECRET
            )
        elif provider == "twilio":
            built[provider] = create_twilio_emulator(
                TWILIO_SID, TWILIO_TOKEN, webhook_url=f"{hooks}/twilio", status_delay=status_delay,
                sms_number=TWILIO_SMS_FROM, whatsapp_number=TWILIO_WHATSAPP_FROM, auto_read=auto_read,
            )
        elif provider == "viber":
            built[provider] = create_viber_emulator(VIBER_TOKEN, webhook_url=f"{hooks}/viber",
                                                    status_delay=status_delay, auto_read=auto_read)
        else:
            raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    return built


@contextlib.asynccontextmanager
async def running(emulators: dict[str, Starlette]) -> AsyncIterator[None]:
    """Run the emulators' lifespans (a mounted Starlette app's own lifespan is not run for it)."""
    async with contextlib.AsyncExitStack() as stack:
        for emulator in emulators.values():
            await stack.enter_async_context(emulator.router.lifespan_context(emulator))
        yield


def standalone_app(emulators: dict[str, Starlette]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with running(emulators):
            yield

    routes = [Mount(f"/emulator/{name}", app=emulator) for name, emulator in emulators.items()]
    return Starlette(routes=routes, lifespan=lifespan)
