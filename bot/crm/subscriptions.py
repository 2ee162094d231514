"""Webhook subscriptions: where the feed goes, with which secret, for which event types.

One Redis hash, `omni:wh` (id -> JSON), read by every delivery process each second, so a
subscription added through the API or the CLI starts receiving within a second everywhere, and one
the receiver killed (410) stops everywhere. A new subscription gets the events from its creation on:
its consumer groups are created at the streams' ends (`$`) right away, on every partition, so nothing
emitted after the 201 is missed even if no delivery process has seen it yet.

Secrets are Standard Webhooks' `whsec_<base64>`. The API shows a secret when it creates one (a
receiver cannot verify with a secret it was never shown) and never again. Rotation keeps the
previous secret for `ROTATION_SECONDS`: deliveries carry a signature with each, so a receiver can
switch over at its own pace.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from typing import Literal

import httpx
import orjson
from pydantic import BaseModel, Field, ValidationError, field_validator
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.context import keys
from bot.crm.events import EVENT_TYPES
from bot.settings import WebhookConfig

ROTATION_SECONDS = 24 * 3600
SECRET_PREFIX = "whsec_"


class BadSubscription(ValueError):
    """A subscription that cannot be saved (the message says why)."""


def check_secret(secret: str) -> bytes:
    """The key a `whsec_<base64>` secret stands for; raises BadSubscription."""
    if not secret.startswith(SECRET_PREFIX):
        raise BadSubscription(f"a secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise BadSubscription("a secret is whsec_ followed by base64") from None
    if not 16 <= len(key) <= 64:
        raise BadSubscription("a secret's key is 16 to 64 bytes (24 is usual)")
    return key


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def check_types(types: list[str]) -> list[str]:
    unknown = [t for t in types if t != "*" and t not in EVENT_TYPES and not t.endswith(".*")]
    if unknown:
        raise BadSubscription(f"unknown event types {unknown}; see docs/events.md (or \"*\" for all)")
    return types


class Subscription(BaseModel):
    id: str
    url: str
    secret: str
    events: list[str] = Field(default_factory=lambda: ["*"])
    status: Literal["active", "disabled"] = "active"
    created_at: float
    disabled_reason: str | None = None
    previous_secret: str | None = None  # still signed with, until `rotated_at` + ROTATION_SECONDS
    rotated_at: float | None = None
    description: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("a webhook URL starts with http:// or https://")
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if not host:
            raise ValueError("a webhook URL needs a host")
        return url

    @property
    def sink_name(self) -> str:
        return f"wh:{self.id}"

    def wants(self, event_type: str) -> bool:
        return any(t == "*" or t == event_type or (t.endswith(".*") and event_type.startswith(t[:-1]))
                   for t in self.events)

    def keys(self, now: float) -> list[bytes]:
        """The signing keys: the secret, and the previous one while a rotation is under way."""
        found = [check_secret(self.secret)]
        if self.previous_secret and self.rotated_at and now - self.rotated_at < ROTATION_SECONDS:
            found.append(check_secret(self.previous_secret))
        return found


class Subscriptions:
    def __init__(self, redis: Redis, partitions: int) -> None:
        self.redis = redis
        self.partitions = partitions

    async def create(self, url: str, secret: str | None, events: list[str], description: str | None = None,
                     subscription_id: str | None = None) -> Subscription:
        secret = secret or new_secret()
        check_secret(secret)
        try:
            sub = Subscription(id=subscription_id or "wh_" + secrets.token_hex(8), url=url, secret=secret,
                               events=check_types(events), created_at=time.time(), description=description)
        except ValidationError as exc:
            raise BadSubscription(exc.errors()[0]["msg"]) from None
        await self._start_groups(sub)
        await self._save(sub)
        return sub

    async def all(self) -> list[Subscription]:
        raw = await self.redis.hgetall(keys.WEBHOOKS)
        return sorted((Subscription.model_validate_json(v) for v in raw.values()), key=lambda s: s.created_at)

    async def get(self, subscription_id: str) -> Subscription | None:
        raw = await self.redis.hget(keys.WEBHOOKS, subscription_id)
        return Subscription.model_validate_json(raw) if raw else None

    async def disable(self, subscription_id: str, reason: str) -> Subscription | None:
        """Stop delivering; what was not delivered stays in the feed (a replay can send it later)."""
        sub = await self.get(subscription_id)
        if sub is None or sub.status == "disabled":
            return sub
        sub = sub.model_copy(update={"status": "disabled", "disabled_reason": reason})
        await self._save(sub)
        return sub

    async def enable(self, subscription_id: str) -> Subscription | None:
        """Deliver again, from now on (the groups start at the streams' ends; replay fills the gap)."""
        sub = await self.get(subscription_id)
        if sub is None or sub.status == "active":
            return sub
        for p in range(self.partitions):
            await self.redis.xgroup_destroy(keys.events(p), sub.sink_name)
        await self._start_groups(sub)
        sub = sub.model_copy(update={"status": "active", "disabled_reason": None})
        await self._save(sub)
        return sub

    async def rotate(self, subscription_id: str, secret: str | None = None) -> Subscription | None:
        sub = await self.get(subscription_id)
        if sub is None:
            return None
        secret = secret or new_secret()
        check_secret(secret)
        sub = sub.model_copy(update={"secret": secret, "previous_secret": sub.secret, "rotated_at": time.time()})
        await self._save(sub)
        return sub

    async def delete(self, subscription_id: str) -> bool:
        if not await self.redis.hdel(keys.WEBHOOKS, subscription_id):
            return False
        for p in range(self.partitions):
            await self.redis.xgroup_destroy(keys.events(p), f"wh:{subscription_id}")
        return True

    async def configure(self, declared: list[WebhookConfig]) -> None:
        """Make the configuration file's subscriptions exist (ids derived from the URL: a restart with
        the same file changes nothing; an edited secret or filter is saved)."""
        for config in declared:
            sub_id = "wh_cfg_" + hashlib.sha256(config.url.encode()).hexdigest()[:12]
            secret = config.secret.get_secret_value()
            found = await self.get(sub_id)
            if found is None:
                await self.create(config.url, secret, config.events, "from the configuration file", sub_id)
            elif (found.secret, found.events) != (secret, config.events):
                check_secret(secret)
                await self._save(found.model_copy(update={"secret": secret, "events": check_types(config.events)}))

    async def _start_groups(self, sub: Subscription) -> None:
        for p in range(self.partitions):
            try:
                await self.redis.xgroup_create(keys.events(p), sub.sink_name, id="$", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _save(self, sub: Subscription) -> None:
        await self.redis.hset(keys.WEBHOOKS, sub.id, orjson.dumps(sub.model_dump()))
