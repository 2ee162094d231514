"""The issue's acceptance test in real Chromium: two agents in two browser contexts and a customer who
moves from Telegram to WhatsApp, from "talk to a human" to the rating and the bot again.

The browser steps find elements by role and label as a screen reader would; the customer's side is
read from the emulators' outboxes, which is what the provider would have delivered.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout
from redis.asyncio import Redis

from bot.context import keys
from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory
from tests.console.signin import PASSWORD, add_agent
from tests.pipeline.customer import Customer, small_hub

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOTS = Path("/tmp")
GREETING = "Hi, Sandbox! I'm looking into this for you now."
FALLBACK = "HX" + "c" * 32  # a WhatsApp template's Content SID
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM} (Playwright cannot download a browser on this machine)"
)

expect.set_options(timeout=15_000)  # a webhook, a worker turn and a pub/sub notice away


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def console(browser: Browser, client: SandboxClient, email: str) -> AsyncIterator[Page]:
    """An agent signed in through the login form, in a browser context of their own (own cookies)."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    errors: list[Exception] = []
    page.on("pageerror", lambda error: errors.append(error))
    try:
        await page.goto(f"{str(client.http.base_url).rstrip('/')}/console")
        await expect(page).to_have_url(re.compile(r"/console/login$"))  # no session: the form, no data
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("status")).to_have_text("Live")  # the WebSocket is open
        yield page
    finally:
        await context.close()
    assert not errors, f"the console's JavaScript failed: {errors}"


def listed(page: Page, name: str, who: str) -> Locator:
    return page.get_by_role("list", name=name).get_by_role("button", name=re.compile(who))


async def sent_until(customer: Customer, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """What the hub sent the customer up to the first message that is `done` (notices may come first)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while not any(done(m) for m in got) and (left := deadline - time.monotonic()) > 0:
        got += await customer.client.replies(customer.channel, customer.user, after=customer.seen, wait=left)
        customer.seen = max([customer.seen, *(m["seq"] for m in got)])
    assert any(done(m) for m in got), f"{customer.channel} never got it: {got}"
    return got


async def hears(customer: Customer, text: str) -> list[dict[str, Any]]:
    return await sent_until(customer, lambda message: message["text"] == text)


async def reply(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Reply")
    await box.fill(text)
    await box.press("Enter")
    await expect(box).to_have_value("")


@pytest.mark.browser
@needs_chromium
async def test_two_agents_serve_a_customer_across_telegram_and_whatsapp(hub: HubFactory, browser: Browser) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "anna@example.com", "Anna")
        await add_agent(client, "boris@example.com", "Boris")
        telegram, whatsapp = Customer(client, "telegram", "720001"), Customer(client, "whatsapp", "+79990007788")
        await telegram.say("can I continue in whatsapp?")
        [offer] = await telegram.replies(1)
        code = re.search(r"the code ([A-Z0-9]{6})", offer["text"] or "")
        assert code, offer

        async with console(browser, client, "anna@example.com") as anna:
            await telegram.say("talk to a human")
            arrived = listed(anna, "Queue", "Sandbox").or_(listed(anna, "My conversations", "Sandbox"))
            await expect(arrived).to_be_visible()  # live: no reload
            await arrived.click()
            claim = anna.get_by_role("button", name="Claim")
            with contextlib.suppress(PlaywrightTimeout):  # unless the router gave it to her (she is online)
                await claim.click(timeout=2_000)
            await expect(listed(anna, "My conversations", "Sandbox")).to_be_visible()
            box = anna.get_by_role("textbox", name="Reply")
            await anna.get_by_role("combobox", name="Canned response").select_option(label="Greeting")
            await expect(box).to_have_value(GREETING)  # {{ contact.name }} filled in
            await anna.get_by_role("textbox", name="Quick replies").fill("Refund, Exchange")
            await anna.get_by_role("textbox", name="Attachment link").fill("https://example.com/invoice.pdf")
            await box.press("Enter")
            sent = await hears(telegram, f"{GREETING}\nhttps://example.com/invoice.pdf")
            assert [b["title"] for b in sent[-1]["buttons"]] == ["Refund", "Exchange"]
            history = anna.get_by_role("log", name="History")
            await expect(history).to_contain_text(GREETING)

            await whatsapp.say(code.group(1))  # the customer moves to WhatsApp
            await whatsapp.replies(1)  # linked
            await whatsapp.say("I'm on WhatsApp now")
            await expect(history.get_by_text("I'm on WhatsApp now")).to_be_visible()  # the same conversation
            await expect(history.locator(".badge.whatsapp").first).to_be_visible()
            await reply(anna, "Got it, carrying on here.")
            assert await hears(whatsapp, "Got it, carrying on here.")
            await anna.get_by_role("textbox", name="Reply").fill("Refund approved by finance")
            await anna.get_by_text("Internal note (never sent)").click()
            await anna.get_by_role("textbox", name="Reply").press("Enter")
            await expect(history.locator(".note")).to_contain_text("Refund approved by finance")
            await anna.screenshot(path=str(SCREENSHOTS / "console-anna.png"))

            async with console(browser, client, "boris@example.com") as boris:
                await anna.get_by_role("combobox", name="Transfer to").select_option(label="Boris")
                await anna.get_by_role("button", name="Transfer").click()
                await expect(anna.get_by_role("main")).to_contain_text("Transferred to Boris.")
                await expect(listed(anna, "My conversations", "Sandbox")).to_be_hidden()
                mine = listed(boris, "My conversations", "Sandbox")
                await expect(mine).to_be_visible()  # live in the other browser
                await mine.click()
                handed = boris.get_by_role("log", name="History")
                await expect(handed).to_contain_text("Refund approved by finance")
                await expect(handed.get_by_label("read").first).to_be_visible()  # WhatsApp's blue ticks
                await expect(handed.get_by_label("sent").first).to_be_visible()  # Telegram reports no more
                await boris.get_by_role("button", name="Resolve").click()
                await expect(boris.get_by_role("main")).to_contain_text("Resolved: the customer is asked for a rating.")
                await expect(mine).to_be_hidden()
                await boris.screenshot(path=str(SCREENSHOTS / "console-boris.png"))

        [question] = await whatsapp.replies(1)
        assert "1" in (question["text"] or "") and "5" in (question["text"] or "")
        await whatsapp.say("5")
        [thanks] = await whatsapp.replies(1)
        assert "Thank you" in (thanks["text"] or "")
        await whatsapp.say("hi")
        [greeting] = await whatsapp.replies(1)
        assert (greeting["text"] or "").startswith("Hi")  # the bot answers again


@pytest.mark.browser
@needs_chromium
async def test_outside_the_whatsapp_window_the_console_says_so_and_sends_the_template(
    hub: HubFactory, redis: Redis, browser: Browser
) -> None:
    async with small_hub(hub, twilio__whatsapp_fallback_template=FALLBACK) as client:
        await add_agent(client, "ivy@example.com", "Ivy")
        whatsapp = Customer(client, "whatsapp", "+79990008899")
        async with console(browser, client, "ivy@example.com") as ivy:
            await whatsapp.say("talk to a human")
            arrived = listed(ivy, "Queue", r"\+79990008899").or_(listed(ivy, "My conversations", r"\+79990008899"))
            await expect(arrived).to_be_visible()
            cid = await whatsapp.contact_id()
            await redis.hset(keys.contact(cid), "seen:whatsapp", f"{time.time() - 25 * 3600:.0f}")  # a day ago
            await arrived.click()
            with contextlib.suppress(PlaywrightTimeout):
                await ivy.get_by_role("button", name="Claim").click(timeout=2_000)
            notice = ivy.get_by_role("note")
            await expect(notice).to_contain_text("WhatsApp's 24-hour window is closed")
            await expect(notice).to_contain_text(FALLBACK)
            await ivy.get_by_role("textbox", name="Reply").fill("Your refund is ready.")
            await ivy.get_by_role("button", name="Send as template").click()
            sent = await sent_until(whatsapp, lambda message: message["raw"].get("ContentSid") == FALLBACK)
            assert "Body" not in sent[-1]["raw"] and "Your refund is ready." in sent[-1]["raw"]["ContentVariables"]
            await expect(ivy.get_by_role("log", name="History")).to_contain_text(f"sent as template {FALLBACK}")
            await ivy.screenshot(path=str(SCREENSHOTS / "console-whatsapp-window.png"))


@pytest.mark.browser
@needs_chromium
async def test_a_supervisor_sees_every_agents_load_and_reassigns(hub: HubFactory, browser: Browser) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "kai@example.com", "Kai")
        await add_agent(client, "lea@example.com", "Lea")
        await add_agent(client, "max@example.com", "Max", role="supervisor", teams=("escalations",))
        telegram = Customer(client, "telegram", "720009")
        async with console(browser, client, "kai@example.com") as kai, \
                console(browser, client, "max@example.com") as max_, console(browser, client, "lea@example.com"):
            await telegram.say("talk to a human")
            held = max_.get_by_role("list", name="Other agents' conversations").get_by_role(
                "button", name=re.compile("Sandbox"))
            await expect(held).to_contain_text(re.compile("with (Kai|Lea)"))  # the router gave it to one of them
            holder, other = ("Kai", "Lea") if "Kai" in (await held.text_content() or "") else ("Lea", "Kai")
            agents = max_.get_by_role("list", name="Agents", exact=True)
            await expect(agents).to_contain_text(f"{holder} · 1/5")
            await expect(agents).to_contain_text(f"{other} · 0/5")
            await max_.screenshot(path=str(SCREENSHOTS / "console-supervisor.png"))
            await max_.keyboard.press("Alt+ArrowDown")  # the next conversation, from the keyboard
            await expect(max_.get_by_role("main")).to_contain_text(f"assigned to {holder}")
            await max_.get_by_role("combobox", name="Transfer to").select_option(label=other)
            await max_.get_by_role("button", name="Transfer").click()
            await expect(agents).to_contain_text(f"{other} · 1/5")
            await expect(agents).to_contain_text(f"{holder} · 0/5")
            if other == "Kai":
                await expect(listed(kai, "My conversations", "Sandbox")).to_be_visible()


@pytest.mark.browser
@needs_chromium
async def test_the_sandbox_links_to_the_console(hub: HubFactory, browser: Browser) -> None:
    async with small_hub(hub) as client:
        page = await browser.new_page()
        await page.goto(f"{str(client.http.base_url).rstrip('/')}/sandbox")
        await page.get_by_role("link", name="Agent console").click()
        await expect(page).to_have_url(re.compile(r"/console/login$"))
        await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        await page.close()
