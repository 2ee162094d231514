"""The Campaigns page in real Chromium: a marketer signs in, sees a running campaign with its funnel per
channel filling in live, pauses and resumes it from the page and exports the CSV; the JSON behind it
answers 403 to an agent, 404 to an unknown campaign and 409 to a transition the campaign cannot make.

Two Telegram customers are tagged through the contacts API and a service campaign (no consent needed)
is created and started through the campaigns API, as a marketer's tooling would."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory
from tests.console.signin import PASSWORD, add_agent
from tests.console.test_console_browser import browser, needs_chromium
from tests.pipeline.customer import Customer, small_hub

__all__ = ["browser"]  # the fixture, imported for pytest

# a check due in ten minutes keeps it running while the page is watched (then it would be done)
STEP = {"channel": "preferred", "text": "hi", "until": "sent", "within": 600}


async def customers_tagged(client: SandboxClient, tag: str, *users: str) -> None:
    for user in users:
        customer = Customer(client, "telegram", user)
        await customer.say("hello")
        await customer.replies(1)
        cid = await customer.contact_id()
        response = await client.http.patch(f"/api/v1/contacts/{cid}", json={"add_tags": [tag]})
        assert response.status_code == 200, response.text


async def started_campaign(client: SandboxClient, name: str, tag: str) -> str:
    made = await client.http.post("/api/v1/campaigns", json={
        "name": name, "purpose": "service", "audience": {"tags": [tag]}, "steps": [STEP]})
    assert made.status_code == 201, made.text
    campaign = str(made.json()["id"])
    started = await client.http.post(f"/api/v1/campaigns/{campaign}/start")
    assert started.status_code == 202, started.text
    return campaign


@contextlib.asynccontextmanager
async def session(client: SandboxClient, email: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """Signed in over plain HTTP: the client with its session cookie, and the CSRF token."""
    async with httpx.AsyncClient(base_url=client.http.base_url, timeout=30) as http:
        login = await http.post("/console/login", data={"email": email, "password": PASSWORD})
        assert login.status_code == 303, login.text
        yield http, (await http.get("/console/api/me")).json()["csrf"]


@contextlib.asynccontextmanager
async def campaigns_page(browser: Browser, client: SandboxClient, email: str) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = await context.new_page()
    errors: list[Exception] = []
    page.on("pageerror", lambda error: errors.append(error))
    try:
        await page.goto(f"{str(client.http.base_url).rstrip('/')}/console")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(re.compile(r"/console/campaigns$"))  # a marketer lands on campaigns
        yield page
    finally:
        await context.close()
    assert not errors, f"the Campaigns page's JavaScript failed: {errors}"


@pytest.mark.browser
@needs_chromium
async def test_a_marketer_watches_and_pauses_a_campaign_in_the_console(hub: HubFactory, browser: Browser) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "mia@example.com", "Mia", role="marketer")
        await customers_tagged(client, "console-news", "750001", "750002")
        campaign = await started_campaign(client, "Console news", "console-news")

        async with campaigns_page(browser, client, "mia@example.com") as page:
            listed = page.get_by_role("table", name="Campaigns").get_by_role("row", name=re.compile("Console news"))
            await expect(listed).to_contain_text("Running")
            await expect(listed).to_contain_text("0 / 2")  # both sent; each waits for its check: none settled
            await listed.get_by_role("button", name="Console news").click()
            await expect(page).to_have_url(re.compile(f"#{campaign}$"))

            # the funnel fills in as the feed counts (polled every 2 s while the campaign runs)
            chart = page.get_by_role("img", name=re.compile(r"^Telegram funnel: sent 2, "))
            await expect(chart).to_be_visible()
            sent_bar = chart.locator("rect.bar[data-metric=sent]")
            await expect(sent_bar).to_have_attribute("data-value", "2")
            assert float(await sent_bar.get_attribute("width") or 0) > 0
            total = page.get_by_role("img", name=re.compile(r"^All channels funnel: audience 2, sent 2, "))
            await expect(total).to_be_visible()
            row = page.get_by_role("table", name="Figures per channel").get_by_role("row", name=re.compile("^Telegram"))
            await expect(row.locator("td[data-metric=sent]")).to_have_text("2")
            await expect(row.locator("td[data-metric=failed]")).to_have_text("0")
            await expect(page.get_by_role("status")).to_have_text("Live · every 2 s")

            await page.get_by_role("button", name="Pause").click()
            await expect(page.get_by_label("Status: Paused")).to_be_visible()
            await expect(listed).to_contain_text("Paused")
            assert (await client.http.get(f"/api/v1/campaigns/{campaign}")).json()["status"] == "paused"
            await page.get_by_role("button", name="Resume").click()
            await expect(page.get_by_label("Status: Running")).to_be_visible()
            assert (await client.http.get(f"/api/v1/campaigns/{campaign}")).json()["status"] == "running"

            async with page.expect_download() as download_info:
                await page.get_by_role("link", name="Export CSV").click()
            exported = (await (await download_info.value).path()).read_text()
            assert exported.splitlines()[0].startswith("step,channel,sent,")
            assert "all,telegram,2," in exported


async def test_the_campaigns_api_answers_roles_unknown_campaigns_and_refused_transitions(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "mia@example.com", "Mia", role="marketer")
        await add_agent(client, "ann@example.com", "Ann", role="agent")
        await add_agent(client, "sue@example.com", "Sue", role="supervisor")
        made = await client.http.post("/api/v1/campaigns", json={
            "name": "Draft", "purpose": "service", "audience": {"tags": ["nobody"]}, "steps": [STEP]})
        draft = made.json()["id"]
        base = f"/console/api/campaigns/{draft}"

        assert (await client.http.get("/console/api/campaigns")).status_code == 401  # no session
        async with session(client, "ann@example.com") as (ann, csrf):
            assert (await ann.get("/console/api/me")).json()["campaigns"] is False
            for path in ("/console/api/campaigns", base, f"{base}/stats.csv"):
                answer = await ann.get(path)
                assert answer.status_code == 403, path
                assert answer.json()["detail"] == "the agent role does not see campaigns"
            assert (await ann.post(f"{base}/cancel", headers={"X-CSRF-Token": csrf})).status_code == 403
            assert (await client.http.get(f"/api/v1/campaigns/{draft}")).json()["status"] == "draft"
        async with session(client, "sue@example.com") as (sue, _):
            assert [c["name"] for c in (await sue.get("/console/api/campaigns")).json()["items"]] == ["Draft"]
        async with session(client, "mia@example.com") as (mia, csrf):
            assert (await mia.get("/console/api/me")).json()["campaigns"] is True
            found = (await mia.get(base)).json()
            assert (found["campaign"]["status"], found["campaign"]["progress"]) == ("draft", None)
            assert found["figures"]["recipients"] == 0
            assert (await mia.get("/console/api/campaigns/cmpnothere")).status_code == 404
            assert (await mia.post("/console/api/campaigns/cmpnothere/pause",
                                   headers={"X-CSRF-Token": csrf})).status_code == 404
            paused = await mia.post(f"{base}/pause", headers={"X-CSRF-Token": csrf})
            assert paused.status_code == 409
            assert paused.json()["detail"] == "a draft campaign cannot become paused"
            assert (await mia.post(f"{base}/cancel")).status_code == 403  # no CSRF token
            cancelled = await mia.post(f"{base}/cancel", headers={"X-CSRF-Token": csrf})
            assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
            assert (await mia.post(f"{base}/resume", headers={"X-CSRF-Token": csrf})).status_code == 409
