"""The shared renderer: what each channel shows of one reply."""

from __future__ import annotations

from bot.models import Button, Capabilities, Media, Reply
from bot.rendering import match_option, render, sms_info, split_text

TELEGRAM = Capabilities(max_text=4096, native_buttons=True, max_buttons=8)
SMS = Capabilities(max_text=1600, native_buttons=False, media=False, sms_segments=True)
BUTTONS = (Button(title="Order status", payload="order_status"), Button(title="Talk to a human", payload="human"))


def test_native_buttons_stay_buttons() -> None:
    [part] = render(Reply(text="Hi!", buttons=BUTTONS), TELEGRAM)
    assert part.text == "Hi!" and part.buttons == BUTTONS and part.options == ()


def test_buttons_become_numbered_options_where_there_are_none() -> None:
    [part] = render(Reply(text="Hi!", buttons=BUTTONS), SMS)
    assert part.text == "Hi!\n1. Order status\n2. Talk to a human"
    assert part.buttons == () and part.options == BUTTONS


def test_a_customer_answers_an_option_by_number_or_title() -> None:
    assert match_option(" 2. ", BUTTONS) == BUTTONS[1]
    assert match_option("order STATUS", BUTTONS) == BUTTONS[0]
    assert match_option("3", BUTTONS) is None
    assert match_option("maybe", BUTTONS) is None


def test_long_text_is_split_at_sentence_ends_under_the_limit() -> None:
    text = "First sentence here. Second one is a bit longer! Third? " * 20
    chunks = split_text(text.strip(), 100)
    assert all(len(c) <= 100 for c in chunks)
    assert all(c.endswith((".", "!", "?")) for c in chunks)
    assert " ".join(chunks) == " ".join(text.split())


def test_a_sentence_longer_than_the_limit_is_cut_at_spaces() -> None:
    chunks = split_text("word " * 50, 42)
    assert all(len(c) <= 42 for c in chunks) and " ".join(chunks) == ("word " * 50).strip()


def test_sms_segments_gsm7_and_ucs2() -> None:
    assert (sms_info("a" * 160).encoding, sms_info("a" * 160).segments) == ("GSM-7", 1)
    assert sms_info("a" * 161).segments == 2  # 153 septets per part once split
    assert sms_info("€" * 80).units == 160 and sms_info("€" * 80).segments == 1  # extension: two septets
    russian = sms_info("Привет" * 12)  # 72 characters of Cyrillic: UCS-2
    assert (russian.encoding, russian.segments) == ("UCS-2", 2)
    assert sms_info("Привет" * 11 + "Прив").segments == 1  # exactly 70


def test_media_falls_back_to_links_where_the_channel_has_none() -> None:
    [part] = render(Reply(text="See", media=(Media(url="https://x.test/a.jpg"),)), SMS)
    assert part.text == "See\nhttps://x.test/a.jpg" and part.media == ()
    assert part.sms is not None and part.sms.encoding == "GSM-7"
