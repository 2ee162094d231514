"""The consent ledger on a real Redis: the default rule, changes staged with a turn, the trail."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.context import keys
from bot.context.consent import Cause, allowed, consent_trail, field, record, refusal
from bot.context.identity import Identities
from bot.context.privacy import Privacy
from bot.context.store import CONSENT_TRAIL_CAP, Changes, ContextStore

CID = "c-consent"


def test_service_is_allowed_until_withdrawn_marketing_only_after_opt_in() -> None:
    assert allowed({}, "sms", "service")
    assert not allowed({}, "sms", "marketing")
    assert refusal({}, "sms", "marketing") == "no opt-in to marketing messages on sms"
    assert allowed({field("sms", "marketing"): "in"}, "sms", "marketing")
    assert not allowed({field("sms", "marketing"): "in"}, "viber", "marketing")  # per channel
    withdrawn = {field("sms", "service"): "out"}
    assert not allowed(withdrawn, "sms", "service")
    assert refusal(withdrawn, "sms", "service") == "sms consent for service messages was withdrawn"
    assert allowed(withdrawn, "whatsapp", "service")


async def test_a_change_lands_with_its_trail_row_in_the_turns_commit(redis: Redis) -> None:
    store = ContextStore(redis)
    changes = Changes(profile={"name": "Anna"})
    cause = Cause("keyword", 1_700_000_000.5, message_id="SM1", entry_id="1-0", detail="STOP")
    assert record(changes, {}, "sms", ("service", "marketing"), "out", cause)
    await store.commit(CID, changes)

    profile = await redis.hgetall(keys.contact(CID))
    assert profile == {"name": "Anna", "cs:sms:service": "out", "cs:sms:marketing": "out"}
    assert await consent_trail(redis, CID) == [
        {"channel": "sms", "purpose": purpose, "state": "out", "source": "keyword", "at": 1_700_000_000.5,
         "message_id": "SM1", "entry_id": "1-0", "detail": "STOP"}
        for purpose in ("service", "marketing")
    ]


async def test_a_state_that_already_holds_is_not_recorded_again(redis: Redis) -> None:
    profile = {field("viber", "service"): "out"}
    changes = Changes()
    cause = Cause("unsubscribed", 1.0)
    assert not record(changes, profile, "viber", ("service",), "out", cause)
    assert record(changes, profile, "viber", ("service", "marketing"), "out", cause)
    assert not record(changes, profile, "viber", ("marketing",), "out", cause)  # staged earlier in the turn
    assert changes.profile == {"cs:viber:marketing": "out"}
    assert [row["purpose"] for row in changes.consent] == ["marketing"]
    assert "message_id" not in changes.consent[0]  # optional parts are left out, not null


async def test_the_trail_is_capped_and_erased_with_the_contact(redis: Redis) -> None:
    store = ContextStore(redis)
    for n in range(CONSENT_TRAIL_CAP + 5):
        changes = Changes()
        record(changes, {}, "sms", ("marketing",), "in" if n % 2 else "out", Cause("api", float(n)))
        await store.commit(CID, changes)
    trail = await consent_trail(redis, CID)
    assert len(trail) == CONSENT_TRAIL_CAP
    assert trail[0]["at"] == 5.0 and trail[-1]["at"] == float(CONSENT_TRAIL_CAP + 4)  # oldest dropped first

    assert await Privacy(redis, Identities(redis, store, "RU"), 4).erase(CID)
    assert await consent_trail(redis, CID) == []
    assert not await redis.exists(keys.contact(CID))
