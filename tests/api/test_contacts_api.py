"""The profile API as a CRM uses it: find, read, update, tags, preferred channel, and bad input."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from bot.api.deps import API_KEYS
from tests.api.chat import Api, Customer, eventually, small_hub
from tests.conftest import HubFactory


async def test_bad_input_gets_a_clear_4xx(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api = Api(client)
        await Customer(client, "telegram", "540001").say("hi")
        cid = (await api.one(channel="telegram", user_id="540001"))["id"]

        assert "not a phone number" in (await api.call("GET", "/contacts", 422, params={"phone": "call me"}))["detail"]
        detail = (await api.call("GET", "/contacts", 422, params={"channel": "icq", "user_id": "1"}))["detail"]
        assert detail.startswith("query.channel: Input should be 'telegram', 'whatsapp', 'viber' or 'sms'")
        await api.call("GET", "/contacts", 422, params={"channel": "sms", "user_id": "not-a-number"})
        await api.call("GET", "/contacts", 400)
        await api.call("GET", "/contacts", 422, params={"tag": "no spaces please"})
        for method, path in (("GET", ""), ("GET", "/history"), ("GET", "/export"), ("DELETE", "")):
            assert (await api.call(method, f"/contacts/nobody{path}", 404))["detail"] == "no contact 'nobody'"
        await api.call("PATCH", "/contacts/nobody", 404, json={"name": "X"})
        await api.call("PATCH", f"/contacts/{cid}", 422, json={"preferred_channel": "icq"})
        await api.call("PATCH", f"/contacts/{cid}", 422, json={"nickname": "X"})
        await api.call("PATCH", f"/contacts/{cid}", 422, json={"add_tags": ["a"], "remove_tags": ["a"]})
        assert "with itself" in (await api.call("POST", f"/contacts/{cid}/merge", 422, json={"other_id": cid}))[
            "detail"]
        await api.call("POST", f"/contacts/{cid}/merge", 404, json={"other_id": "nobody"})
        await api.call("POST", f"/contacts/{cid}/merge", 422, json={})
        await api.call("POST", f"/contacts/{cid}/unmerge", 404, json={"absorbed_id": "nobody"})
        assert (await api.find(phone="+79990009999")) == []
        assert (await api.find(channel="viber", user_id="nobody")) == []


async def test_a_crm_pushes_attributes_tags_and_a_preferred_channel(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api, whatsapp = Api(client), Customer(client, "whatsapp", "+79990004411")
        await whatsapp.say("hi")
        await whatsapp.hears()
        cid = (await api.one(phone="+79990004411"))["id"]
        assert (await api.call("GET", f"/contacts/{cid}"))["preferred_channel"] == "whatsapp"  # learned

        patched = await api.call("PATCH", f"/contacts/{cid}", json={
            "name": "Vera", "language": "ru", "preferred_channel": "viber", "attributes": {"city": "Omsk"},
            "add_tags": ["vip", "b2b"]})
        assert (patched["name"], patched["language"], patched["attributes"], patched["tags"]) == (
            "Vera", "ru", {"city": "Omsk"}, ["b2b", "vip"])
        assert (patched["preferred_channel"], patched["preferred_channel_set"]) == ("viber", True)

        await whatsapp.say("привет")
        await whatsapp.hears()
        assert (await api.call("GET", f"/contacts/{cid}"))["preferred_channel"] == "viber"  # set beats learned
        cleared = await api.call("PUT", f"/contacts/{cid}", json={
            "preferred_channel": None, "attributes": {"city": None, "size": "L"}, "remove_tags": ["b2b"]})
        assert (cleared["preferred_channel"], cleared["preferred_channel_set"]) == ("whatsapp", False)
        assert (cleared["attributes"], cleared["tags"], cleared["name"]) == ({"size": "L"}, ["vip"], "Vera")


async def test_find_by_tag_pages_through_the_tag_index(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api, ids = Api(client), set()
        for n in range(12):
            await Customer(client, "viber", f"viber-tag-{n}").say("hi")
            cid = (await api.one(channel="viber", user_id=f"viber-tag-{n}"))["id"]
            tag = "spring-sale" if n % 2 else "other"
            await api.call("PATCH", f"/contacts/{cid}", json={"add_tags": [tag]})
            if tag == "spring-sale":
                ids.add(cid)
        found, cursor = set(), 0
        while True:
            page = await api.call("GET", "/contacts", params={"tag": "spring-sale", "cursor": cursor, "limit": 2})
            found |= {c["id"] for c in page["items"]}
            if not (cursor := page["next_cursor"]):
                break
        assert found == ids
        assert (await api.call("GET", "/contacts", params={"tag": "nobody-has-it"}))["items"] == []


async def test_unmerge_is_for_the_admin_and_gives_the_identities_back(hub: HubFactory, redis: Redis) -> None:
    await redis.hset(API_KEYS, hashlib.sha256(b"crm-key").hexdigest(), "crm")
    async with small_hub(hub, admin_token="admin-secret") as client:
        admin, crm = Api(client, "admin-secret"), Api(client, "crm-key")
        await Customer(client, "telegram", "540002").say("hi")
        await Customer(client, "viber", "viber-540003").say("hi")
        tg = (await eventually(lambda: crm.find(channel="telegram", user_id="540002"), bool))[0]["id"]
        vb = (await eventually(lambda: crm.find(channel="viber", user_id="viber-540003"), bool))[0]["id"]

        merged = await crm.call("POST", f"/contacts/{tg}/merge", json={"other_id": vb})
        assert {i["channel"] for i in merged["contact"]["identities"]} == {"telegram", "viber"}
        assert merged["absorbed_id"] == vb and merged["event_id"]
        await crm.call("POST", f"/contacts/{tg}/merge", 404, json={"other_id": vb})  # merged already
        assert (await crm.find(channel="viber", user_id="viber-540003"))[0]["id"] == tg

        await crm.call("POST", f"/contacts/{tg}/unmerge", 403, json={"absorbed_id": vb})
        undone = await admin.call("POST", f"/contacts/{tg}/unmerge", json={"absorbed_id": vb})
        assert [i["channel"] for i in undone["survivor"]["identities"]] == ["telegram"]
        assert [i["channel"] for i in undone["restored"]["identities"]] == ["viber"]
        assert (await crm.find(channel="viber", user_id="viber-540003"))[0]["id"] == vb
        await admin.call("POST", f"/contacts/{tg}/unmerge", 409, json={"absorbed_id": vb})
        assert (await client.http.get("/openapi.json")).json()["paths"].keys() >= {
            "/api/v1/contacts/{contact_id}/merge", "/api/v1/contacts/{contact_id}/unmerge",
            "/api/v1/contacts/{contact_id}/export"}
