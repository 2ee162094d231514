"""Abilities only some connectors have are declared by the connector, and the hub goes by the
declarations (no channel names): which connectors poll, acknowledge callbacks and offer deep links."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.hub import Hub
from connectors.base import AcknowledgesCallbacks, DeepLinks, Polls
from tests.conftest import hub_settings
from tests.connectors.test_telegram import TOKEN, parse
from tests.connectors.test_telegram import make_connector as telegram
from tests.connectors.test_twilio import make_connector as twilio
from tests.connectors.test_viber import make_connector as viber


def test_each_connector_declares_what_it_can_do() -> None:
    assert all(isinstance(telegram(), ability) for ability in (DeepLinks, AcknowledgesCallbacks, Polls))
    for other in (twilio("sms"), twilio("whatsapp"), viber()):
        assert isinstance(other, DeepLinks)
        assert not isinstance(other, AcknowledgesCallbacks | Polls)


def test_only_a_button_press_awaits_acknowledgement() -> None:
    assert telegram().awaits_acknowledgement(parse("callback_query"))
    assert not telegram().awaits_acknowledgement(parse("text_message"))


async def test_the_hub_polls_only_real_accounts_it_cannot_be_reached_by(redis: Redis, redis_url: str) -> None:
    real = Hub(hub_settings(redis_url, telegram__bot_token=TOKEN), redis)
    assert list(real.pollers()) == ["telegram"]
    assert list(real.acknowledgers) == ["telegram"]
    reachable = Hub(hub_settings(redis_url, telegram__bot_token=TOKEN, telegram__webhook_secret="s3cret",
                                 public_url="https://hub.example"), redis)
    assert reachable.pollers() == {}
    sandboxed = Hub(hub_settings(redis_url), redis)
    assert sandboxed.pollers() == {}  # the emulator posts webhooks to us
    assert Hub(hub_settings(redis_url, telegram__bot_token=TOKEN), redis, run_api=False).pollers() == {}
