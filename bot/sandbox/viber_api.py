"""A loopback Viber REST bot API: the real wire format, callbacks signed as Viber signs them.

The hub's Viber connector talks to it as to chatapi.viber.com/pa (`VIBER_API_BASE` points here):
`POST /send_message`, `/set_webhook`, `/get_account_info` with `X-Viber-Auth-Token`, answered with
Viber's `{"status": 0, "status_message": "ok", ...}` envelope (refusals are HTTP 200 with a non-zero
status, as on Viber). Like Viber, it refuses to message a user who has not subscribed or written to
the bot (status 6), posts `delivered` then `seen` callbacks after a send, and checks a new webhook by
posting a `webhook` callback to it. Every callback carries `X-Viber-Content-Signature`, the hex
HMAC-SHA256 of the body keyed with the auth token.

Customers are played through control routes under `/_/` (not part of Viber): `/_/inbound` (a message,
a button press, a subscription, opening the chat through a deep link), `/_/read` (report a message
seen; with `auto_read=False` that is the only way), `/_/outbox` and `/_/faults`
(`{"status": 200, "code": 12}` answers tooManyRequests; `{"status": 500}` an HTTP 500).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox.emulator_kit import (
    ControlError,
    Emulator,
    HubReply,
    Undelivered,
    ask_hub,
    json_response,
    read_model,
    relayed,
)
from bot.sandbox.outbox import Sent
from connectors.viber import BUTTON_PREFIX, EVENT_TYPES

Params = dict[str, Any]
CHAT_HOSTNAME = "SN-CHAT-01_"
_STATUS_MESSAGE = {
    0: "ok",
    1: "invalidUrl",
    2: "invalidAuthToken",
    3: "badData",
    4: "missingData",
    5: "receiverNotRegistered",
    6: "receiverNotSubscribed",
    10: "webhookNotSet",
    12: "tooManyRequests",
}
_MAX_TEXT = 7000


class ViberRefusal(Exception):
    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(detail or _STATUS_MESSAGE.get(status, "generalError"))
        self.status = status


class _Point(BaseModel):
    latitude: float
    longitude: float


class _Inbound(BaseModel):
    """What a customer does, as `/_/inbound` takes it: one event, a message by default."""

    user_id: str
    name: str | None = None
    language: str | None = None
    event: Literal["message", "subscribed", "unsubscribed", "conversation_started"] = "message"
    context: str | None = None  # the deep link's context, for conversation_started
    text: str | None = None
    button_payload: str | None = None
    contact_phone: str | None = None
    location: _Point | None = None
    picture_url: str | None = None


class _Read(BaseModel):
    message_token: int


class ViberEmulator(Emulator):
    def __init__(
        self,
        auth_token: str,
        webhook_url: str | None,
        status_delay: float,
        auto_read: bool,
        bot_name: str,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(webhook_url, transport)
        self.event_types = list(EVENT_TYPES)
        self.status_delay, self.auto_read, self.bot_name = status_delay, auto_read, bot_name
        self.users: dict[str, Params] = {}  # who may be messaged: subscribed, or wrote to the bot
        self._key = auth_token.encode()
        self._tokens = itertools.count(int(time.time() * 1000) * 1_000_000)  # 19-digit ints, as Viber's
        self.methods: dict[str, Callable[[Params], Awaitable[Params]]] = {
            "send_message": self._send_message,
            "set_webhook": self._set_webhook,
            "get_account_info": self._get_account_info,
        }

    # --- the REST API ----------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        handler = self.methods.get(request.path_params["method"])
        if handler is None:
            return json_response({"status": 3, "status_message": "badData"}, 404)
        token = request.headers.get("x-viber-auth-token", "").encode()
        try:
            if not hmac.compare_digest(token, self._key):
                raise ViberRefusal(2)
            fault = self.faults.take()
            if fault is not None and fault.status >= 300:
                return json_response(
                    {"status": fault.code or 13, "status_message": "error"}, fault.status, fault.headers()
                )
            if fault is not None and fault.code:
                raise ViberRefusal(fault.code)
            answer = await handler(_json_object(await request.body()))
        except ViberRefusal as refusal:
            return json_response({"status": refusal.status, "status_message": str(refusal)})
        return json_response({"status": 0, "status_message": "ok", **answer})

    async def _send_message(self, body: Params) -> Params:
        receiver = str(body.get("receiver") or "")
        if not receiver:
            raise ViberRefusal(3, "receiver is required")
        kind, text, media = body.get("type"), body.get("text"), body.get("media")
        if (kind == "text" and not text) or (kind in ("picture", "url", "file", "video") and not media):
            raise ViberRefusal(3, f"a {kind} message needs {'text' if kind == 'text' else 'media'}")
        if kind not in ("text", "picture", "url", "file", "video"):
            raise ViberRefusal(3, f"unsupported message type {kind!r}")
        if text and len(text) > _MAX_TEXT:
            raise ViberRefusal(3, "text is too long")
        if not self.webhook_url:
            raise ViberRefusal(10)
        if receiver not in self.users:
            raise ViberRefusal(6)
        token = next(self._tokens)
        sent = await self.outbox.record(
            {
                "user_id": receiver,
                "text": text or None,
                "buttons": _buttons(body.get("keyboard")),
                "media": [media] if media else [],
                "provider_id": str(token),
                "raw": body,
            }
        )
        steps = ["delivered", "seen"] if self.auto_read else ["delivered"]
        self.courier.progress(self.status_delay, steps, lambda step: self._report(sent, step))
        return {"message_token": token, "chat_hostname": CHAT_HOSTNAME, "billing_status": 1}

    async def _set_webhook(self, body: Params) -> Params:
        url = str(body.get("url") or "")
        if url:  # Viber checks the URL by posting it a `webhook` callback, which must get a 200
            check = {"event": "webhook", "timestamp": _now(), "chat_hostname": CHAT_HOSTNAME}
            try:
                answer = await self._post(url, {**check, "message_token": next(self._tokens)})
            except Undelivered as exc:
                raise ViberRefusal(1, f"invalidUrl: {exc}") from None
            if answer.status != 200:
                raise ViberRefusal(1, f"invalidUrl: the webhook answered HTTP {answer.status}")
        self.webhook_url = url or None
        self.event_types = list(body.get("event_types") or EVENT_TYPES)
        return {"chat_hostname": CHAT_HOSTNAME, "event_types": self.event_types}

    async def _get_account_info(self, body: Params) -> Params:
        return {
            "id": "pa:5000000000000000000",
            "name": self.bot_name,
            "uri": self.bot_name.lower().replace(" ", ""),
            "webhook": self.webhook_url or "",
            "event_types": self.event_types,
            "subscribers_count": len(self.users),
            "members": [],
        }

    async def _report(self, sent: Sent, event: str) -> HubReply:
        sent.status = "read" if event == "seen" else event
        callback = {"event": event, "timestamp": _now(), "chat_hostname": CHAT_HOSTNAME}
        return await self._post(
            self.hook(), {**callback, "message_token": int(sent.provider_id), "user_id": sent.user_id}
        )

    async def _post(self, url: str, callback: Params) -> HubReply:
        body = orjson.dumps(callback)
        signature = hmac.new(self._key, body, hashlib.sha256).hexdigest()
        headers = {"content-type": "application/json", "x-viber-content-signature": signature}
        return await self.courier.post(url, body, headers)

    # --- the customers' side (control routes) ----------------------------------------------------
    async def inbound(self, request: Request) -> Response:
        url = self.hook()
        spec = await read_model(request, _Inbound)
        callback = self._callback(spec)
        token = callback["message_token"]
        answer = await ask_hub(self._post(url, callback))
        welcome = answer["body"]
        if spec.event == "conversation_started" and isinstance(welcome, dict) and welcome.get("type"):
            # Viber shows the answer to conversation_started as the bot's welcome message.
            record = {"user_id": spec.user_id, "text": welcome.get("text"), "provider_id": str(token)}
            await self.outbox.record({**record, "raw": welcome})
        return relayed(answer, message_token=token)

    def _callback(self, spec: _Inbound) -> Params:
        """The callback JSON Viber posts for what the customer did; the emulator's subscribers follow."""
        head: Params = {"event": spec.event, "timestamp": _now(), "chat_hostname": CHAT_HOSTNAME}
        head["message_token"] = next(self._tokens)
        user: Params = {"id": spec.user_id, "name": spec.name or "Sandbox", "language": spec.language or "en"}
        user |= {"country": "RU", "api_version": 10}
        if spec.event == "unsubscribed":
            self.users.pop(spec.user_id, None)
            return {**head, "user_id": spec.user_id}
        if spec.event == "conversation_started":
            opened = {"type": "open", "context": spec.context or "", "subscribed": spec.user_id in self.users}
            return {**head, **opened, "user": user}
        self.users[spec.user_id] = user
        if spec.event == "subscribed":
            return {**head, "user": user}
        return {**head, "sender": user, "message": _message(spec), "silent": False}

    async def read(self, request: Request) -> Response:
        token = (await read_model(request, _Read)).message_token
        sent = self.outbox.find(str(token))
        if sent is None:
            raise ControlError(f"no message {token}", 404)
        return relayed(await ask_hub(self._report(sent, "seen")), message_token=token)


def create_viber_emulator(
    auth_token: str,
    *,
    webhook_url: str | None,
    status_delay: float = 0.2,
    auto_read: bool = True,
    bot_name: str = "Omnihub",
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The emulator as an ASGI app; `app.state.emulator` is the `ViberEmulator` (with its `outbox`).

    `webhook_url` is where callbacks go until the hub calls `set_webhook`; `transport` can deliver to
    the hub in-process (`httpx.ASGITransport(hub_app)`). Mounted inside another app, run its lifespan
    there (`app.router.lifespan_context(app)`).
    """
    emulator = ViberEmulator(auth_token, webhook_url, status_delay, auto_read, bot_name, transport)
    return emulator.app(
        [
            Route("/_/inbound", emulator.inbound, methods=["POST"]),
            Route("/_/read", emulator.read, methods=["POST"]),
            Route("/{method}", emulator.api, methods=["POST"]),
        ]
    )


def _message(spec: _Inbound) -> Params:
    """The `message` object of a customer's message; a keyboard button sends its ActionBody as text."""
    if spec.button_payload is not None:
        return {"type": "text", "text": BUTTON_PREFIX + spec.button_payload}
    if spec.contact_phone is not None:
        return {
            "type": "contact",
            "contact": {"name": spec.name or "Sandbox", "phone_number": spec.contact_phone},
        }
    if spec.location is not None:
        return {
            "type": "location",
            "location": {"lat": spec.location.latitude, "lon": spec.location.longitude},
        }
    if spec.picture_url is not None:
        return {"type": "picture", "media": spec.picture_url, "text": spec.text or ""}
    if spec.text:
        return {"type": "text", "text": spec.text}
    raise ControlError("give one of text, button_payload, contact_phone, location, picture_url or an event")


def _buttons(keyboard: Any) -> list[dict[str, str]]:
    if not isinstance(keyboard, dict):
        return []
    return [
        {"title": str(b.get("Text", "")), "payload": str(b.get("ActionBody", "")).removeprefix(BUTTON_PREFIX)}
        for b in keyboard.get("Buttons", [])
    ]


def _json_object(body: bytes) -> Params:
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise ViberRefusal(3, "body is not JSON") from None
    if not isinstance(data, dict):
        raise ViberRefusal(3, "body must be a JSON object")
    return data


def _now() -> int:
    return int(time.time() * 1000)
