"""/metrics tells, per sink, what the feed delivered, retried and dead-lettered and how far behind it
is — read from Redis at scrape time, so a process that delivers nothing tells the same figures."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bot.api.metrics import FeedCollector
from bot.crm.subscriptions import Subscriptions, new_secret
from bot.redis_server import free_port
from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory
from tests.crm.receiver import Receiver, receiving
from tests.crm.test_feed import subscribe
from tests.pipeline.customer import Customer, small_hub

NAMES = ("omnihub_events_delivered_total", "omnihub_events_retried_total", "omnihub_events_dead_total",
         "omnihub_events_lag", "omnihub_events_oldest_pending_seconds")
Figures = dict[str, dict[str, float]]  # sink -> metric name -> value


async def scrape(client: SandboxClient) -> Figures:
    answer = await client.http.get("/metrics")
    assert answer.status_code == 200, answer.text
    figures: Figures = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name in NAMES:
                figures.setdefault(sample.labels["sink"], {})[sample.name] = sample.value
    return figures


async def test_each_sink_has_its_figures_and_every_process_tells_the_same(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, crm__retry_schedule_seconds=[0, 60]) as client, \
            receiving(Receiver(new_secret())) as ok, receiving(Receiver(new_secret(), status=503)) as failing, \
            small_hub(hub, run_workers=False, crm__bitrix24__webhook_url="https://portal.example/rest/1/abc/") as api:
        good = await subscribe(client, ok, ["omnihub.message.received"])
        bad = await subscribe(client, failing, ["omnihub.contact.created"])
        await Customer(client, "telegram", "730001").say("one")
        await Customer(client, "telegram", "730002").say("two")
        await ok.until(2)
        deadline = time.monotonic() + 15
        while (figures := await scrape(client)).get(f"wh:{bad}", {}).get("omnihub_events_retried_total") != 2:
            assert time.monotonic() < deadline, figures
            await asyncio.sleep(0.1)
        while (figures := await scrape(client))[f"wh:{good}"]["omnihub_events_delivered_total"] < 2:
            assert time.monotonic() < deadline, figures  # the acknowledgements of what `ok` got are batched
            await asyncio.sleep(0.1)

        assert figures[f"wh:{good}"] == {
            "omnihub_events_delivered_total": 2, "omnihub_events_retried_total": 0, "omnihub_events_dead_total": 0,
            "omnihub_events_lag": 0, "omnihub_events_oldest_pending_seconds": 0}
        failing_now = figures[f"wh:{bad}"]
        assert (failing_now["omnihub_events_delivered_total"], failing_now["omnihub_events_dead_total"]) == (0, 0)
        assert failing_now["omnihub_events_lag"] == 2  # two contacts created, each waiting a minute for its retry
        assert failing_now["omnihub_events_oldest_pending_seconds"] > 0.1
        assert len(failing.attempts) == 2

        elsewhere = await scrape(api)  # an API-only process with a Bitrix24 portal configured
        assert elsewhere[f"wh:{good}"] == figures[f"wh:{good}"]
        assert elsewhere[f"wh:{bad}"]["omnihub_events_retried_total"] == 2
        assert elsewhere["crm:bitrix24"]["omnihub_events_delivered_total"] == 0

        assert (await client.http.delete(f"/api/v1/webhooks/{good}")).status_code == 204
        assert set(await scrape(client)) == {f"wh:{bad}", "stats:campaigns"}  # the deleted one's series go


async def test_a_scrape_that_cannot_read_redis_shows_no_feed_figures_rather_than_stale_ones(redis: Redis) -> None:
    await Subscriptions(redis, 2).create("http://127.0.0.1:9/hook", None, ["*"])
    collector = FeedCollector()
    await collector.refresh(redis, 2, Subscriptions(redis, 2), [])
    assert [len(family.samples) for family in collector.collect()] == [1] * len(NAMES)

    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        await collector.refresh(down, 2, Subscriptions(down, 2), [])
    finally:
        await down.aclose()
    assert [len(family.samples) for family in collector.collect()] == [0] * len(NAMES)
