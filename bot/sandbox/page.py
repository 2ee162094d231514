"""The `/sandbox` page: four phone-like panes where a visitor chats with the bot as a customer.

The page itself is static (`static/`: plain HTML, CSS and JS, no build step and no CDN, so it works on
an offline machine) and plays customers through the emulators' control routes from the browser, as
`omnihub chat` does from a terminal. This router serves those files, tells the page which channels
run on a built-in emulator (a channel with real credentials has no emulator to talk to), and measures
SMS text with the hub's own `sms_info`, so the page shows the segments the hub and the Twilio emulator
count rather than a JavaScript copy that could drift from them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from bot.campaigns.model import CampaignIn, Step
from bot.campaigns.segments import Segment
from bot.campaigns.store import audience
from bot.context.store import new_id
from bot.hub import Hub
from bot.models import Channel
from bot.pipeline.commands import UpdateContact
from bot.rendering import sms_info
from bot.sandbox.client import EMULATOR_OF, default_user

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"sandbox.js": "text/javascript", "sandbox.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate (ETag): an upgraded hub serves its new page at once
SANDBOX_OFF = (
    "The sandbox is off: every channel has real credentials, so there is no built-in emulator to chat "
    "through. Write to the bot in the messenger apps, or unset TELEGRAM_BOT_TOKEN, TWILIO_ACCOUNT_SID "
    "or VIBER_AUTH_TOKEN to try a channel here.\n"
)

router = APIRouter(include_in_schema=False)


class SmsText(BaseModel):
    text: str


def sandbox_channels(hub: Hub) -> list[Channel]:
    """Channels in sandbox mode whose emulator this process mounts under /emulator."""
    return [c for c, provider in EMULATOR_OF.items() if c in hub.sandbox_channels and provider in hub.emulators]


@router.get("/sandbox")
async def page(request: Request) -> Response:
    if not sandbox_channels(request.app.state.hub):
        return PlainTextResponse(SANDBOX_OFF, status_code=404)
    return FileResponse(STATIC / "sandbox.html", headers=NO_CACHE)


@router.get("/sandbox/static/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:  # a fixed list: no path from the URL ever reaches the file system
        return PlainTextResponse(f"no sandbox asset {name!r}\n", status_code=404)
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=NO_CACHE)


@router.get("/sandbox/config")
async def config(request: Request) -> JSONResponse:
    """The panes to show: each sandbox channel with its emulator's base path and a default customer."""
    channels = sandbox_channels(request.app.state.hub)
    return JSONResponse({
        "channels": [
            {"channel": c, "emulator": f"/emulator/{EMULATOR_OF[c]}", "user": default_user(c)} for c in channels
        ],
        "phone": default_user("sms"),  # what Telegram's "share phone" sends: links it to the SMS customer
    })


DEMO_TAG = "sandbox-demo"
DEMO_TEXTS = {"ru": "Демо-кампания Omnihub: ответьте что-нибудь, и следующий канал не понадобится.",
              "en": "An Omnihub demo campaign: reply anything, and the next channel will not be needed."}


@router.post("/sandbox/demo-campaign")
async def demo_campaign(request: Request) -> JSONResponse:
    """A campaign through every pane: a cascade Telegram → Viber → WhatsApp → SMS, each step waiting
    four seconds for a reply, to the customers of the panes (those who have written already). A step
    whose channel a customer is not on passes to the next at once, so each pane gets its message."""
    hub: Hub = request.app.state.hub
    found = {await hub.identities.lookup(c, default_user(c)) for c in sandbox_channels(hub)} - {None}
    if not found:
        return JSONResponse({"detail": "write to the bot from a pane first: the demo goes to the panes' customers"},
                            status_code=409)
    for cid in sorted(c for c in found if c):
        await hub.ingest.applied(UpdateContact(id=new_id("demo"), add_tags=(DEMO_TAG,)), cid, 5.0)
    order: list[Channel] = ["telegram", "viber", "whatsapp", "sms"]
    steps = [Step(channel=c, text=DEMO_TEXTS, until="replied", within=4) for c in order if c in hub.connectors]
    made = await hub.campaigns.create(CampaignIn(name="Sandbox demo", purpose="service",
                                                 audience=Segment(tags=[DEMO_TAG]), steps=steps))
    started = await hub.campaigns.start(made.id, audience(hub.redis, made.definition.audience))
    return JSONResponse({"id": started.id, "recipients": started.recipients}, status_code=202)


@router.post("/sandbox/sms-info")
async def sms(body: SmsText) -> dict[str, str | int]:
    info = sms_info(body.text)
    return {"encoding": info.encoding, "units": info.units, "segments": info.segments}
