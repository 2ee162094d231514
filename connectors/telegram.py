"""Telegram: verify and parse Bot API updates, send replies through one aiogram `Bot`.

The `Bot` holds the only HTTP session and is created in `start()`, pointed at `settings.api_base`, so
the loopback emulator (`bot.sandbox.telegram_api`) and the real Bot API differ by one URL. Updates
arrive either as webhooks (`verify` + `parse`) or by long polling (`poll`); both go through
`update_events`, so an update means the same thing whichever way it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods.base import Response
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update, User
from aiogram.utils.token import validate_token
from pydantic import ValidationError

from bot.models import Attachment, Button, Capabilities, Channel, EventKind, InboundEvent, Location, Media
from bot.redaction import scrub
from bot.rendering import RenderedPart
from bot.settings import TelegramSettings
from connectors.base import (
    AcknowledgesCallbacks,
    BadPayload,
    BadSignature,
    DeepLinks,
    Polls,
    SendError,
    WebhookAnswer,
    WebhookRequest,
)

log = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"
WEBHOOK_PATH = "/webhooks/telegram"
ALLOWED_UPDATES = ["message", "callback_query"]
# aiogram validates every answer as `Response[<returned type>]`. pydantic keeps parametrised generics in a
# weak cache, so without a live reference each send rebuilt that model's schema (about 50 µs a call).
_RESPONSE_MODELS = (Response[Message], Response[bool])
CALLBACK_PREFIX = "cb:"
MAX_TEXT = 4096  # Bot API limits: a longer one is not from Telegram, and the NLU's cost grows with length
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes, Bot API limit for InlineKeyboardButton.callback_data
_START = re.compile(r"^/start(?:@\w+)?(?:\s+(?P<param>\S.*))?$", re.DOTALL)
_DEEP_LINK_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INT64 = range(-(2**63), 2**63)  # Telegram's ids are signed 64-bit; a bigger one is not from Telegram
# Errors that the same request will hit again however often it is retried.
_PERMANENT = (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramUnauthorizedError,
    TelegramMigrateToChat,
    TelegramEntityTooLarge,
)
T = TypeVar("T")


class TelegramConnector(DeepLinks, AcknowledgesCallbacks, Polls):
    channel: Channel = "telegram"
    capabilities = Capabilities(max_text=4096, native_buttons=True, max_buttons=8, media=True)

    def __init__(self, settings: TelegramSettings, token: str) -> None:
        validate_token(token)  # aiogram's own check, so a bad token fails here and not at the first send
        self.settings = settings
        self._token = token
        self._secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self._secrets = (token, self._secret) if self._secret else (token,)
        self._bot: Bot | None = None

    @property
    def bot(self) -> Bot:
        if self._bot is None:
            raise RuntimeError("TelegramConnector.start() has not been called")
        return self._bot

    async def start(self, public_url: str | None) -> None:
        """Create the one `Bot` (and its HTTP session); with a public URL, register the webhook."""
        if self._bot is None:
            session = AiohttpSession(api=TelegramAPIServer.from_base(self.settings.api_base))
            self._bot = Bot(self._token, session=session)
        if public_url:
            await self._bot.set_webhook(
                url=public_url.rstrip("/") + WEBHOOK_PATH,
                secret_token=self._secret,
                allowed_updates=ALLOWED_UPDATES,
            )

    async def close(self) -> None:
        if self._bot is not None:
            await self._bot.session.close()
            self._bot = None

    def deep_link(self, code: str) -> str:
        """The t.me link that opens the bot and sends `/start CODE` (Telegram allows 1-64 of A-Za-z0-9_-)."""
        if not _DEEP_LINK_CODE.match(code):
            raise ValueError(f"deep-link code must be 1-64 characters of A-Z a-z 0-9 _ -: {code!r}")
        return f"https://t.me/{self.settings.bot_username}?start={code}"

    def verify(self, request: WebhookRequest) -> None:
        if self._secret is None:
            return
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            raise BadSignature("missing X-Telegram-Bot-Api-Secret-Token header")
        if not secrets.compare_digest(given.encode(), self._secret.encode()):
            raise BadSignature("X-Telegram-Bot-Api-Secret-Token does not match the configured webhook secret")

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        try:
            update = Update.model_validate_json(request.body)
        except ValidationError as exc:
            raise BadPayload(_explain(exc)) from None
        return update_events(update)

    def answer(self, events: list[InboundEvent]) -> WebhookAnswer:
        return WebhookAnswer(b"", "application/json")

    def awaits_acknowledgement(self, events: list[InboundEvent]) -> bool:
        return any(e.provider_id.startswith(CALLBACK_PREFIX) for e in events)

    async def acknowledge(self, events: list[InboundEvent]) -> None:
        """Answer the callback queries among `events` so the pressed button stops spinning.

        Called once the events are stored. A failure only leaves a spinner on the customer's screen,
        so it is logged, never raised.
        """
        presses = [e.provider_id for e in events if e.provider_id.startswith(CALLBACK_PREFIX)]
        query_ids = [provider_id.removeprefix(CALLBACK_PREFIX) for provider_id in presses]
        if not query_ids:
            return
        if self._bot is None:
            log.warning("cannot answer callback queries %s: the connector is not started", query_ids)
            return
        results = await asyncio.gather(
            *(self.bot.answer_callback_query(callback_query_id=qid) for qid in query_ids),
            return_exceptions=True,
        )
        for qid, result in zip(query_ids, results, strict=True):
            if isinstance(result, Exception):
                log.warning("answerCallbackQuery %s failed: %s", qid, self._reason(result))

    async def send(self, user_id: str, part: RenderedPart) -> str | None:
        """Send media first (text as the caption when it fits), then the text; buttons ride on the last."""
        chat_id = int(user_id) if user_id.lstrip("-").isdigit() else user_id
        text = part.text
        caption = text if text and len(text) <= MAX_CAPTION and part.media else None
        if caption is not None:
            text = None
        keyboard = _keyboard(part.buttons)
        sent: Message | None = None
        try:
            for index, media in enumerate(part.media):
                last = index == len(part.media) - 1 and text is None
                sent = await self._send_media(
                    chat_id, media, caption if index == 0 else None, keyboard if last else None
                )
            if text is not None:
                sent = await self.bot.send_message(chat_id=chat_id, text=text, reply_markup=keyboard)
        except TelegramRetryAfter as exc:
            raise SendError(self._reason(exc), retry_after=exc.retry_after) from exc
        except _PERMANENT as exc:
            raise SendError(self._reason(exc), permanent=True) from exc
        except (TelegramAPIError, ClientDecodeError) as exc:  # network, 5xx, a proxy's HTML error page
            raise SendError(self._reason(exc)) from exc
        return str(sent.message_id) if sent else None

    def _reason(self, exc: BaseException) -> str:
        """The error's text without our token: aiohttp's errors quote the request URL, `/bot<TOKEN>/...`."""
        return scrub(str(exc), self._secrets)

    async def _send_media(
        self, chat_id: int | str, media: Media, caption: str | None, keyboard: InlineKeyboardMarkup | None
    ) -> Message:
        if media.type == "image":
            return await self.bot.send_photo(
                chat_id=chat_id, photo=media.url, caption=caption, reply_markup=keyboard
            )
        # Telegram takes any file as a document; that keeps video and audio working without extra paths.
        return await self.bot.send_document(
            chat_id=chat_id, document=media.url, caption=caption, reply_markup=keyboard
        )

    async def poll(
        self,
        on_events: Callable[[list[InboundEvent]], Awaitable[None]],
        stop: asyncio.Event,
        *,
        poll_seconds: int = 25,
    ) -> None:
        """Receive updates by long polling until `stop` is set (for hubs without a public URL).

        The offset — which confirms updates to Telegram — advances only after `on_events` returned,
        so an update is never lost; if `on_events` raises, the same updates come again after a pause.
        Callback queries are acknowledged here, so `on_events` only has to store the events.
        """
        offset: int | None = None
        failures = 0
        webhook_removed = False
        while not stop.is_set():
            try:
                if not webhook_removed:  # Telegram refuses getUpdates while a webhook is set
                    webhook_removed = await self.bot.delete_webhook()
                updates = await _unless_stopped(
                    self.bot.get_updates(
                        offset=offset,
                        timeout=poll_seconds,
                        allowed_updates=ALLOWED_UPDATES,
                        request_timeout=poll_seconds + 10,
                    ),
                    stop,
                )
                if updates is None:
                    break
                events = [event for update in updates for event in _polled_events(update)]
                if events:
                    await on_events(events)
                    await self.acknowledge(events)
            except TelegramUnauthorizedError:
                raise  # a wrong token does not get better by waiting
            except Exception:
                failures += 1
                delay = min(30.0, 0.5 * 2**failures)
                log.exception("Telegram polling failed; retrying in %.1f s", delay)
                await _sleep_unless_stopped(delay, stop)
                continue
            failures = 0
            if updates:
                offset = updates[-1].update_id + 1
        if offset is not None:
            await self._confirm(offset)

    async def _confirm(self, offset: int) -> None:
        """Tell Telegram the updates before `offset` are handled, so the next poller does not get them."""
        try:
            await self.bot.get_updates(offset=offset, timeout=0, limit=1)
        except (TelegramAPIError, ClientDecodeError) as exc:
            log.warning("could not confirm Telegram updates before %s: %s", offset, self._reason(exc))


def _polled_events(update: Update) -> list[InboundEvent]:
    """A polled update's events; a malformed one is skipped, or polling would fetch it again forever."""
    try:
        return update_events(update)
    except BadPayload as exc:
        log.warning("skipping Telegram update %s: %s", update.update_id, exc)
        return []


def update_events(update: Update) -> list[InboundEvent]:
    """The events one update carries: a customer message or a button press; other updates carry none
    (edits, channel posts, membership changes), and the webhook still answers 200 so nothing is retried.

    Raises `BadPayload` naming the field when a number is out of range: aiogram takes any int and
    any float (even "NaN"), and an event that cannot be written as JSON could never be read back.
    """
    _check_id(update.update_id, "update_id")
    try:
        return _events(update)
    except ValidationError as exc:  # the model's own limits, for anything the checks below let through
        error = exc.errors()[0]
        where = ".".join(str(key) for key in error["loc"])
        raise BadPayload(f"Telegram update makes no valid event: {where}: {error['msg']}") from None


def _events(update: Update) -> list[InboundEvent]:
    if update.message is not None:
        event = _message_event(update.update_id, update.message)
        return [event] if event else []
    if update.callback_query is not None and update.callback_query.data is not None:
        return [_callback_event(update.callback_query)]
    return []


def _own_phone(message: Message) -> str | None:
    """The customer's own number, from a "share my phone" button (request_contact). A card of someone
    else (any contact can be forwarded) must never link that person's identity to this customer."""
    card, sender = message.contact, message.from_user
    if card is None or sender is None or card.user_id != sender.id:
        return None
    return card.phone_number


def _message_event(update_id: int, message: Message) -> InboundEvent | None:
    _check_length(message.text, MAX_TEXT, "message.text")
    _check_length(message.caption, MAX_CAPTION, "message.caption")
    text = message.text or message.caption
    start_param = None
    if message.text and (start := _START.match(message.text)):
        text, start_param = "/start", start.group("param")
    _check_id(message.chat.id, "message.chat.id")
    attachments = _attachments(message)
    place = message.location
    location = None
    if place is not None:
        location = Location(
            latitude=_coordinate(place.latitude, 90, "message.location.latitude"),
            longitude=_coordinate(place.longitude, 180, "message.location.longitude"),
        )
    contact_phone = _own_phone(message)
    if not (text or attachments or location or contact_phone):
        return None  # service messages (pins, joins) are not something a customer said
    return InboundEvent(
        kind=EventKind.message,
        channel="telegram",
        user_id=str(message.chat.id),
        provider_id=str(update_id),
        text=text,
        start_param=start_param,
        attachments=attachments,
        location=location,
        contact_phone=contact_phone,
        at=message.date,
        user_name=_full_name(message.from_user),
        language=message.from_user.language_code if message.from_user else None,
    )


def _attachments(message: Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.photo:
        largest = max(message.photo, key=lambda size: size.width * size.height)
        found.append(Attachment(type="image", file_id=largest.file_id))
    if doc := message.document:
        found.append(Attachment(type="document", file_id=doc.file_id, mime=doc.mime_type, name=doc.file_name))
    if audio := message.audio:
        found.append(
            Attachment(type="audio", file_id=audio.file_id, mime=audio.mime_type, name=audio.file_name)
        )
    if video := message.video:
        found.append(
            Attachment(type="video", file_id=video.file_id, mime=video.mime_type, name=video.file_name)
        )
    if message.voice:
        found.append(Attachment(type="voice", file_id=message.voice.file_id, mime=message.voice.mime_type))
    if message.sticker:
        found.append(Attachment(type="sticker", file_id=message.sticker.file_id))
    return tuple(found)


def _callback_event(query: CallbackQuery) -> InboundEvent:
    # The press arrives without a date; the event keeps its receipt time.
    chat_id = query.message.chat.id if query.message is not None else query.from_user.id
    _check_id(chat_id, "callback_query.message.chat.id" if query.message is not None else "callback_query.from.id")
    return InboundEvent(
        kind=EventKind.message,
        channel="telegram",
        user_id=str(chat_id),
        provider_id=CALLBACK_PREFIX + query.id,
        payload=query.data,
        user_name=_full_name(query.from_user),
        language=query.from_user.language_code,
    )


def _full_name(user: User | None) -> str | None:
    if user is None:
        return None
    return " ".join(part for part in (user.first_name, user.last_name) if part) or None


def _keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    rows = [[InlineKeyboardButton(text=b.title, callback_data=_callback_data(b))] for b in buttons]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _callback_data(button: Button) -> str:
    """The payload cut to Telegram's 64 bytes on a character boundary (an empty one is refused)."""
    data = (button.payload or button.title).encode()[:MAX_CALLBACK_DATA]
    return data.decode("utf-8", errors="ignore")


def _check_id(value: int, where: str) -> None:
    if value not in _INT64:  # the value itself is not quoted: str() of a huge int is slow, or refused
        raise BadPayload(f"body is not a Telegram Update: {where}: out of the signed 64-bit range")


def _check_length(text: str | None, limit: int, where: str) -> None:
    if text is not None and len(text) > limit:
        raise BadPayload(f"body is not a Telegram Update: {where}: longer than Telegram's {limit} characters")


def _coordinate(value: float, limit: int, where: str) -> float:
    if not (math.isfinite(value) and -limit <= value <= limit):
        raise BadPayload(f"body is not a Telegram Update: {where}: must be a number from -{limit} to {limit}")
    return value


def _explain(exc: ValidationError) -> str:
    error = exc.errors()[0]
    if error["type"] == "json_invalid":
        return f"body is not valid JSON: {error['msg']}"
    where = ".".join(str(key) for key in error["loc"]) or "body"
    return f"body is not a Telegram Update: {where}: {error['msg']}"


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """Run `work` unless `stop` is set first, in which case it is cancelled and None returned."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        task.cancel()  # a no-op when it is done
        await asyncio.gather(task, stopped, return_exceptions=True)
    return None if task.cancelled() else task.result()


async def _sleep_unless_stopped(delay: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
