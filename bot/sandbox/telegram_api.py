"""A loopback Telegram Bot API: the real wire format, in one process, recording what the hub sends.

aiogram talks to it exactly as to api.telegram.org (`TELEGRAM_API_BASE` points here): POST or GET
`/bot{token}/{method}` with form, multipart or JSON parameters, answered in the `{"ok": ...}` envelope
with real `Message` objects. Customers are played through control routes under `/_/` (not part of
Telegram): `/_/inbound` builds a real `Update` and posts it to the webhook with the secret-token header,
as Telegram does (several at once, one chat's in order: `telegram_delivery.py`), or queues it for
`getUpdates`; `/_/outbox` reads what the bot sent; `/_/faults` makes the next calls of a method fail
the way Telegram fails (429 with `retry_after`, 5xx, 403).

It sits in a throughput benchmark, so a `sendMessage` is a form parse, a dict and an outbox append.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox.emulator_kit import (
    ControlError,
    Emulator,
    Fault,
    Faults,
    ask_hub,
    json_response,
    read_model,
    relayed,
    unless_disconnected,
)
from bot.sandbox.telegram_delivery import DEFAULT_CONNECTIONS, Deliveries, chat_of

Params = dict[str, Any]
Method = Callable[[Params, Request], Awaitable[Any]]
_SENDS = {"sendmessage", "sendphoto", "senddocument"}  # what a fault without a method applies to
_JSON_PARAMS = ("reply_markup", "allowed_updates")  # sent as JSON strings inside form bodies
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_STALE_QUERY = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
_USER_FIELDS = {"first_name", "last_name", "username", "language_code"}
_INT64 = range(-(2**63), 2**63)  # Telegram's ids are signed 64-bit integers
_FAULT_TEXT = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


class ApiError(Exception):
    """An answer with `ok: false`, worded as Telegram words it."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after

    def response(self) -> Response:
        body: Params = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return json_response(body, self.status)

    @classmethod
    def of(cls, fault: Fault) -> ApiError:
        if fault.status == 429:
            seconds = math.ceil(fault.retry_after or 1)  # Telegram says whole seconds
            return cls(429, f"Too Many Requests: retry after {seconds}", seconds)
        return cls(fault.status, _FAULT_TEXT.get(fault.status, f"Error {fault.status}"))


class _MethodFault(Fault):
    method: str | None = None
    chat_id: int | None = None  # only sends to this chat fail, as Telegram's per-chat flood limit does


class _Point(BaseModel):
    latitude: float
    longitude: float


class _Inbound(BaseModel):
    """What a customer does, as `/_/inbound` takes it: one of text, button, contact, place — or a
    whole recorded `update`, posted as is."""

    user_id: int | None = Field(default=None, ge=_INT64.start, lt=_INT64.stop)
    text: str | None = None
    callback_data: str | None = None
    contact_phone: str | None = None
    location: _Point | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    update: Params | None = None


class TelegramEmulator(Emulator):
    """One emulated bot: its webhook, the updates waiting for `getUpdates`, its chats, what it sent."""

    def __init__(
        self,
        token: str,
        webhook_url: str | None,
        webhook_secret: str | None,
        bot_username: str,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(webhook_url, transport)
        self.token, self.webhook_secret = token, webhook_secret
        self.deliveries = Deliveries()
        digits = token.partition(":")[0]
        bot_id = int(digits) if digits.isdigit() else 1
        self.me: Params = {"id": bot_id, "is_bot": True, "first_name": "Omnihub", "username": bot_username}
        self.answered_callbacks: deque[str] = deque(maxlen=1000)  # the latest, for tests to look at
        self.method_faults: dict[str, Faults] = defaultdict(Faults)  # by lower-case method name
        self.chat_faults: dict[int, Faults] = defaultdict(Faults)  # sends to one chat
        self._pending: list[Params] = []
        self._update_queued = asyncio.Condition()
        # from the clock, so that after a restart against the same Redis new updates are not taken
        # for provider retries of old ones (Telegram's own ids only ever grow)
        self._last_update_id = int(time.time() * 1000)
        self._last_message_id: dict[int, int] = defaultdict(int)  # message ids count per chat
        self._users: dict[int, Params] = {}
        self._keyboard_message: dict[int, Params] = {}  # the last bot message with buttons, per chat
        self._open_callbacks: set[str] = set()
        self.methods: dict[str, Method] = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "answercallbackquery": self._answer_callback_query,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": self._get_updates,
        }

    # --- the Bot API -----------------------------------------------------------------------------
    async def bot_api(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        name = request.path_params["method"].lower()  # Bot API method names are case-insensitive
        method = self.methods.get(name)
        if method is None:
            return ApiError(404, "Not Found: method not found").response()
        try:
            params = await _params(request)
            fault = self._fault(name, params)
            if fault is not None:
                raise ApiError.of(fault)
            return json_response({"ok": True, "result": await method(params, request)})
        except ApiError as error:
            return error.response()

    def _fault(self, name: str, params: Params) -> Fault | None:
        """The fault for this call, if one is pending: the chat's own, then the method's, then the next sends'."""
        fault = None
        if self.chat_faults and name in _SENDS:
            chat = str(params.get("chat_id") or "")
            faults = self.chat_faults.get(int(chat)) if chat.lstrip("-").isdigit() else None
            fault = faults.take() if faults else None
        if fault is None and name in self.method_faults:
            fault = self.method_faults[name].take()
        if fault is None and name in _SENDS:
            fault = self.faults.take()
        return fault

    async def _get_me(self, params: Params, request: Request) -> Params:
        return self.me

    async def _send_message(self, params: Params, request: Request) -> Params:
        text = str(params.get("text") or "")
        if not text:
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        return await self._post(params, {"text": text}, text, [])

    async def _send_photo(self, params: Params, request: Request) -> Params:
        photo = _required(params, "photo")
        size = {"file_id": f"photo-{photo}", "file_unique_id": f"u-{photo}"[:32], "width": 800, "height": 600}
        return await self._post(params, {"photo": [size]}, _caption(params), [photo])

    async def _send_document(self, params: Params, request: Request) -> Params:
        document = _required(params, "document")
        file = {"file_id": f"doc-{document}", "file_unique_id": f"u-{document}"[:32]}
        return await self._post(params, {"document": file}, _caption(params), [document])

    async def _post(self, params: Params, content: Params, text: str | None, media: list[str]) -> Params:
        """Put the bot's message in the chat, remember its keyboard, record it in the outbox."""
        chat_id = _chat_id(params)
        if text and "text" not in content:
            content["caption"] = text
        markup = params.get("reply_markup")
        buttons = _inline_buttons(markup)
        if markup:
            content["reply_markup"] = markup
        message = self._message(chat_id, self.me, content)
        if buttons:
            self._keyboard_message[chat_id] = message
        sent = {"user_id": str(chat_id), "text": text, "buttons": buttons, "media": media, "raw": params}
        await self.outbox.record({**sent, "provider_id": str(message["message_id"])})
        return message

    async def _answer_callback_query(self, params: Params, request: Request) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._open_callbacks:
            raise ApiError(400, _STALE_QUERY)
        self._open_callbacks.discard(query_id)
        self.answered_callbacks.append(query_id)
        return True

    async def _set_webhook(self, params: Params, request: Request) -> bool:
        secret = params.get("secret_token") or None
        if secret is not None and not _SECRET_TOKEN.match(secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates") in (True, "true", "True", "1"):
            self._pending.clear()
        self.webhook_url, self.webhook_secret = params.get("url") or None, secret
        connections = str(params.get("max_connections") or DEFAULT_CONNECTIONS)
        if not connections.isdigit():
            raise ApiError(400, "Bad Request: max_connections must be a number")
        self.deliveries.resize(int(connections))
        return True

    async def _delete_webhook(self, params: Params, request: Request) -> bool:
        return await self._set_webhook({"drop_pending_updates": params.get("drop_pending_updates")}, request)

    async def _get_webhook_info(self, params: Params, request: Request) -> Params:
        info = {"url": self.webhook_url or "", "has_custom_certificate": False}
        if self.webhook_url:
            info["max_connections"] = self.deliveries.connections
        return {**info, "pending_update_count": len(self._pending)}

    async def _get_updates(self, params: Params, request: Request) -> list[Params]:
        if self.webhook_url:
            raise ApiError(409, _WEBHOOK_CONFLICT)
        offset = int(params.get("offset") or 0)
        # An offset confirms (forgets) the updates below it; a negative one keeps the last -offset.
        if offset < 0:
            self._pending = self._pending[offset:]
        elif offset:
            self._pending = [update for update in self._pending if update["update_id"] >= offset]
        timeout = float(params.get("timeout") or 0)
        if not self._pending and timeout > 0:
            await unless_disconnected(request, self._until_pending(), timeout)
        return self._pending[: int(params.get("limit") or 100)]

    async def _until_pending(self) -> None:
        async with self._update_queued:
            await self._update_queued.wait_for(lambda: bool(self._pending))

    # --- the customers' side (control routes) ----------------------------------------------------
    async def inbound(self, request: Request) -> Response:
        update = self._update_from(await read_model(request, _Inbound))
        update_id = update["update_id"]
        if not self.webhook_url:
            self._pending.append(update)
            async with self._update_queued:
                self._update_queued.notify_all()
            return json_response({"update_id": update_id, "status": None})
        headers = {"content-type": "application/json"}
        if self.webhook_secret:
            headers["x-telegram-bot-api-secret-token"] = self.webhook_secret
        url, body = self.webhook_url, _json(update)
        answer = await self.deliveries.deliver(chat_of(update), lambda: ask_hub(self.courier.post(url, body, headers)))
        return relayed(answer, update_id=update_id)

    def _update_from(self, spec: _Inbound) -> Params:
        """A real `Update` for what the customer did: wrote, pressed a button, shared a contact or place."""
        if spec.update is not None:  # a recorded payload, replayed as is
            recorded = dict(spec.update)
            given = recorded.setdefault("update_id", self._last_update_id + 1)
            if not (isinstance(given, int) and given in _INT64):  # our answer quotes it: it must encode
                raise ControlError("bad /_/inbound request: update.update_id must be a signed 64-bit integer")
            self._last_update_id = max(self._last_update_id + 1, given)
            return recorded
        if spec.user_id is None:
            raise ControlError("bad /_/inbound request: user_id is required (or a whole update)")
        chat_id = spec.user_id
        user = self._users.setdefault(chat_id, {"id": chat_id, "is_bot": False, "first_name": "Sandbox"})
        user.update(spec.model_dump(include=_USER_FIELDS, exclude_none=True))
        self._last_update_id += 1
        update: Params = {"update_id": self._last_update_id}
        if spec.callback_data is not None:
            query_id = f"{chat_id}{self._last_update_id:06d}"
            self._open_callbacks.add(query_id)
            query = {"id": query_id, "from": user, "chat_instance": str(-chat_id), "data": spec.callback_data}
            if chat_id in self._keyboard_message:
                query["message"] = self._keyboard_message[chat_id]
            update["callback_query"] = query
        elif spec.text is not None:
            content: Params = {"text": spec.text}
            if spec.text.startswith("/"):
                command = spec.text.split(maxsplit=1)[0]
                content["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
            update["message"] = self._message(chat_id, user, content)
        elif spec.contact_phone is not None:
            contact = {"phone_number": spec.contact_phone, "first_name": user["first_name"]}
            contact["user_id"] = chat_id
            update["message"] = self._message(chat_id, user, {"contact": contact})
        elif spec.location is not None:
            update["message"] = self._message(chat_id, user, {"location": spec.location.model_dump()})
        else:
            raise ControlError("bad /_/inbound request: give text, callback_data, contact_phone or location")
        return update

    def _message(self, chat_id: int, sender: Params, content: Params) -> Params:
        self._last_message_id[chat_id] += 1
        name = self._users.get(chat_id, {}).get("first_name", "Sandbox")
        return {
            "message_id": self._last_message_id[chat_id],
            "from": sender,
            "chat": {"id": chat_id, "first_name": name, "type": "private"},
            "date": int(time.time()),
            **content,
        }

    async def set_fault(self, request: Request) -> Response:
        """`{"method": "sendMessage", "status": 429, "retry_after": 1, "times": 2}`; with no method
        the fault applies to the next sends (sendMessage, sendPhoto, sendDocument); with a `chat_id`,
        to the next sends to that chat only."""
        fault = await read_model(request, _MethodFault)
        if fault.chat_id is not None:
            self.chat_faults[fault.chat_id].add(fault)
        else:
            (self.method_faults[fault.method.lower()] if fault.method else self.faults).add(fault)
        return json_response({"ok": True})

    async def read_webhook(self, request: Request) -> Response:
        return json_response({"url": self.webhook_url, "secret_token": self.webhook_secret})


def create_telegram_emulator(
    token: str,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    bot_username: str = "omnihub_demo_bot",
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The emulator as an ASGI app; `app.state.emulator` is the `TelegramEmulator` (with its `outbox`).

    With no `webhook_url` (or after `deleteWebhook`), customers' updates wait for `getUpdates`.
    Mounted inside another app, run its lifespan there (`app.router.lifespan_context(app)`).
    """
    emulator = TelegramEmulator(token, webhook_url, webhook_secret, bot_username, transport)
    routes = [
        Route("/bot{token}/{method}", emulator.bot_api, methods=["GET", "POST"]),
        Route("/_/inbound", emulator.inbound, methods=["POST"]),
        Route("/_/webhook", emulator.read_webhook, methods=["GET"]),
    ]
    return emulator.app(routes)


async def _params(request: Request) -> Params:
    """Method parameters from the query and a JSON, urlencoded or multipart body (aiogram sends forms)."""
    params: Params = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(400, "Bad Request: can't parse JSON request body") from None
        params.update(body if isinstance(body, dict) else {})
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form() as form:  # an uploaded file is recorded by its name
            params.update((k, v.filename if isinstance(v, UploadFile) else v) for k, v in form.items())
    for key in _JSON_PARAMS:
        if isinstance(params.get(key), str):
            try:
                params[key] = orjson.loads(params[key])
            except orjson.JSONDecodeError:
                raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
    return params


def _chat_id(params: Params) -> int:
    raw = str(params.get("chat_id") or "")
    if not raw:
        raise ApiError(400, "Bad Request: chat_id is empty")
    if not raw.lstrip("-").isdigit() or len(raw) > 20 or int(raw) not in _INT64:
        raise ApiError(400, "Bad Request: chat not found")
    return int(raw)


def _json(update: Params) -> bytes:
    """The update as JSON. A replayed hostile update may hold integers beyond 64 bits, which orjson
    refuses; the standard library writes them, so the hub gets to refuse them itself."""
    try:
        return orjson.dumps(update)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(update).encode()
    except ValueError:  # an integer of more than 4300 digits (Python's int-to-str limit)
        raise ControlError("bad /_/inbound request: the update holds an integer too long to write") from None


def _required(params: Params, name: str) -> str:
    if not params.get(name):
        raise ApiError(400, f"Bad Request: there is no {name} in the request")
    return str(params[name])


def _caption(params: Params) -> str | None:
    caption = params.get("caption") or None
    if caption is not None and len(caption) > 1024:
        raise ApiError(400, "Bad Request: message caption is too long")
    return caption


def _inline_buttons(markup: Any) -> list[dict[str, str]]:
    """The inline keyboard as the outbox shows it; Telegram's callback_data limit is enforced on the way."""
    if not isinstance(markup, dict):
        return []
    buttons = []
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            payload = str(data or button.get("url", ""))
            buttons.append({"title": str(button.get("text", "")), "payload": payload})
    return buttons
