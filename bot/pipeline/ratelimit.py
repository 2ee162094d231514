"""Provider send limits as token buckets in Redis, shared by every worker that sends for one bot or number.

One bucket is one key (a hash: tokens `t`, refill time `ts` in ms), changed by one script, so each
call is atomic and touches one hash slot (Redis Cluster). The script reads the server's clock, so
workers whose clocks differ still share one timeline. It never queues: it takes a token, or answers
how many milliseconds to wait before one is there, and the caller waits and asks again.

- **floor**: a bulk send takes a token only while the bucket holds more than `floor` (a share of the
  burst, `bulk_reserve`), so campaign traffic never spends what a live reply would need.
- **pause**: a provider that says "the whole sender is throttled, retry after N s" empties the bucket
  and moves its refill time N s ahead: every worker waits, not only the one that was told.

Why not the `limits` library: it offers windows rather than a bucket, answers allowed or not without
the time to wait, has no floor and no pause, and builds its own Redis connection from a URL instead of
using the hub's client (plain or cluster).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.context import keys
from bot.pipeline.streams import pause
from bot.redis_server import REDIS_FAILURES
from bot.settings import Rate, RateLimits, Settings

log = logging.getLogger(__name__)

# KEYS[1] the bucket; ARGV rate per second, burst, floor, pause in ms (0: take a token).
# Returns 0 when a token was taken, else the milliseconds until one may be.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local floor, pause = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, ts = tonumber(state[1]) or burst, tonumber(state[2]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
local wait = 0
if pause > 0 then
  tokens, ts = 0, math.max(ts, now + pause)
  wait = ts - now
elseif ts > now then
  wait = ts - now
elseif tokens >= floor + 1 then
  tokens = tokens - 1
else
  wait = math.ceil((floor + 1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + (ts - now) + 1000)
return wait
"""


@dataclass(frozen=True)
class Bucket:
    key: str
    rate: Rate


class RateLimiter:
    """The buckets of the paced channels: one per sender and, where the provider has one, one per chat.

    `senders` names each paced channel's sender (bot id, from-number); channels missing from it are
    not paced. A limiter that cannot reach Redis lets the send go: the provider's own 429 stays the
    backstop, and a Redis blip must not turn a rate limit into an outage.

    The waiters of one process for one bucket queue on a local lock, so one of them at a time asks
    Redis: 400 messages waiting for a 30/s bot cost one script call per token, not 400 (they all woke
    at once and asked). Live and bulk queue apart, so a campaign waiting for tokens above the reserve
    never holds a live reply behind it.
    """

    def __init__(self, redis: Redis, limits: RateLimits, senders: dict[str, str]) -> None:
        self.limits, self.senders = limits, senders
        self._take = redis.register_script(_TAKE)
        self._queues: dict[tuple[str, bool], asyncio.Lock] = {}

    def buckets(self, channel: str, chat: str) -> list[Bucket]:
        """Chat first: a token taken there while the sender's bucket makes us wait is the chat's own loss."""
        sender = self.senders.get(channel)
        if sender is None:
            return []
        found = []
        if rate := self.limits.per_chat.get(channel):
            found.append(Bucket(keys.rate_bucket(channel, sender, chat), rate))
        if rate := self.limits.per_sender.get(channel):
            found.append(Bucket(keys.rate_bucket(channel, sender), rate))
        return found

    async def take(self, bucket: Bucket, bulk: bool = False) -> float:
        """Take a token now (0.0) or say how many seconds until one may be."""
        floor = self.limits.bulk_reserve * bucket.rate.burst if bulk else 0
        wait = await self._take(keys=[bucket.key], args=[bucket.rate.per_second, bucket.rate.burst, floor, 0])
        return int(wait) / 1000

    async def wait(self, channel: str, chat: str, halt: asyncio.Event, bulk: bool = False) -> bool:
        """Wait until the chat and its sender may take one more message; False if `halt` came first."""
        for bucket in self.buckets(channel, chat):
            async with self._queue(bucket.key, bulk):
                while not halt.is_set():
                    try:
                        delay = await self.take(bucket, bulk)
                    except REDIS_FAILURES as exc:
                        log.warning("rate limit %s not checked (%s); sending", bucket.key, exc)
                        delay = 0.0
                    if delay <= 0:
                        break
                    await pause(halt, delay + random.uniform(0, 0.01))
        return not halt.is_set()

    def _queue(self, key: str, bulk: bool) -> asyncio.Lock:
        lock = self._queues.get((key, bulk))
        if lock is None:
            if len(self._queues) > 10_000:  # per-chat buckets come and go: forget the idle ones
                self._queues = {k: q for k, q in self._queues.items() if q.locked()}
            lock = self._queues[(key, bulk)] = asyncio.Lock()
        return lock

    async def pause_sender(self, channel: str, seconds: float) -> bool:
        """The provider throttled the whole sender: every worker holds its sends for `seconds`.
        False when the channel's sender is not paced (then only the refused contact waits)."""
        sender, rate = self.senders.get(channel), self.limits.per_sender.get(channel)
        if sender is None or rate is None:
            return False
        try:
            await self._take(keys=[keys.rate_bucket(channel, sender)], args=[rate.per_second, rate.burst, 0,
                                                                        max(1, int(seconds * 1000))])
        except REDIS_FAILURES as exc:
            log.warning("could not pause %s sends (%s)", channel, exc)
            return False
        return True


def senders(settings: Settings, channels: Iterable[str], sandboxed: Collection[str]) -> dict[str, str]:
    """Who sends on each paced channel, as bucket keys name it: the bot's id (the public half of its
    token), the from-number, the Viber bot's name. Emulated channels only with `rate_limits.sandbox`."""
    token = settings.telegram.bot_token.get_secret_value() if settings.telegram.bot_token else ""
    names = {"telegram": token.partition(":")[0] or "sandbox", "sms": settings.twilio.sms_from,
             "whatsapp": settings.twilio.whatsapp_from, "viber": settings.viber.bot_name}
    pace_sandbox = settings.pipeline.rate_limits.sandbox
    return {c: name for c in channels if (pace_sandbox or c not in sandboxed) and (name := names.get(c))}
