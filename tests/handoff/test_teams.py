"""Teams from the configuration and from Redis: Redis wins for a name, an unreadable one is skipped."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.handoff.teams import TeamError, Teams
from bot.settings import HandoffSettings, TeamSettings, load_settings


async def test_redis_wins_over_the_configuration(redis: Redis) -> None:
    configured = load_settings({}, handoff__teams={"support": {"queue_timeout_seconds": 60},
                                                   "vip": {"on_timeout": "escalate"}}).handoff
    teams = Teams(redis, configured)
    await teams.add("support", TeamSettings(queue_timeout_seconds=30))
    await teams.add("night-shift", TeamSettings(languages=["ru"]))
    everything = await teams.all()
    assert sorted(everything) == ["night-shift", "support", "vip"]
    assert everything["support"].queue_timeout_seconds == 30 and everything["vip"].on_timeout == "escalate"
    assert (await teams.get("support")) == everything["support"] and await teams.get("nobody") is None
    assert sorted(await teams.stored_names()) == ["night-shift", "support"]
    with pytest.raises(TeamError, match="team name"):
        await teams.add("no spaces", TeamSettings())


async def test_an_unreadable_stored_team_does_not_stop_the_others(redis: Redis, caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    teams = Teams(redis, HandoffSettings())
    await redis.hset(keys.TEAMS, mapping={"support": '{"retired_field": 1}', "vip": TeamSettings().model_dump_json()})
    everything = await teams.all()
    assert sorted(everything) == ["support", "vip"]
    assert everything["support"] == HandoffSettings().teams["support"]  # the configuration's, meanwhile
    assert "team support in Redis is unreadable" in caplog.text
