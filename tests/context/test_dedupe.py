"""Provider retries on a real Redis: dropped for as long as the provider retries, noted on the contact
for an erase, and keys written before the names were digested still count."""

from __future__ import annotations

import time

from bot.context import keys
from bot.models import EventKind, InboundEvent
from bot.pipeline.commands import SendText
from bot.pipeline.ingest import RETRY_SECONDS
from tests.context.conftest import DEDUPE_TTL, PARTITIONS, Parts


def message(channel: str, user: str, provider_id: str) -> InboundEvent:
    return InboundEvent(kind=EventKind.message, channel=channel, user_id=user, provider_id=provider_id, text="hi")


async def stream_length(parts: Parts) -> int:
    return sum([await parts.redis.xlen(keys.inbound(p)) for p in range(PARTITIONS)])


async def test_a_retry_is_dropped_and_each_key_lives_as_long_as_its_provider_retries(parts: Parts) -> None:
    events = [message("telegram", "1", "100"), message("sms", "+79990000001", "SM1"),
              message("viber", "v-1", "555"), message("whatsapp", "+79990000002", "SM2")]
    assert await parts.ingest(events) == 4
    assert await parts.ingest(events) == 0  # the providers' retries
    assert await stream_length(parts) == 4
    for event in events:
        cid = await parts.identities.lookup(event.channel, event.user_id)
        assert cid is not None
        key = keys.dedupe(keys.partition_of(cid, PARTITIONS), event.dedupe_key)
        assert RETRY_SECONDS[event.channel] - 5 < await parts.redis.ttl(key) <= RETRY_SECONDS[event.channel]
        [(noted, expiry)] = await parts.redis.zrange(keys.deduped(cid), 0, -1, withscores=True)
        assert noted == key and expiry == int(expiry) and abs(expiry - time.time() - RETRY_SECONDS[event.channel]) < 5


async def test_the_note_expires_with_its_last_key_and_drops_expired_ones(parts: Parts) -> None:
    await parts.ingest([message("telegram", "2", "200")])
    cid = await parts.identities.lookup("telegram", "2")
    assert cid is not None
    note = keys.deduped(cid)
    await parts.ingest([message("telegram", "2", "201")])
    assert len(await parts.redis.zrange(note, 0, -1)) == 2
    assert RETRY_SECONDS["telegram"] - 5 < await parts.redis.ttl(note) <= RETRY_SECONDS["telegram"] + 1
    # as older versions noted them: fractional expiry; one gone, one for two more days
    later = time.time() + 2 * 86_400 + 0.25
    await parts.redis.zadd(note, {"omni:dd:{p0}:gone": time.time() - 10, "omni:dd:{p0}:later": later})
    await parts.ingest([message("sms", "+79990000002", "SM2")])
    assert await parts.redis.zscore(note, "omni:dd:{p0}:gone") is not None  # another contact's: untouched
    await parts.ingest([message("telegram", "2", "202")])
    assert await parts.redis.zscore(note, "omni:dd:{p0}:gone") is None
    assert len(await parts.redis.zrange(note, 0, -1)) == 4
    assert abs(await parts.redis.ttl(note) - (later - time.time())) < 5


async def test_a_commands_id_is_remembered_for_the_dedupe_ttl(parts: Parts) -> None:
    await parts.ingest([message("telegram", "3", "300")])
    cid = await parts.identities.lookup("telegram", "3")
    assert cid is not None
    command = SendText(id="api-1", text="hello")
    assert await parts.ingest.command(command, cid)
    assert not await parts.ingest.command(command, cid)
    key = keys.dedupe(keys.partition_of(cid, PARTITIONS), "cmd:api-1")
    assert DEDUPE_TTL - 5 < await parts.redis.ttl(key) <= DEDUPE_TTL


async def test_a_key_named_as_before_the_digest_still_drops_the_retry(parts: Parts) -> None:
    await parts.ingest([message("telegram", "4", "400")])
    cid = await parts.identities.lookup("telegram", "4")
    assert cid is not None
    p = keys.partition_of(cid, PARTITIONS)
    event = message("telegram", "4", "401")
    await parts.redis.set(keys.dedupe_legacy(p, event.dedupe_key), "1", ex=60)  # accepted by an older version
    assert await parts.ingest([event]) == 0
    assert await stream_length(parts) == 1


async def test_an_erase_deletes_the_dedupe_keys_of_the_contact(parts: Parts) -> None:
    await parts.ingest([message("whatsapp", "+79990000005", "SM5"), message("telegram", "5", "500")])
    cid = await parts.identities.lookup("whatsapp", "+79990000005")
    assert cid is not None
    await parts.contact(cid, {"i:whatsapp:+79990000005": "1", "phone": "+79990000005"})
    await parts.privacy.erase(cid)
    left = [key async for key in parts.redis.scan_iter(match="omni:dd:*")]
    other = await parts.identities.lookup("telegram", "5")
    assert other is not None
    assert left == [keys.dedupe(keys.partition_of(other, PARTITIONS), "telegram:message:500")]
