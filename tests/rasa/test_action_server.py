"""`POST /rasa/webhook`, Omnihub as Rasa's action server, fed the request bodies a real Rasa sent
(`tests/payloads/rasa/`): the token, the built-in actions, rejections, unknown actions, forwarding."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.api.rasa import SANDBOX_TOKEN, action_token
from bot.context import keys
from bot.hub import Hub
from bot.redis_server import free_port
from bot.settings import RasaSettings, load_settings
from tests.conftest import HubFactory, serving
from tests.pipeline.customer import Customer, small_hub
from tests.rasa.fake_rasa import recorded

TOKEN = "rasa-test-token"
URL = f"/rasa/webhook?token={TOKEN}"


def call(name: str, recording: str = "action_request_handoff.json", **slots: Any) -> dict[str, Any]:
    """A recorded action request for `name`, with only these slots set."""
    body = copy.deepcopy(recorded(recording))
    body["next_action"] = name
    body["tracker"]["slots"] = {**dict.fromkeys(body["tracker"]["slots"]), **slots}
    return dict(body)


async def test_the_token_is_required_and_checked(hub: HubFactory) -> None:
    async with small_hub(hub, rasa__token=TOKEN) as client:
        missing = await client.http.post("/rasa/webhook", json=call("action_handoff"))
        assert missing.status_code == 401 and "token" in missing.json()["detail"]
        assert (await client.http.post("/rasa/webhook?token=guess", json=call("action_handoff"))).status_code == 403
        assert (await client.http.post(f"/rasa/webhook?token={SANDBOX_TOKEN}", json=call("action_handoff"))
                ).status_code == 403  # a configured token replaces the sandbox's
        assert (await client.http.post(URL, json=call("action_handoff"))).status_code == 200
    async with small_hub(hub) as client:  # sandbox channels, no token configured: scripts/rasa-env's dev token
        assert (await client.http.post(f"/rasa/webhook?token={SANDBOX_TOKEN}", json=call("action_handoff"))
                ).status_code == 200
        assert (await client.http.post(URL, json=call("action_handoff"))).status_code == 403


async def test_action_handoff_answers_with_the_handoff_and_refuses_an_unknown_team(hub: HubFactory) -> None:
    async with small_hub(hub, rasa__token=TOKEN) as client:
        answer = await client.http.post(URL, json=call("action_handoff", handoff_team="support",
                                                       handoff_reason="wants a refund"))
        assert answer.status_code == 200
        assert answer.json()["responses"] == [
            {"custom": {"omnihub": {"handoff": {"team": "support", "reason": "wants a refund"}}}}]
        refused = await client.http.post(URL, json=call("action_handoff", handoff_team="astrology"))
        assert refused.status_code == 400
        assert refused.json() == {"error": "Custom action 'action_handoff' rejected execution: no team 'astrology'",
                                  "action_name": "action_handoff"}


async def test_action_set_contact_attribute_needs_both_slots_and_a_good_name(hub: HubFactory) -> None:
    async with small_hub(hub, rasa__token=TOKEN) as client:
        missing = await client.http.post(URL, json=call("action_set_contact_attribute", attribute_name="diet"))
        assert missing.status_code == 400 and "attribute_value" in missing.json()["error"]
        bad = await client.http.post(URL, json=call("action_set_contact_attribute", attribute_name="my diet",
                                                    attribute_value="vegan"))
        assert bad.status_code == 400 and "'my diet'" in bad.json()["error"]
        good = await client.http.post(URL, json=call("action_set_contact_attribute", attribute_name="diet",
                                                     attribute_value="vegan"))
        assert good.status_code == 200
        assert good.json()["responses"] == [{"custom": {"omnihub": {"set_attributes": {"diet": "vegan"}}}}]


async def test_action_crm_lookup_fills_the_declared_slots_from_the_profile(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, rasa__token=TOKEN) as client:
        kim = Customer(client, "telegram", "730001")
        await kim.say("hello", name="Kim", language="en")
        await kim.replies(1)
        cid = await kim.contact_id()
        patched = await client.http.patch(f"/api/v1/contacts/{cid}", json={"attributes": {"tier": "gold"}})
        assert patched.status_code == 200
        conversation = await redis.hget(keys.conversation(cid), "id")

        body = call("action_crm_lookup", "action_request_crm_lookup.json")
        body["sender_id"] = conversation
        body["domain"]["slots"]["tier"] = {"type": "text", "mappings": [{"type": "custom"}]}
        answer = await client.http.post(URL, json=body)
        assert answer.status_code == 200
        slots = {e["name"]: e["value"] for e in answer.json()["events"] if e["event"] == "slot"}
        assert slots["contact_name"] == "Kim" and slots["contact_language"] == "en"
        assert slots["contact_attributes"] == {"tier": "gold"} and slots["tier"] == "gold"
        assert set(slots) <= set(body["domain"]["slots"])

        body["sender_id"] = "nobody-1-0"
        assert (await client.http.post(URL, json=body)).status_code == 400


@contextlib.asynccontextmanager
async def teams_action_server(answer: tuple[int, dict[str, Any]]) -> AsyncIterator[tuple[str, list[Any]]]:
    """The team's own rasa-sdk server, at the wire: records what it is sent, answers as told."""
    got: list[Any] = []

    async def webhook(request: Request) -> JSONResponse:
        got.append(await request.json())
        return JSONResponse(answer[1], answer[0])

    port = free_port()
    config = uvicorn.Config(Starlette(routes=[Route("/webhook", webhook, methods=["POST"])]), host="127.0.0.1",
                            port=port, log_level="warning", lifespan="off")
    async with serving(uvicorn.Server(config)):
        yield f"http://127.0.0.1:{port}/webhook", got


async def test_other_actions_go_to_the_teams_own_action_server_or_are_unknown(hub: HubFactory) -> None:
    body = call("action_check_order", "action_request_custom_action.json")
    async with small_hub(hub, rasa__token=TOKEN) as client:
        unknown = await client.http.post(URL, json=body)
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "No registered action found for name 'action_check_order'.",
                                  "action_name": "action_check_order"}
    said = {"events": [{"event": "slot", "name": "order_state", "value": "packing"}],
            "responses": [{"text": "Packing it now."}]}
    async with teams_action_server((200, said)) as (url, got), small_hub(hub, rasa__token=TOKEN,
                                                                        rasa__actions_url=url) as client:
        forwarded = await client.http.post(URL, json=body)
        assert (forwarded.status_code, forwarded.json()) == (200, said)
        assert got == [body]
    async with teams_action_server((400, {"error": "no", "action_name": "action_check_order"})) as (url, _), \
            small_hub(hub, rasa__token=TOKEN, rasa__actions_url=url) as client:
        assert (await client.http.post(URL, json=body)).status_code == 400  # its rejection, passed on
    async with small_hub(hub, rasa__token=TOKEN, rasa__actions_url=f"http://127.0.0.1:{free_port()}/webhook") as client:
        down = await client.http.post(URL, json=body)
        assert down.status_code == 502 and "did not answer" in down.json()["error"]


async def test_a_body_that_is_not_an_action_call_is_a_clear_422(hub: HubFactory) -> None:
    async with small_hub(hub, rasa__token=TOKEN) as client:
        for body, where in ((b"{", "body"), (b'{"sender_id": "x"}', "next_action"), (b"[]", "body")):
            answer = await client.http.post(URL, content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 422 and where in answer.json()["detail"], answer.text


def test_outside_the_sandbox_the_action_server_is_off_until_a_token_is_set() -> None:
    live = load_settings({}, telegram__bot_token="123456:live-token")
    assert action_token(Hub(live, Redis())) is None
    assert action_token(Hub(live.model_copy(update={"rasa": RasaSettings(token=TOKEN)}), Redis())) == TOKEN
    assert action_token(Hub(load_settings({}), Redis())) == SANDBOX_TOKEN
