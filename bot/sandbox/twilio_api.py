"""A loopback Twilio Messages API (SMS and WhatsApp): the real wire format, signed as Twilio signs.

The Twilio SDK talks to it as to api.twilio.com (`TWILIO_API_BASE` points here):
`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic auth, answered with
the real Message resource (201) or Twilio's error JSON. After a send with a `StatusCallback` it posts
`sent`, `delivered` (and `read` on WhatsApp) callbacks, `X-Twilio-Signature`-signed.

Customers are played through control routes under `/_/` (not part of Twilio): `/_/inbound` builds the
real inbound webhook form and posts it signed; `/_/read` reports a message read (with `auto_read=False`
that is the only way, for "not read within an hour" cascades); `/_/outbox` reads what the hub sent;
`/_/faults` makes the next sends fail (`{"status": 429, "code": 20429}`; a 2xx status with a code, e.g.
`{"status": 201, "code": 63016}`, accepts the message and then reports it `failed` with that ErrorCode,
as WhatsApp does outside the 24-hour window).
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from bot.rendering import sms_info
from bot.sandbox.emulator_kit import (
    ControlError,
    Emulator,
    Fault,
    HubReply,
    ask_hub,
    json_response,
    read_model,
    relayed,
)
from bot.sandbox.outbox import Sent

API_VERSION = "2010-04-01"
WHATSAPP = "whatsapp:"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MORE_INFO = "https://www.twilio.com/docs/errors/{}"
_FAULT_MESSAGE = {
    20429: "Too Many Requests",
    21211: "The 'To' number is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    63016: "Failed to send freeform message because you are outside the allowed window.",
}


class _Media(BaseModel):
    url: str
    content_type: str = "image/jpeg"


class _Point(BaseModel):
    latitude: float
    longitude: float
    address: str | None = None


class _Inbound(BaseModel):
    """What a customer does, as `/_/inbound` takes it."""

    channel: Literal["sms", "whatsapp"] = "sms"
    from_: str = Field(alias="from")
    to: str | None = None  # defaults to the hub's number on that channel
    text: str = ""
    profile_name: str | None = None
    button_payload: str | None = None
    media: list[_Media] = []
    location: _Point | None = None


class _Read(BaseModel):
    sid: str


class TwilioError(Exception):
    """An API refusal in Twilio's error JSON shape."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers

    def response(self) -> Response:
        body = {"code": self.code, "message": str(self), "more_info": _MORE_INFO.format(self.code)}
        return json_response({**body, "status": self.status}, self.status, self.headers)


class TwilioEmulator(Emulator):
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        webhook_url: str | None,
        status_url_default: str | None,
        status_delay: float,
        auto_read: bool,
        numbers: dict[str, str],
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(webhook_url, transport)
        self.account_sid, self.status_url_default = account_sid, status_url_default
        self.status_delay, self.auto_read, self.numbers = status_delay, auto_read, numbers
        self._credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._validator = RequestValidator(auth_token)

    # --- the Messages API ------------------------------------------------------------------------
    async def create_message(self, request: Request) -> Response:
        try:
            self._authenticate(request)
            async with request.form() as form:
                params = {key: str(value) for key, value in form.items()}
                media = [str(url) for url in form.getlist("MediaUrl")]
            fault = self.faults.take()
            if fault is not None and fault.status >= 300:
                raise _fault_error(fault)
            resource = self._resource(params, media)
        except TwilioError as error:
            return error.response()
        channel = "whatsapp" if params["To"].startswith(WHATSAPP) else "sms"
        sent = await self.outbox.record(
            {
                "user_id": params["To"].removeprefix(WHATSAPP),
                "text": resource["body"] or None,
                "media": media,
                "provider_id": resource["sid"],
                "status": "queued",
                "raw": {**params, "MediaUrl": media, "channel": channel},
            }
        )
        callback = params.get("StatusCallback") or self.status_url_default
        if callback:
            self._progress(sent, callback, fault.code if fault else None)
        return json_response(resource, 201)

    def _progress(self, sent: Sent, url: str, error_code: int | None) -> None:
        """Schedule the callbacks of an accepted message: its failure, or its way to the phone."""
        if error_code:
            steps = ["failed"]
        else:
            read = sent.raw["channel"] == "whatsapp" and self.auto_read
            steps = ["sent", "delivered", "read"] if read else ["sent", "delivered"]
        self.courier.progress(
            self.status_delay, steps, lambda step: self._report(sent, step, url, error_code)
        )

    def _authenticate(self, request: Request) -> None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not secrets.compare_digest(credentials, self._credentials):
            raise TwilioError(401, 20003, "Authenticate")
        if request.path_params["sid"] != self.account_sid:
            raise TwilioError(404, 20404, "The requested resource was not found")

    def _resource(self, params: dict[str, str], media: list[str]) -> dict[str, object]:
        """The Message resource Twilio answers, after Twilio's own checks of the request."""
        to, sender = params.get("To"), params.get("From")
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if not _E164.match(to.removeprefix(WHATSAPP)):
            raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender:
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        content = params.get("ContentSid")
        # The emulator does not know an approved template's text: it shows the Content SID and variables.
        body = f"[{content}] {params.get('ContentVariables', '{}')}" if content else params.get("Body", "")
        if not (body or media):
            raise TwilioError(400, 21602, "Message body is required.")
        sid = _sid("SM")
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        segments = 1 if to.startswith(WHATSAPP) or not body else sms_info(body).segments
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": params.get("MessagingServiceSid"),
            "num_media": str(len(media)),
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    async def _report(
        self, sent: Sent, status: str, url: str, error_code: int | None = None
    ) -> HubReply:
        """Post one status callback in Twilio's shape and move the outbox entry along."""
        to, sender = sent.raw["To"], sent.raw["From"]
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": sender,
            "MessageSid": sent.provider_id,
            "MessageStatus": status,
            "SmsSid": sent.provider_id,
            "SmsStatus": status,
            "To": to,
        }
        if to.startswith(WHATSAPP):
            params.update(ChannelPrefix="whatsapp", ChannelToAddress=to.removeprefix(WHATSAPP))
            if status in ("delivered", "read"):
                params["EventType"] = status.upper()
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        sent.status = status
        return await self._post(url, params)

    async def _post(self, url: str, params: dict[str, str]) -> HubReply:
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": self._validator.compute_signature(url, params),
            "user-agent": "TwilioProxy/1.1",
        }
        return await self.courier.post(url, urlencode(params).encode(), headers)

    # --- the customers' side (control routes) ----------------------------------------------------
    async def inbound(self, request: Request) -> Response:
        form = self._inbound_form(await read_model(request, _Inbound))
        answer = await ask_hub(self._post(self.hook(), form))
        return relayed(answer, message_sid=form["MessageSid"])

    def _inbound_form(self, spec: _Inbound) -> dict[str, str]:
        """The form Twilio posts for an incoming SMS or WhatsApp message."""
        whatsapp = spec.channel == "whatsapp"
        prefix = WHATSAPP if whatsapp else ""
        sid = _sid("SM")
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "Body": spec.text,
            "From": prefix + spec.from_,
            "MessageSid": sid,
            "NumMedia": str(len(spec.media)),
            "NumSegments": "1" if whatsapp or not spec.text else str(sms_info(spec.text).segments),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": prefix + (spec.to or self.numbers[spec.channel]),
        }
        for index, media in enumerate(spec.media):
            form[f"MediaUrl{index}"] = media.url
            form[f"MediaContentType{index}"] = media.content_type
        if whatsapp:
            form.update(WaId=spec.from_.lstrip("+"), ProfileName=spec.profile_name or "", MessageType="text")
            if spec.media:
                form["MessageType"] = spec.media[0].content_type.partition("/")[0]
            if spec.location:
                form.update(MessageType="location", Latitude=str(spec.location.latitude))
                form.update(Longitude=str(spec.location.longitude), Address=spec.location.address or "")
            if spec.button_payload is not None:
                form.update(MessageType="button", ButtonPayload=spec.button_payload, ButtonText=spec.text)
        return form

    async def read(self, request: Request) -> Response:
        sid = (await read_model(request, _Read)).sid
        sent = self.outbox.find(sid)
        url = sent and (sent.raw.get("StatusCallback") or self.status_url_default)
        if sent is None or not url:
            raise ControlError(f"no message {sid} with a status callback", 404)
        return relayed(await ask_hub(self._report(sent, "read", url)), sid=sid)


def create_twilio_emulator(
    account_sid: str,
    auth_token: str,
    *,
    webhook_url: str | None,
    status_url_default: str | None = None,
    status_delay: float = 0.2,
    auto_read: bool = True,
    sms_number: str = "+15005550006",
    whatsapp_number: str = "+14155238886",
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The emulator as an ASGI app; `app.state.emulator` is the `TwilioEmulator` (with its `outbox`).

    `webhook_url` is where inbound messages are posted (and signed for); `status_url_default` stands
    in for a number's configured status URL when a send gives no `StatusCallback`; `transport` can
    deliver to the hub in-process (`httpx.ASGITransport(hub_app)`). Mounted inside another app, run
    its lifespan there (`app.router.lifespan_context(app)`).
    """
    emulator = TwilioEmulator(
        account_sid,
        auth_token,
        webhook_url,
        status_url_default,
        status_delay,
        auto_read,
        {"sms": sms_number, "whatsapp": whatsapp_number},
        transport,
    )
    return emulator.app(
        [
            Route(
                f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", emulator.create_message, methods=["POST"]
            ),
            Route("/_/inbound", emulator.inbound, methods=["POST"]),
            Route("/_/read", emulator.read, methods=["POST"]),
        ]
    )


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _fault_error(fault: Fault) -> TwilioError:
    code = fault.code or (20429 if fault.status == 429 else 20500)
    message = _FAULT_MESSAGE.get(code, "Internal Server Error" if fault.status >= 500 else "Bad Request")
    return TwilioError(fault.status, code, message, fault.headers())
