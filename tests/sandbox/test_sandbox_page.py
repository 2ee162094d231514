"""The `/sandbox` page: served only when a channel runs on an emulator, and in a real headless Chromium
a visitor chats as a customer on all four panes.

The browser tests assert only what a person sees in a pane, and find elements by role and label as a
screen reader would. Playwright cannot download its own browser here, so Debian's Chromium is used.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from bot.rendering import sms_info
from tests.conftest import HubFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOT = Path("/tmp/sandbox.png")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (Playwright cannot download a browser on this machine)"
)

expect.set_options(timeout=15_000)  # a reply is a webhook, a worker turn and a send away


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[Exception] = []
        page.on("pageerror", lambda error: errors.append(error))
        try:
            yield page
        finally:
            await browser.close()
        assert not errors, f"the page's JavaScript failed: {errors}"


@contextlib.asynccontextmanager
async def sandbox(page: Page, hub_url: str) -> AsyncIterator[dict[str, Locator]]:
    """The page's four panes, ready; the page is closed on the way out, before the hub stops, because
    its long polls would hold the hub's shutdown for their 25 seconds."""
    await page.goto(f"{hub_url.rstrip('/')}/sandbox")
    panes = {name: page.get_by_role("region", name=name) for name in ("Telegram", "WhatsApp", "Viber", "SMS")}
    try:
        for pane in panes.values():
            await expect(pane.get_by_role("textbox", name="Message")).to_be_enabled()  # it knows its outbox
        yield panes
    finally:
        await page.close()


async def write(pane: Locator, text: str) -> None:
    box = pane.get_by_role("textbox", name="Message")
    await box.fill(text)
    await box.press("Enter")


def chat(pane: Locator) -> Locator:
    return pane.get_by_role("log", name="Messages")


@pytest.mark.browser
@needs_chromium
async def test_a_visitor_chats_on_all_four_panes(hub: HubFactory, page: Page) -> None:
    async with hub() as client, sandbox(page, str(client.http.base_url)) as panes:

        telegram = panes["Telegram"]
        await write(telegram, "/start")
        await expect(chat(telegram)).to_contain_text("Hi, Anna! Welcome to Omnishop.")
        buttons = chat(telegram).get_by_role("group", name="Buttons")
        await buttons.get_by_role("button", name="Delivery & hours").click()
        await expect(chat(telegram)).to_contain_text("We deliver nationwide")
        await expect(chat(telegram)).to_contain_text("Our store is open")

        whatsapp = panes["WhatsApp"]
        await write(whatsapp, "hello")
        await expect(chat(whatsapp)).to_contain_text("1. Order status\n2. Delivery & hours\n3. Talk to a human")
        await write(whatsapp, "1")
        await expect(chat(whatsapp)).to_contain_text("What's your order number?")
        await expect(chat(whatsapp).get_by_label("read").first).to_be_visible()  # blue ticks: WhatsApp read it

        viber = panes["Viber"]
        await write(viber, "hi")
        keyboard = viber.get_by_role("group", name="Keyboard")
        await keyboard.get_by_role("button", name="Talk to a human").click()
        await expect(chat(viber)).to_contain_text("passing the chat to a colleague")
        await expect(keyboard).to_be_hidden()  # the handoff message carries no keyboard: Viber drops it

        sms = panes["SMS"]
        await write(sms, "Здравствуйте! Какие у вас часы работы?")
        reply = chat(sms).get_by_role("listitem").filter(has_text="Магазин работает")
        await expect(reply).to_contain_text(re.compile(r"UCS-2 · \d+ segments?"))
        sent = [m for m in await client.replies("sms", "+79991234567") if "Магазин" in (m["text"] or "")]
        segments = sms_info(sent[-1]["text"]).segments  # what the hub and the Twilio emulator count
        await expect(reply).to_contain_text(f"UCS-2 · {segments} segment")
        await expect(chat(sms)).not_to_contain_text("What's your order number?")  # that went by WhatsApp

        await page.screenshot(path=str(SCREENSHOT))


@pytest.mark.browser
@needs_chromium
async def test_the_customer_and_the_language_hint_are_editable(hub: HubFactory, page: Page) -> None:
    async with hub() as client, sandbox(page, str(client.http.base_url)) as panes:
        telegram = panes["Telegram"]
        await telegram.get_by_text("Customer: Anna · 100001").click()
        await telegram.get_by_label("Name").fill("Boris")
        await telegram.get_by_label("Name").press("Tab")
        await telegram.get_by_label("Language hint").select_option("ru")
        await telegram.get_by_label("Chat id").fill("200002")
        await telegram.get_by_label("Chat id").press("Tab")
        await expect(telegram.get_by_text("Customer: Boris · 200002")).to_be_visible()

        await write(telegram, "/start")  # no text to tell the language by: the hint decides
        await expect(chat(telegram)).to_contain_text("Здравствуйте, Boris! Это Omnishop.")
        assert [m["text"] for m in await client.replies("telegram", "100001")] == []

        await telegram.get_by_role("button", name="Share phone").click()
        await expect(chat(telegram)).to_contain_text("Shared contact: Boris, +79991234567")


async def test_the_page_is_404_with_a_reason_when_no_channel_is_sandboxed(hub: HubFactory) -> None:
    off = {"telegram__enabled": False, "twilio__enabled": False, "viber__enabled": False}
    async with hub(run_workers=False, **off) as client:
        response = await client.http.get("/sandbox")
        assert response.status_code == 404
        assert "The sandbox is off" in response.text
        assert (await client.http.get("/sandbox/config")).json()["channels"] == []


async def test_config_assets_and_sms_info(hub: HubFactory) -> None:
    async with hub(run_workers=False) as client:
        config = (await client.http.get("/sandbox/config")).json()
        assert {c["channel"]: c["emulator"] for c in config["channels"]} == {
            "telegram": "/emulator/telegram", "whatsapp": "/emulator/twilio", "sms": "/emulator/twilio",
            "viber": "/emulator/viber",
        }
        page = await client.http.get("/sandbox")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        script = await client.http.get("/sandbox/static/sandbox.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await client.http.get("/sandbox/static/page.py")).status_code == 404

        async def info(text: str) -> dict[str, object]:
            answer: dict[str, object] = (await client.http.post("/sandbox/sms-info", json={"text": text})).json()
            return answer

        assert await info("Hello €") == {"encoding": "GSM-7", "units": 8, "segments": 1}
        assert await info("Привет" * 12) == {"encoding": "UCS-2", "units": 72, "segments": 2}
