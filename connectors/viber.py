"""Viber REST bot API over one `aiohttp.ClientSession` (the `viberbot` package is synchronous).

aiohttp rather than httpx, as in `bot.crm.webhooks`: httpx's connection pool walks every connection at
each request's start and end; with aiohttp a Viber message (its send and two status callbacks included)
costs the hub 10.5-10.7 CPU ms instead of 13.6 (`tests/bench/pipeline.py --mix viber`).

Two Viber particularities shape this module:

- Keyboard buttons have no callback payload: pressing a "reply" button makes the customer send the
  button's `ActionBody` as an ordinary text message. We send `ActionBody = "btn:" + payload`, and an
  inbound text starting with "btn:" is a button press (`payload` set, `text` None).
- `conversation_started` (the customer opened the chat, maybe through a deep link carrying `context`)
  is not a subscription: the bot may not message that customer yet, except by answering this one
  webhook with a welcome message in the HTTP response. `parse` turns it into an `opened` event whose
  `start_param` is the deep-link context; the pipeline never replies to it, and `answer()` returns
  the welcome message.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from hashlib import sha256
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.models import Attachment, Capabilities, Channel, DeliveryStatus, EventKind, InboundEvent, Location
from bot.redaction import scrub
from bot.rendering import RenderedPart, numbered
from bot.settings import ConfigError, ViberSettings
from connectors.base import BadPayload, BadSignature, DeepLinks, SendError, WebhookAnswer, WebhookRequest

BUTTON_PREFIX = "btn:"
EVENT_TYPES = ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]
CAPABILITIES = Capabilities(
    max_text=7000,
    native_buttons=True,
    max_buttons=24,
    media=True,
    read_receipts=True,
    delivery_receipts=True,
)
KEYBOARD_API_VERSION = 7
_MAX_SENDER_NAME = 28  # Viber's limit for sender.name
_MAX_CAPTION = 768  # Viber's limit for a picture's text
_STATUS = {
    "delivered": DeliveryStatus.delivered,
    "seen": DeliveryStatus.read,
    "failed": DeliveryStatus.failed,
}
# Of Viber's refusals only tooManyRequests passes with time; receiverNotSubscribed (6),
# receiverNotRegistered (5), badData (3), ... fail the same way on every try.
_TOO_MANY_REQUESTS = 12
_EVENTS = {"message", "subscribed", "unsubscribed", "conversation_started", *_STATUS}
_ATTACHMENT_TYPE: dict[str, Literal["image", "video", "document", "sticker"]] = {
    "picture": "image",
    "video": "video",
    "file": "document",
    "sticker": "sticker",
}

T = TypeVar("T")


class _User(BaseModel):
    id: str
    name: str | None = None
    language: str | None = None


# Viber's tokens and sticker ids are 64-bit; time stamps are milliseconds, up to the year 9999.
_Int64 = Annotated[int, Field(ge=-(2**63), lt=2**64)]
_Millis = Annotated[int, Field(ge=0, le=253_402_300_799_999)]


class _Point(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class _Contact(BaseModel):
    phone_number: str | None = None


class _Message(BaseModel):
    type: str
    text: str | None = Field(default=None, max_length=CAPABILITIES.max_text)  # longer is not from Viber
    media: str | None = None
    file_name: str | None = None
    sticker_id: _Int64 | None = None
    location: _Point | None = None
    contact: _Contact | None = None


class _Callback(BaseModel):
    """The union of Viber's callback fields; which ones an event must carry is checked per event."""

    event: str
    timestamp: _Millis | None = None
    message_token: _Int64 | None = None
    user: _User | None = None
    sender: _User | None = None
    user_id: str | None = None
    message: _Message | None = None
    context: str | None = None
    desc: str | None = None


def _message_event(sender: _User, message: _Message, token: str, at: datetime) -> InboundEvent:
    text = message.media if message.type == "url" else message.text
    payload = None
    if message.type == "text" and text and text.startswith(BUTTON_PREFIX):
        payload, text = text.removeprefix(BUTTON_PREFIX), None
    kind = _ATTACHMENT_TYPE.get(message.type)
    sticker = str(message.sticker_id) if message.sticker_id is not None else None
    attachments = (
        (Attachment(type=kind, url=message.media, name=message.file_name, file_id=sticker),) if kind else ()
    )
    point = message.location
    return InboundEvent(
        kind=EventKind.message,
        channel="viber",
        user_id=sender.id,
        provider_id=token,
        text=text or None,
        payload=payload,
        attachments=attachments,
        location=Location(latitude=point.lat, longitude=point.lon) if point else None,
        contact_phone=message.contact.phone_number if message.contact else None,
        user_name=sender.name,
        language=sender.language,
        at=at,
    )


def _need(value: T | None, field: str, event: str) -> T:
    if value is None:
        raise BadPayload(f"Viber {event} callback without {field!r}")
    return value


class ViberConnector(DeepLinks):
    channel: Channel = "viber"
    capabilities = CAPABILITIES

    def __init__(self, settings: ViberSettings, token: str) -> None:
        self._settings = settings
        self._token = token
        self._client: aiohttp.ClientSession | None = None

    # --- inbound ---------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get("x-viber-content-signature")
        if not signature:
            raise BadSignature("missing X-Viber-Content-Signature header")
        expected = hmac.new(self._token.encode(), request.body, sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise BadSignature("X-Viber-Content-Signature does not match the body: check VIBER_AUTH_TOKEN")

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        try:
            callback = _Callback.model_validate_json(request.body)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "body"
            raise BadPayload(f"Viber callback: {where}: {error['msg']}") from None
        event = callback.event
        if event not in _EVENTS:  # "webhook" (set_webhook's check) and events we did not ask for
            return []
        token = str(_need(callback.message_token, "message_token", event))
        stamp = callback.timestamp
        at = datetime.fromtimestamp(stamp / 1000, UTC) if stamp else datetime.now(UTC)
        if event == "message":
            sender = _need(callback.sender, "sender", event)
            return [_message_event(sender, _need(callback.message, "message", event), token, at)]
        if event in _STATUS:
            user_id = _need(callback.user_id, "user_id", event)
            return [
                InboundEvent(
                    kind=EventKind.status,
                    channel="viber",
                    user_id=user_id,
                    provider_id=f"{token}:{event}",  # one token has several statuses; each must pass dedupe
                    status=_STATUS[event],
                    status_of=token,
                    error=callback.desc,
                    at=at,
                )
            ]
        if event == "unsubscribed":
            user_id = _need(callback.user_id, "user_id", event)
            return [
                InboundEvent(
                    kind=EventKind.unsubscribed, channel="viber", user_id=user_id, provider_id=token, at=at
                )
            ]
        user = _need(callback.user, "user", event)
        started = event == "conversation_started"
        return [
            InboundEvent(
                kind=EventKind.opened if started else EventKind.subscribed,
                channel="viber",
                user_id=user.id,
                provider_id=token,
                user_name=user.name,
                language=user.language,
                start_param=(callback.context or None) if started else None,
                at=at,
            )
        ]

    def answer(self, events: list[InboundEvent]) -> WebhookAnswer:
        """The welcome message for `conversation_started` (see the module docstring); empty otherwise."""
        if any(event.kind is EventKind.opened for event in events):
            welcome = {"sender": self._sender(), "type": "text", "text": self._settings.welcome_text}
            return WebhookAnswer(json.dumps(welcome, ensure_ascii=False).encode())
        return WebhookAnswer()

    # --- outbound --------------------------------------------------------------------------------

    async def start(self, public_url: str | None) -> None:
        """Open the client and, with a public URL, register the webhook. Viber checks the URL at once by
        posting a `webhook` callback to it, so the hub must already answer on that URL."""
        if self._client is None:  # idempotent: the hub calls it again to retry a failed registration
            headers = {"X-Viber-Auth-Token": self._token, "Content-Type": "application/json"}
            self._client = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30))
        if public_url:
            url = f"{public_url}/webhooks/viber"
            body = {"url": url, "event_types": EVENT_TYPES, "send_name": True, "send_photo": True}
            try:
                await self._call("set_webhook", body)
            except SendError as exc:
                raise ConfigError(
                    f"bad setting OMNIHUB_PUBLIC_URL: Viber refused webhook {url}: {exc}"
                ) from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, user_id: str, part: RenderedPart) -> str:
        """Send media first, then the text; the keyboard rides on the last message, whose token is
        returned (statuses of that one stand for the part)."""
        token = ""
        for message in self._messages(part):
            answer = await self._call(
                "send_message", {"receiver": user_id, "sender": self._sender(), **message}
            )
            token = str(answer["message_token"])
        return token

    def deep_link(self, code: str) -> str:
        uri = self._settings.bot_name.lower().replace(" ", "")
        return f"viber://pa?chatURI={quote(uri)}&context={quote(code)}"

    def _messages(self, part: RenderedPart) -> list[dict[str, Any]]:
        # Viber's file/video types need the size in bytes, which the hub does not know: non-image media
        # goes out as a `url` message (Viber previews the link).
        messages: list[dict[str, Any]] = [
            {"type": "picture", "text": "", "media": m.url}
            if m.type == "image"
            else {"type": "url", "media": m.url}
            for m in part.media
        ]
        text = part.text or (numbered(part.buttons) if part.buttons and not messages else None)
        if text and len(messages) == 1 and messages[0]["type"] == "picture" and len(text) <= _MAX_CAPTION:
            messages[0]["text"] = text
        elif text:
            messages.append({"type": "text", "text": text})
        if part.buttons:
            messages[-1]["min_api_version"] = KEYBOARD_API_VERSION
            messages[-1]["keyboard"] = {
                "Type": "keyboard",
                "DefaultHeight": False,
                "Buttons": [
                    {
                        "ActionType": "reply",
                        "ActionBody": f"{BUTTON_PREFIX}{button.payload}",
                        "Text": button.title,
                        "Columns": 6,
                        "Rows": 1,
                    }
                    for button in part.buttons
                ],
            }
        return messages

    def _sender(self) -> dict[str, str]:
        sender = {"name": self._settings.bot_name[:_MAX_SENDER_NAME]}
        if self._settings.bot_avatar:
            sender["avatar"] = self._settings.bot_avatar
        return sender

    async def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            raise RuntimeError("ViberConnector used before start()")
        url = f"{self._settings.api_base.rstrip('/')}/{method}"
        try:
            async with self._client.post(url, data=orjson.dumps(body)) as response:
                code, content = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str, not repr: aiohttp's repr of a response error lists the request headers, the token too
            raise SendError(scrub(f"Viber unreachable: {type(exc).__name__}: {exc}", (self._token,))) from exc
        if code >= 500 or code == 429:
            raise SendError(f"Viber {method}: HTTP {code}")
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise SendError(f"Viber {method}: HTTP {code}, not JSON", permanent=True) from None
        if not isinstance(answer, dict):
            raise SendError(f"Viber {method}: HTTP {code}, not a JSON object", permanent=True)
        status = answer.get("status")
        if code >= 400 or status != 0:
            text = f"Viber {method}: status {status} {answer.get('status_message', '')}".rstrip()
            if status == _TOO_MANY_REQUESTS:
                raise SendError(text, retry_after=1.0)
            raise SendError(text, permanent=True)
        return answer
