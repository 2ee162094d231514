"""Twilio Programmable Messaging: SMS and WhatsApp through one account.

One module, two instances (channel "sms" and channel "whatsapp"): both channels share the Messages
API, the form-encoded webhook and the `X-Twilio-Signature` scheme. They differ only in the `whatsapp:`
address prefix and in what the channel can show, so either instance parses a webhook of either channel
(one Twilio number may carry both).

The SDK's async client (`AsyncTwilioHttpClient`, aiohttp) is created once in `start()`; nothing here
blocks the event loop.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any, Literal
from urllib.parse import quote, urlparse

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator, add_port, remove_port
from twilio.rest import Client

from bot.models import (
    Attachment,
    Capabilities,
    Channel,
    DeliveryStatus,
    EventKind,
    InboundEvent,
    Location,
)
from bot.redaction import scrub
from bot.rendering import RenderedPart
from bot.settings import ConfigError, TwilioSettings
from connectors.base import BadPayload, BadSignature, DeepLinks, SendError, WebhookAnswer, WebhookRequest

WHATSAPP_PREFIX = "whatsapp:"
MAX_MEDIA = 10  # Twilio attaches at most 10 media to one message
MAX_BODY = 1600  # characters of an inbound message's Body
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

CAPABILITIES: dict[str, Capabilities] = {
    # MMS is not assumed (not every country/number has it): media links go into the text instead.
    "sms": Capabilities(
        max_text=1600, native_buttons=False, media=False, delivery_receipts=True, sms_segments=True
    ),
    "whatsapp": Capabilities(
        max_text=1600,
        native_buttons=False,
        media=True,
        read_receipts=True,
        delivery_receipts=True,
        template_outside_window=True,
    ),
}

# Twilio message states that say something new about delivery. The hub records a message "sent" as
# soon as the Messages API accepted it, so `queued` (accepted) and `sent` (handed to the carrier) add
# nothing, like the other pre-send states (accepted, scheduled, sending) and the inbound ones
# (receiving, received): their callbacks are verified and answered, but not stored or worked on, which
# is half of an SMS's callbacks and a third of a WhatsApp message's.
_STATUS: dict[str, DeliveryStatus] = {
    "delivered": DeliveryStatus.delivered,
    "read": DeliveryStatus.read,
    "failed": DeliveryStatus.failed,
    "undelivered": DeliveryStatus.undelivered,
    "canceled": DeliveryStatus.failed,
}

_MEDIA_KIND: dict[str, Literal["image", "video", "audio"]] = {
    "image": "image",
    "video": "video",
    "audio": "audio",
}

# `TwilioRestException` drops the response headers, so a 429's Retry-After is caught on the way by an
# aiohttp trace hook. The hook runs inline in the task that sends, so a ContextVar keeps concurrent
# sends (each in its own task) apart.
_retry_after: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)


async def _note_retry_after(
    _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    _retry_after.set(_seconds(params.response.headers.get("Retry-After")))


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:  # an HTTP-date: rare enough to let the sender's backoff decide
        return None


class TwilioConnector(DeepLinks):
    """One Twilio channel. `status_callback_url` is where Twilio posts delivery statuses of our sends."""

    def __init__(
        self,
        settings: TwilioSettings,
        channel: Literal["sms", "whatsapp"],
        status_callback_url: str | None,
    ) -> None:
        self.channel: Channel = channel
        self.capabilities = CAPABILITIES[channel]
        self.status_callback_url = status_callback_url
        self._settings = settings
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        self._validator = RequestValidator(token) if token else None
        self._secrets = (token,) if token else ()
        self._http: Any = None  # AsyncTwilioHttpClient, once started
        self._client: Any = None  # twilio.rest.Client, once started

    # --- inbound ---------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            raise BadSignature("missing X-Twilio-Signature header")
        if self._validator is None:
            raise BadSignature("TWILIO_AUTH_TOKEN is not set: cannot check X-Twilio-Signature")
        if not _signed(self._validator, request.url, request.form, signature):
            raise BadSignature(
                f"X-Twilio-Signature does not match {request.url}: check TWILIO_AUTH_TOKEN and that "
                "OMNIHUB_PUBLIC_URL is the URL configured at Twilio"
            )

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        form = request.form
        if form.get("MessageStatus", "received") != "received":
            return _status_events(form)
        return [_message_event(form)]

    def answer(self, events: list[InboundEvent]) -> WebhookAnswer:
        """Empty TwiML: replies go out through the API, so that they can be queued and retried."""
        return WebhookAnswer(EMPTY_TWIML, "text/xml")

    # --- outbound --------------------------------------------------------------------------------

    async def start(self, public_url: str | None) -> None:
        """Open the API client. Webhooks are set on the number at Twilio, not by API, so `public_url`
        is not used here."""
        sid, token = self._settings.account_sid, self._settings.auth_token
        if not sid or not token:
            raise ConfigError(
                "bad setting twilio.account_sid (env TWILIO_ACCOUNT_SID): "
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are required"
            )
        self._own_number()  # fail at start-up, not at the first send
        if self._client is not None:  # idempotent: the hub may call it again
            return
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(_note_retry_after)
        self._http = AsyncTwilioHttpClient(trace_configs=[trace], timeout=30)
        self._client = Client(sid, token.get_secret_value(), http_client=self._http)
        self._client.api.base_url = self._settings.api_base

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = self._client = None

    async def send(self, user_id: str, part: RenderedPart) -> str:
        if self._client is None:
            raise RuntimeError("TwilioConnector.send before start()")
        params: dict[str, Any] = {"to": self._address(user_id), "from_": self._address(self._own_number())}
        if part.template:  # an approved Content template carries its own text
            params["content_sid"] = part.template.name
            params["content_variables"] = json.dumps(part.template.variables)
        elif part.text is not None:
            params["body"] = part.text
        if part.media and self.capabilities.media:
            params["media_url"] = [media.url for media in part.media]
        if self.status_callback_url:
            params["status_callback"] = self.status_callback_url
        _retry_after.set(None)
        try:
            message = await self._client.messages.create_async(**params)
        except TwilioRestException as exc:
            raise _send_error(exc.status, exc.code, scrub(exc.msg, self._secrets)) from exc
        except TwilioServiceException as exc:
            raise _send_error(exc.status, exc.code, scrub(exc.detail or exc.title, self._secrets)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str, not repr: aiohttp's repr of a response error lists the request headers, Authorization too
            raise SendError(scrub(f"Twilio unreachable: {type(exc).__name__}: {exc}", self._secrets)) from exc
        return str(message.sid)

    def deep_link(self, code: str) -> str:
        """A link that opens this channel with `code` typed in, for linking a customer's identities."""
        number = self._own_number()
        if self.channel == "whatsapp":
            return f"https://wa.me/{''.join(filter(str.isdigit, number))}?text={quote(code)}"
        return f"sms:{number}?body={quote(code)}"

    def _own_number(self) -> str:
        setting = "whatsapp_from" if self.channel == "whatsapp" else "sms_from"
        number: str | None = getattr(self._settings, setting)
        if not number:
            raise ConfigError(
                f"bad setting twilio.{setting} (env TWILIO_{setting.upper()}): "
                f"required for the {self.channel} channel"
            )
        return number.removeprefix(WHATSAPP_PREFIX)

    def _address(self, phone: str) -> str:
        return f"{WHATSAPP_PREFIX}{phone}" if self.channel == "whatsapp" else phone


def _signed(validator: RequestValidator, url: str, form: Mapping[str, str], signature: str) -> bool:
    """Whether Twilio signed this form for `url`. Twilio may have signed the URL with or without its
    port, and `RequestValidator.validate` computes both signatures every time (64 µs); the second one
    is only needed when the first does not match (24 µs for a genuine webhook)."""
    given = signature.encode()  # bytes: compare_digest refuses a str with non-ASCII characters
    if hmac.compare_digest(validator.compute_signature(url, form).encode(), given):
        return True
    parsed = urlparse(url)
    other = remove_port(parsed) if parsed.port else add_port(parsed)
    return other != url and hmac.compare_digest(validator.compute_signature(other, form).encode(), given)


def _send_error(status: int, code: int | None, message: str) -> SendError:
    """429 and 5xx may pass on a later try; any other 4xx (21211 invalid number, 21610 unsubscribed
    recipient, 63016 outside the WhatsApp window, ...) will not."""
    text = f"Twilio HTTP {status}, error {code}: {message}"
    if status == 429:
        return SendError(text, retry_after=_retry_after.get())
    if status >= 500:
        return SendError(text)
    return SendError(text, permanent=True)


def _address_of(value: str) -> tuple[Channel, str]:
    """`whatsapp:+7999...` -> ("whatsapp", "+7999..."); a plain E.164 number is SMS."""
    if value.startswith(WHATSAPP_PREFIX):
        return "whatsapp", value.removeprefix(WHATSAPP_PREFIX)
    return "sms", value


def _required(form: Mapping[str, str], *names: str) -> str:
    """The first of `names` present and non-empty (MessageSid has the legacy twin SmsSid)."""
    for name in names:
        if form.get(name):
            return form[name]
    raise BadPayload(f"Twilio webhook without {names[0]}")


def _coordinate(form: Mapping[str, str], name: str, limit: int) -> float:
    """A finite number within ±limit: `float()` also takes "nan", "inf" and "1e400"."""
    try:
        value = float(form[name])
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and -limit <= value <= limit):
        raise BadPayload(f"Twilio webhook {name} must be a number from -{limit} to {limit}: {form[name][:40]!r}")
    return value


def _media_count(form: Mapping[str, str]) -> int:
    raw = form.get("NumMedia") or "0"
    if not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_MEDIA):
        raise BadPayload(f"Twilio webhook NumMedia must be a whole number from 0 to {MAX_MEDIA}: {raw[:40]!r}")
    return int(raw)


def _message_event(form: Mapping[str, str]) -> InboundEvent:
    sid = _required(form, "MessageSid", "SmsSid")
    channel, user_id = _address_of(_required(form, "From"))
    _required(form, "To")
    count = _media_count(form)
    if len(form.get("Body", "")) > MAX_BODY:  # the worker's NLU time grows with the text: keep it Twilio's size
        raise BadPayload(f"Twilio webhook Body is longer than Twilio's {MAX_BODY} characters")
    has_location = "Latitude" in form and "Longitude" in form
    return InboundEvent(
        kind=EventKind.message,
        channel=channel,
        user_id=user_id,
        provider_id=sid,
        text=form.get("Body") or None,
        payload=form.get("ButtonPayload") or None,
        attachments=tuple(_attachment(form, i) for i in range(count)),
        location=Location(latitude=_coordinate(form, "Latitude", 90), longitude=_coordinate(form, "Longitude", 180))
        if has_location
        else None,
        user_name=form.get("ProfileName") or None,
    )


def _attachment(form: Mapping[str, str], index: int) -> Attachment:
    url = _required(form, f"MediaUrl{index}")
    mime = form.get(f"MediaContentType{index}") or None
    kind = _MEDIA_KIND.get((mime or "").partition("/")[0], "document")
    return Attachment(type=kind, url=url, mime=mime)


def _status_events(form: Mapping[str, str]) -> list[InboundEvent]:
    state = form["MessageStatus"]
    status = _STATUS.get(state)
    if status is None:
        return []
    sid = _required(form, "MessageSid", "SmsSid")
    channel, user_id = _address_of(_required(form, "To"))  # our message went To the customer
    error = ": ".join(filter(None, (form.get("ErrorCode"), form.get("ErrorMessage"))))
    return [
        InboundEvent(
            kind=EventKind.status,
            channel=channel,
            user_id=user_id,
            provider_id=f"{sid}:{state}",  # one sid has several statuses; each must pass dedupe
            status=status,
            status_of=sid,
            error=error or None,
        )
    ]
