"""Shape a channel-neutral `Reply` into what one channel can show. Lives once; connectors only
declare `Capabilities`.

- buttons become native keyboards where the channel has them, numbered options ("1. Yes") elsewhere;
  `match_option` maps a customer's "1" or "yes" back to the button;
- long text is split on sentence boundaries under the channel's limit;
- SMS text is measured in GSM-7 / UCS-2 segments (Cyrillic is UCS-2: 70 characters, 67 when split).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.models import Button, Capabilities, Media, Reply, Template

# GSM 03.38 basic set and the extension table (extension characters cost two septets).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


@dataclass(frozen=True)
class SmsInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


@dataclass(frozen=True)
class RenderedPart:
    """One provider message. Buttons ride on the last part, media on the first."""

    text: str | None
    buttons: tuple[Button, ...] = ()
    media: tuple[Media, ...] = ()
    template: Template | None = None
    sms: SmsInfo | None = None
    options: tuple[Button, ...] = field(default=())  # numbered options the text lists


def sms_info(text: str) -> SmsInfo:
    if all(ch in _GSM_BASIC or ch in _GSM_EXT for ch in text):
        units = sum(2 if ch in _GSM_EXT else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else -(-units // multi)
    return SmsInfo(encoding=encoding, units=units, segments=segments)


def split_text(text: str, limit: int) -> list[str]:
    """Split at sentence ends (then spaces, then hard) so that every chunk fits `limit`."""
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for sentence in _pieces(text, limit):
        candidate = f"{current} {sentence}" if current else sentence
        if len(candidate) <= limit:
            current = candidate
        else:
            chunks.append(current)
            current = sentence
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, limit: int) -> list[str]:
    pieces: list[str] = []
    for sentence in filter(None, (s.strip() for s in _SENTENCE_END.split(text))):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            pieces.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if sentence:
            pieces.append(sentence)
    return pieces


def numbered(buttons: tuple[Button, ...]) -> str:
    return "\n".join(f"{i}. {b.title}" for i, b in enumerate(buttons, 1))


def render(reply: Reply, caps: Capabilities) -> list[RenderedPart]:
    text = reply.text or ""
    buttons: tuple[Button, ...] = ()
    options: tuple[Button, ...] = ()
    if reply.buttons:
        if caps.native_buttons:
            buttons = reply.buttons[: caps.max_buttons] if caps.max_buttons else reply.buttons
        else:
            options = reply.buttons
            text = f"{text}\n{numbered(options)}" if text else numbered(options)
    media = reply.media if caps.media else ()
    if media != reply.media:  # a channel without media gets the links in the text
        links = "\n".join(m.url for m in reply.media)
        text = f"{text}\n{links}" if text else links
    chunks = split_text(text, caps.max_text) if text else [""]
    parts: list[RenderedPart] = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        parts.append(
            RenderedPart(
                text=chunk or None,
                buttons=buttons if last else (),
                media=media if i == 0 else (),
                template=reply.template if i == 0 else None,
                sms=sms_info(chunk) if caps.sms_segments and chunk else None,
                options=options if last else (),
            )
        )
    return parts


def match_option(text: str, options: list[Button] | tuple[Button, ...]) -> Button | None:
    """Map "2", "2.", " Yes " back to the button the customer meant."""
    answer = text.strip().rstrip(".)").casefold()
    if answer.isdigit():
        index = int(answer) - 1
        return options[index] if 0 <= index < len(options) else None
    for button in options:
        if button.title.casefold() == answer:
            return button
    return None
