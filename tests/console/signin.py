"""Agents for the console tests: created through the agents API, signed in as a browser would be."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bot.sandbox.client import SandboxClient

PASSWORD = "correct horse battery"


async def add_agent(client: SandboxClient, email: str, name: str, role: str = "agent",
                    teams: tuple[str, ...] = ("support",)) -> str:
    """Create an agent through `POST /api/v1/agents` (the contract); its id."""
    response = await client.http.post("/api/v1/agents", json={
        "email": email, "name": name, "password": PASSWORD, "role": role, "teams": list(teams)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@dataclass
class ConsoleAgent:
    """A signed-in console session: its cookie in `http`'s jar, and its CSRF token."""

    http: httpx.AsyncClient
    csrf: str

    @property
    def cookie(self) -> str:
        return f"omnihub_console={self.http.cookies['omnihub_console']}"

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(path, json=body or {}, headers={"X-CSRF-Token": self.csrf})


def live_url(client: SandboxClient) -> str:
    return str(client.http.base_url).replace("http://", "ws://").rstrip("/") + "/console/live"


def origin(client: SandboxClient) -> str:
    return str(client.http.base_url).rstrip("/")


@contextlib.asynccontextmanager
async def signed_in(client: SandboxClient, email: str, password: str = PASSWORD) -> AsyncIterator[ConsoleAgent]:
    """Signed in with the console's socket open, as a browser tab is: the agent is online (the router
    takes back the conversations of agents who are not, and gives them new ones)."""
    async with httpx.AsyncClient(base_url=client.http.base_url, timeout=30) as http:
        response = await http.post("/console/login", data={"email": email, "password": password})
        assert response.status_code == 303, response.text
        me = (await http.get("/console/api/me")).json()
        agent = ConsoleAgent(http, me["csrf"])
        async with connect(live_url(client), additional_headers={"Cookie": agent.cookie, "Origin": origin(client)}):
            yield agent


async def queued_conversation(client: SandboxClient, wait: float = 10.0) -> dict[str, Any]:
    """The one conversation waiting in the queue, once the worker has queued it."""
    deadline = asyncio.get_running_loop().time() + wait
    while not (items := (await client.http.get("/api/v1/conversations", params={"mode": "queued"})).json()["items"]):
        assert asyncio.get_running_loop().time() < deadline, "nothing was queued"
        await asyncio.sleep(0.05)
    [conversation] = items
    return dict(conversation)
