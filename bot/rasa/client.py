"""The two calls Omnihub makes to a Rasa server, and what "Rasa did not answer" means.

`/model/parse` classifies a text (nlu mode); the REST channel `/webhooks/rest/webhook` runs a whole
turn of Rasa's dialogue (dialogue mode). Every failure — refused, timed out, a 5xx, an answer that is
not Rasa's shape — is one `RasaUnavailable` with a reason, and the caller answers without Rasa. After
a refusal or a timeout the client pauses for `pause_seconds`: a Rasa that hangs would otherwise hold
every turn of a partition for a whole timeout. Each turn Rasa did not answer is counted in Redis, so
`/metrics` of any process shows the fallbacks of all of them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from redis.asyncio import Redis

from bot.context import keys
from bot.redis_server import REDIS_FAILURES
from bot.settings import RasaSettings

log = logging.getLogger(__name__)
Reason = Literal["timeout", "down", "error", "paused"]


class RasaUnavailable(Exception):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"Rasa {reason}{': ' + detail if detail else ''}")
        self.reason: Reason = reason


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ParsedIntent(_Loose):
    name: str | None = None
    confidence: float = 0.0


class ParsedEntity(_Loose):
    entity: str
    value: Any


class Parse(_Loose):
    """Rasa's `/model/parse` answer, as much of it as we read."""

    intent: ParsedIntent | None = None
    entities: list[ParsedEntity] = Field(default_factory=list)


class RestButton(_Loose):
    title: str
    payload: str


class RestMessage(_Loose):
    """One bot message of the REST channel's answer (Rasa's `CollectingOutputChannel`)."""

    recipient_id: str | None = None
    text: str | None = None
    buttons: list[RestButton] = Field(default_factory=list)
    quick_replies: list[RestButton] = Field(default_factory=list)
    image: str | None = None
    attachment: Any = None
    custom: Any = None


_REST_ANSWER = TypeAdapter(list[RestMessage])


class RasaClient:
    def __init__(self, url: str, redis: Redis, mode: str, parse_timeout: float, dialogue_timeout: float,
                 pause_seconds: float) -> None:
        self.url = url.rstrip("/")
        self.mode = mode
        self._redis = redis
        self._parse_timeout, self._dialogue_timeout = parse_timeout, dialogue_timeout
        self._pause_seconds = pause_seconds
        self._paused_until = 0.0
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    @classmethod
    def of(cls, settings: RasaSettings, redis: Redis) -> RasaClient:
        assert settings.url is not None
        return cls(settings.url, redis, settings.mode, settings.parse_timeout_seconds,
                   settings.dialogue_timeout_seconds, settings.pause_seconds)

    async def parse(self, text: str) -> Parse:
        answer = await self._post("/model/parse", {"text": text}, self._parse_timeout)
        try:
            return Parse.model_validate(answer)
        except ValidationError as exc:
            raise await self.failed("error", f"/model/parse answered {str(answer)[:200]}") from exc

    async def talk(self, sender: str, message: str, metadata: dict[str, Any]) -> list[RestMessage]:
        body = {"sender": sender, "message": message, "metadata": metadata}
        answer = await self._post("/webhooks/rest/webhook", body, self._dialogue_timeout)
        try:
            return _REST_ANSWER.validate_python(answer)
        except ValidationError as exc:
            raise await self.failed("error", f"the REST channel answered {str(answer)[:200]}") from exc

    def state(self) -> str:
        """For /readyz: "answering", or why the built-in engine answers instead for now."""
        if time.monotonic() < self._paused_until:
            left = self._paused_until - time.monotonic()
            return f"paused after a failure, the built-in engine answers for {left:.1f} s"
        return "answering"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any], seconds: float) -> Any:
        if time.monotonic() < self._paused_until:
            raise await self.failed("paused")
        try:
            response = await self._http.post(f"{self.url}{path}", json=body, timeout=seconds)
        except httpx.TimeoutException as exc:
            raise await self.failed("timeout", f"no answer from {path} in {seconds} s", pause=True) from exc
        except httpx.TransportError as exc:
            raise await self.failed("down", f"{path}: {exc!r}", pause=True) from exc
        if response.status_code != 200:
            raise await self.failed("error", f"{path} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise await self.failed("error", f"{path} answered something that is not JSON") from exc

    async def failed(self, reason: Reason, detail: str = "", pause: bool = False) -> RasaUnavailable:
        """Count a turn Rasa did not answer (and maybe pause); the error to raise, for the caller."""
        if pause:
            self._paused_until = time.monotonic() + self._pause_seconds
        if reason != "paused":
            log.warning("Rasa did not answer, the built-in engine does (%s): %s", reason, detail)
        with contextlib.suppress(*REDIS_FAILURES):  # the count must not fail the turn it counts
            await self._redis.hincrby(keys.RASA_FALLBACKS, f"{self.mode}:{reason}", 1)
        return RasaUnavailable(reason, detail)
