"""The console's security, over HTTP and WebSocket against a real hub: nothing without a session, the
login rate limit, logout kills the cookie, CSRF, team boundaries, and a note never reaches a provider."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory
from tests.console.signin import PASSWORD, add_agent, live_url, origin, queued_conversation, signed_in
from tests.pipeline.customer import Customer, small_hub


async def refused_socket(client: SandboxClient, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(live_url(client), additional_headers=headers, open_timeout=10):
            pass
    return refused.value.response.status_code


async def test_nothing_without_a_session(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        page = await client.http.get("/console", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/console/login"
        assert "omnihub" not in page.text.lower()  # a redirect, never data
        for path in ("/console/api/me", "/console/api/conversations", "/console/api/agents",
                     "/console/api/conversations/x-1"):
            assert (await client.http.get(path)).status_code == 401, path
        assert (await client.http.post("/console/api/conversations/x-1/claim")).status_code == 401
        assert (await client.http.post("/console/logout")).status_code == 401
        forged = {"Cookie": "omnihub_console=not-a-session", "Origin": origin(client)}
        assert await refused_socket(client, forged) == 403
        login = await client.http.get("/console/login")
        assert login.status_code == 200 and 'type="password"' in login.text and "{{" not in login.text
        hostile = await client.http.post("/console/login", data={"email": '"><script>x()</script>', "password": "x"})
        assert hostile.status_code == 401 and "<script>x()" not in hostile.text  # escaped


async def test_wrong_passwords_are_limited_and_the_sixth_try_is_refused(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "ana@example.com", "Ana")
        for _ in range(5):
            wrong = await client.http.post("/console/login", data={"email": "ana@example.com", "password": "nope"})
            assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
            assert 'value="ana@example.com"' in wrong.text  # typed once
            assert "omnihub_console" not in wrong.headers.get("set-cookie", "")
        blocked = await client.http.post("/console/login", data={"email": "ana@example.com", "password": PASSWORD})
        assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text


async def test_the_cookie_is_hardened_and_useless_after_logout(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "ben@example.com", "Ben")
        async with signed_in(client, "ben@example.com") as ben:
            stolen = ben.cookie
            login = await client.http.post("/console/login", data={"email": "ben@example.com", "password": PASSWORD})
            cookie = login.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
            assert (await client.http.get("/console/api/me", headers={"Cookie": stolen})).status_code == 200
            ours = origin(client)
            async with connect(live_url(client), additional_headers={"Cookie": stolen, "Origin": ours}) as socket:
                assert (await ben.http.post("/console/logout")).status_code == 403  # no CSRF token: no logout
                assert (await ben.post("/console/logout")).status_code == 200
                await socket.send("ping")  # the browser's next ping finds the session gone
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(10):
                        while True:
                            await socket.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

            assert (await client.http.get("/console/api/me", headers={"Cookie": stolen})).status_code == 401
            page = await client.http.get("/console", headers={"Cookie": stolen}, follow_redirects=False)
            assert page.status_code == 303
            assert await refused_socket(client, {"Cookie": stolen, "Origin": ours}) == 403


async def test_a_marketer_signs_in_but_handles_no_conversation(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "mia@example.com", "Mia", role="marketer")
        await Customer(client, "telegram", "710004").say("talk to a human")
        conversation = await queued_conversation(client)
        async with httpx.AsyncClient(base_url=client.http.base_url) as http:
            login = await http.post("/console/login", data={"email": "mia@example.com", "password": PASSWORD})
            assert login.status_code == 303
            me = (await http.get("/console/api/me")).json()
            assert (me["role"], me["handles"]) == ("marketer", False)
            for path in ("/console/api/conversations", f"/console/api/conversations/{conversation['id']}"):
                assert (await http.get(path)).status_code == 403, path
            cookie = {"Cookie": f"omnihub_console={http.cookies['omnihub_console']}", "Origin": origin(client)}
            assert await refused_socket(client, cookie) == 403


async def test_a_disabled_agent_is_signed_out_everywhere(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        gil = await add_agent(client, "gil@example.com", "Gil")
        async with signed_in(client, "gil@example.com") as session:
            assert (await session.http.get("/console/api/me")).status_code == 200
            assert (await client.http.post(f"/api/v1/agents/{gil}/disable")).status_code == 200
            assert (await session.http.get("/console/api/me")).status_code == 401
            assert await refused_socket(client, {"Cookie": session.cookie, "Origin": origin(client)}) == 403
        again = await client.http.post("/console/login", data={"email": "gil@example.com", "password": PASSWORD})
        assert again.status_code == 401


async def test_behind_an_https_public_url_the_cookie_is_secure(hub: HubFactory) -> None:
    async with small_hub(hub, public_url="https://hub.example.com") as client:
        await add_agent(client, "ned@example.com", "Ned")
        login = await client.http.post("/console/login", data={"email": "ned@example.com", "password": PASSWORD})
        assert login.status_code == 303 and "secure" in login.headers["set-cookie"].lower()


async def test_state_changes_need_the_csrf_token_and_the_socket_our_origin(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "cat@example.com", "Cat")
        await Customer(client, "telegram", "710001").say("talk to a human")
        conversation = await queued_conversation(client)
        async with signed_in(client, "cat@example.com") as cat:
            path = f"/console/api/conversations/{conversation['id']}"
            for headers in ({}, {"X-CSRF-Token": "guess"}):
                refused = await cat.http.post(f"{path}/notes", json={"text": "forged"}, headers=headers)
                assert refused.status_code == 403 and "X-CSRF-Token" in refused.text
            assert "forged" not in (await cat.http.get(path)).text
            assert await refused_socket(client, {"Cookie": cat.cookie, "Origin": "https://evil.example"}) == 403
            cross_site = await client.http.post("/console/login", headers={"Origin": "https://evil.example"},
                                                data={"email": "cat@example.com", "password": PASSWORD})
            assert cross_site.status_code == 403
            assert (await cat.post(f"{path}/notes", {"text": "genuine"})).status_code == 200


async def test_an_agent_cannot_open_another_teams_conversation(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "dan@example.com", "Dan", teams=("billing",))
        await add_agent(client, "eve@example.com", "Eve", role="supervisor", teams=("billing",))
        await Customer(client, "telegram", "710002").say("talk to a human")
        conversation = await queued_conversation(client)  # the support team's queue
        path = f"/console/api/conversations/{conversation['id']}"
        async with signed_in(client, "dan@example.com") as dan:
            assert (await dan.http.get(path)).status_code == 403
            for action, body in (("claim", {}), ("reply", {"text": "hi"}), ("notes", {"text": "x"}),
                                 ("resolve", {}), ("transfer", {"team": "billing"})):
                assert (await dan.post(f"{path}/{action}", body)).status_code == 403, action
            assert (await dan.http.get("/console/api/conversations")).json()["queue"] == []
        async with signed_in(client, "eve@example.com") as eve:  # a supervisor sees every team's
            assert (await eve.http.get(path)).status_code == 200


async def test_a_note_never_reaches_the_provider(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "fay@example.com", "Fay")
        customer = Customer(client, "telegram", "710003")
        await customer.say("talk to a human")
        await customer.replies(2)  # "a colleague will answer", and the place in the queue
        conversation = await queued_conversation(client)
        path = f"/console/api/conversations/{conversation['id']}"
        async with signed_in(client, "fay@example.com") as fay:
            assert (await fay.post(f"{path}/claim")).status_code == 200
            assert (await fay.post(f"{path}/notes", {"text": "VIP, be nice"})).status_code == 200
            sent = await client.replies("telegram", customer.user, after=customer.seen, wait=1.0)
            assert not [m for m in sent if "VIP" in (m["text"] or "")], sent  # notices may come; never the note
            history = (await fay.http.get(path)).json()["history"]
            assert [e["text"] for e in history if e["direction"] == "note"] == ["VIP, be nice"]
            assert (await fay.post(f"{path}/reply", {"text": "Hello!"})).status_code == 200
            replies = await client.replies("telegram", customer.user, after=customer.seen, wait=10.0)
            assert [m["text"] for m in replies if m["text"] == "Hello!"] == ["Hello!"], replies
            everything = await client.replies("telegram", customer.user)
            assert not [m for m in everything if "VIP" in (m["text"] or "")]


async def test_the_hub_without_the_console_cookie_gets_no_console_data(hub: HubFactory) -> None:
    """The API key does not open the console: the console has its own sessions."""
    async with small_hub(hub, admin_token="s3cret-admin-token") as client:
        headers = {"Authorization": "Bearer s3cret-admin-token"}
        assert (await client.http.get("/console/api/conversations", headers=headers)).status_code == 401
