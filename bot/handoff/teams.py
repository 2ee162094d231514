"""Teams: from `handoff.teams` in the configuration, and from `omnihub teams add` (kept in Redis).

A team stored in Redis wins over the configuration's team of the same name, so an operator can
change a team's hours or timeouts without a deploy. Stored as the same `TeamSettings` JSON the
configuration validates, so both sources obey the same rules.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from redis.asyncio import Redis

from bot.context import keys
from bot.settings import HandoffSettings, TeamSettings

log = logging.getLogger(__name__)


class TeamError(Exception):
    """A team definition refused; the message names the field."""


class Teams:
    def __init__(self, redis: Redis, settings: HandoffSettings) -> None:
        self.redis = redis
        self.settings = settings

    async def all(self) -> dict[str, TeamSettings]:
        """Every team by name: the configuration's, overridden by Redis's."""
        stored = await self.redis.hgetall(keys.TEAMS)
        teams = dict(self.settings.teams)
        for name, raw in stored.items():
            try:
                teams[str(name)] = TeamSettings.model_validate_json(raw)
            except ValidationError as exc:  # stored by an older version, say: the rest still route
                log.error("team %s in Redis is unreadable, using the configuration's: %s", name, exc)
        return teams

    async def get(self, name: str) -> TeamSettings | None:
        raw = await self.redis.hget(keys.TEAMS, name)
        if raw is not None:
            return TeamSettings.model_validate_json(raw)
        return self.settings.teams.get(name)

    async def stored_names(self) -> list[str]:
        """The teams kept in Redis (the rest come from the configuration)."""
        return [str(name) for name in await self.redis.hkeys(keys.TEAMS)]

    async def add(self, name: str, team: TeamSettings) -> None:
        """Store (or replace) a team."""
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise TeamError(f"team name {name!r}: use letters, digits, - and _ (at most 64)")
        await self.redis.hset(keys.TEAMS, name, team.model_dump_json())


def team_of(raw: dict[str, object]) -> TeamSettings:
    """A team from loose fields (the CLI's options); TeamError names the bad one."""
    try:
        return TeamSettings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise TeamError(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from None
