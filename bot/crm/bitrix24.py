"""Bitrix24 as a CRM sink, through an inbound webhook: `https://<portal>/rest/<user>/<code>/<method>.json`.

What each event becomes (docs/bitrix24.md has the field table): `contact.created` / `updated` update
the Bitrix24 contact found by our mapping or else by phone (`crm.duplicate.findbycomm`), and add one
(`crm.contact.add`) only when none is found — a second hub run or a second event for the phone never
makes a duplicate; `consent.changed` is one `batch` (the consent field, a timeline comment saying
why); `conversation.handoff_requested` a lead (`crm.lead.add`); `conversation.resolved` a timeline
comment with the transcript (see `transcript`); `contact.erased` forgets the mapping and deletes
nothing in Bitrix24 (deals, invoices and legal retention there are the portal owner's to decide).

Redis keys (rows for bot.context.keys; `{cid}` is the contact's hash tag, so they share its slot):

| omni:b24:{<cid>}                | hash   | Bitrix24 contact: `id`, `fm` (its phones/IMs, JSON), `consent` (JSON) |
| omni:b24:{<cid>}:ev:<event id>  | string | the lead / comment an event created, TTL 7 days (idempotency)        |
| omni:rl:bitrix24:<portal host>  | hash   | the portal's shared request bucket (bot.pipeline.ratelimit)          |

Idempotency: `deliver` may run again for an event. Contacts are safe by construction (found, never
re-added). A lead or comment is remembered per event *after* Bitrix24 answered; a crash between that
answer and the SET (a few ms) would create it again on the retry — the one remaining window.

Limits: Bitrix24 counts every HTTP request of a portal in a leaky bucket (2/s drain, 50 before it
answers 503 QUERY_LIMIT_EXCEEDED; Enterprise 5/s, 250). Every process takes a token from one Redis
bucket before each request; a QUERY_LIMIT_EXCEEDED (someone else spends the portal's budget too)
empties that bucket for `limit_pause` seconds for every process, and the delivery is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from redis.asyncio import Redis

from bot.context.history import HistoryEntry
from bot.context.store import ContextStore
from bot.crm import events
from bot.crm.events import EVENT_TYPES, CloudEvent, ContactData, Identity
from bot.crm.sinks import Reject, Retry
from bot.redis_server import REDIS_FAILURES

if TYPE_CHECKING:
    from bot.pipeline.ratelimit import Bucket, RateLimiter

log = logging.getLogger(__name__)

NAME = "crm:bitrix24"
BUCKET_CHANNEL = "bitrix24"  # the "channel" of the portal's bucket: omni:rl:bitrix24:<portal host>
ORIGINATOR = "omnihub"  # ORIGINATOR_ID on what we create: the portal can tell our records apart
EVENT_MEMORY_SECONDS = 7 * 24 * 3600  # as long as the feed keeps an event for a replay
WANTED = frozenset(m.type for m in (events.ContactCreated, events.ContactUpdated, events.ConsentChanged,
                                    events.HandoffRequested, events.ConversationResolved, events.ContactErased))
_IM_TYPES = {"telegram": "TELEGRAM", "viber": "VIBER"}  # Bitrix24 has no WhatsApp IM type: it is a PHONE
_AUTH_ERRORS = frozenset({"NO_AUTH_FOUND", "INVALID_CREDENTIALS", "expired_token", "invalid_token",
                          "insufficient_scope", "ACCESS_DENIED", "user_access_error", "ERROR_METHOD_NOT_FOUND"})
_NOT_FOUND_ERRORS = frozenset({"NOT_FOUND", "OWNER_NOT_FOUND"})
_PAGE = 100
Params = dict[str, Any]


class Bitrix24Settings(BaseModel):
    """`crm.bitrix24` in the YAML; the webhook URL from `BITRIX24_WEBHOOK_URL` (it holds the secret)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True  # with a webhook_url: on (false keeps the URL configured and the adapter off)
    webhook_url: SecretStr | None = None  # https://portal.bitrix24.ru/rest/1/abc123/
    rate: float = Field(2.0, gt=0)  # requests per second, the portal's drain rate
    burst: int = Field(50, ge=1)  # the portal's threshold
    timeout: float = Field(15.0, gt=0)
    limit_pause: float = Field(5.0, gt=0)  # every process holds back this long after QUERY_LIMIT_EXCEEDED
    max_wait: float = Field(10.0, ge=0)  # a delivery waits this long for the bucket, then is retried later
    lead_source_id: str = "OMNIHUB"  # SOURCE_ID of leads and new contacts (a source made in the CRM settings)
    consent_field: str = "UF_CRM_OMNIHUB_CONSENT"  # a string custom field of contacts; "" sends none
    language_field: str = "UF_CRM_OMNIHUB_LANG"  # idem, the contact's language code

    @field_validator("webhook_url")
    @classmethod
    def _webhook_shape(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None:
            return None
        parts = urlsplit(url.get_secret_value())
        path = [p for p in parts.path.split("/") if p]
        if parts.scheme not in ("https", "http") or not parts.netloc or len(path) != 3 or path[0] != "rest":
            raise ValueError("crm.bitrix24.webhook_url (BITRIX24_WEBHOOK_URL) must look like "
                             "https://<portal>/rest/<user id>/<code>/")
        return SecretStr(f"{parts.scheme}://{parts.netloc}/rest/{path[1]}/{path[2]}/")

    @property
    def active(self) -> bool:
        return self.enabled and self.webhook_url is not None

    def endpoint(self) -> str:
        if self.webhook_url is None:
            raise ValueError("crm.bitrix24 has no webhook_url: set BITRIX24_WEBHOOK_URL")
        return self.webhook_url.get_secret_value()

    def portal(self) -> str:
        """The portal's host: names its bucket and appears in logs, which must never show the code."""
        return urlsplit(self.endpoint()).netloc


class Bitrix24Refusal(Reject):
    """Bitrix24 refused this payload (a 400, or a batch command's error): permanent unless `not_found`."""

    def __init__(self, method: str, error: str, description: str) -> None:
        super().__init__(f"Bitrix24 {method}: {error or 'error'}: {description}")
        self.error, self.description = error, description

    @property
    def not_found(self) -> bool:
        """The record we addressed is gone (deleted in the portal)."""
        return self.error in _NOT_FOUND_ERRORS or "not found" in self.description.lower()


class Bitrix24Client:
    """The webhook's HTTP calls, paced by the shared bucket, with Bitrix24's errors turned into the
    sink protocol's `Retry` / `Reject`."""

    def __init__(self, redis: Redis, settings: Bitrix24Settings, http: httpx.AsyncClient | None = None) -> None:
        # imported here: bot.settings is to import Bitrix24Settings from this module, and
        # bot.pipeline.ratelimit imports bot.settings — at module level that would be a cycle
        from bot.pipeline.ratelimit import RateLimiter
        from bot.settings import Rate, RateLimits

        self.settings, self._endpoint, self._portal = settings, settings.endpoint(), settings.portal()
        self._http, self._own_http = http or httpx.AsyncClient(timeout=settings.timeout), http is None
        limits = RateLimits(per_sender={BUCKET_CHANNEL: Rate(per_second=settings.rate, burst=settings.burst)},
                            per_chat={})
        self._limiter: RateLimiter = RateLimiter(redis, limits, {BUCKET_CHANNEL: self._portal})
        self._bucket: Bucket = self._limiter.buckets(BUCKET_CHANNEL, "")[0]

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def call(self, method: str, params: Params) -> Any:
        return (await self._post(method, params))["result"]

    async def batch(self, commands: Mapping[str, tuple[str, Params]]) -> dict[str, Any]:
        """Several calls in one request (one token); the first command that failed raises."""
        cmd = {name: f"{method}?{php_query(params)}" for name, (method, params) in commands.items()}
        outcome = (await self._post("batch", {"halt": 0, "cmd": cmd}))["result"]
        errors = outcome.get("result_error") or {}
        for name, (method, _) in commands.items():
            if name in errors:
                error = errors[name]
                raise self._refusal(method, 400, error.get("error", ""), error.get("error_description", ""))
        results = outcome.get("result") or {}
        return dict(results) if isinstance(results, dict) else {}

    async def _post(self, method: str, params: Params) -> dict[str, Any]:
        await self._governed()
        try:
            response = await self._http.post(f"{self._endpoint}{method}.json", json=params,
                                             timeout=self.settings.timeout)
        except httpx.TimeoutException:
            raise Retry(f"Bitrix24 {method}: no answer from {self._portal} in {self.settings.timeout:g} s") from None
        except httpx.HTTPError as exc:  # the message names the OS error, never the URL (it holds the code)
            raise Retry(f"Bitrix24 {method}: {type(exc).__name__}: {exc}") from None
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise Retry(f"Bitrix24 {method}: HTTP {response.status_code} without a JSON object (not a REST endpoint?)")
        error = str(body.get("error") or "")
        if response.status_code == 200 and not error and "result" in body:
            return body
        description = str(body.get("error_description") or "")
        if error == "QUERY_LIMIT_EXCEEDED":
            pause = _retry_after(response) or self.settings.limit_pause
            await self._limiter.pause_sender(BUCKET_CHANNEL, pause)
            log.warning("Bitrix24 %s: QUERY_LIMIT_EXCEEDED; every process holds back %.1f s", self._portal, pause)
            raise Retry(f"Bitrix24 {method}: QUERY_LIMIT_EXCEEDED", after=pause)
        raise self._refusal(method, response.status_code, error, description, _retry_after(response))

    def _refusal(self, method: str, status: int, error: str, description: str,
                 after: float | None = None) -> Exception:
        """The exception for an error answer: a config error or a passing failure is a Retry."""
        if status in (401, 403, 404) or error in _AUTH_ERRORS or description.lower().startswith("access denied"):
            log.error("Bitrix24 %s refused %s (HTTP %s %s: %s): check crm.bitrix24.webhook_url "
                      "(BITRIX24_WEBHOOK_URL), the webhook's crm scope and its user's CRM rights",
                      self._portal, method, status, error, description)
            return Retry(f"Bitrix24 {method}: {error or status}: the webhook is refused", after=after)
        if status == 429 or status >= 500:
            return Retry(f"Bitrix24 {method}: HTTP {status} {error}: {description}", after=after)
        return Bitrix24Refusal(method, error, description)

    async def _governed(self) -> None:
        """Take the portal's token, waiting up to `max_wait`; past that the delivery is retried later.
        Redis down: the request goes, and Bitrix24's own 503 stays the backstop."""
        waited = 0.0
        while True:
            try:
                delay = await self._limiter.take(self._bucket)
            except REDIS_FAILURES as exc:
                log.warning("Bitrix24 bucket not checked (%s); sending", exc)
                return
            if delay <= 0:
                return
            if waited + delay > self.settings.max_wait:
                raise Retry(f"Bitrix24 {self._portal}: request budget spent", after=delay)
            await asyncio.sleep(delay + random.uniform(0, 0.01))
            waited += delay


@dataclass(frozen=True)
class Multifield:
    """One PHONE or IM value of a Bitrix24 contact."""

    type_id: str
    value_type: str
    value: str

    @property
    def key(self) -> str:
        """What makes two values one: phones compare by digits, as findbycomm does."""
        if self.type_id == "PHONE":
            return "PHONE:" + "".join(c for c in self.value if c.isdigit())
        return f"{self.type_id}:{self.value_type}:{self.value}"


@dataclass
class B24Contact:
    """Our memory of one Bitrix24 contact (`omni:b24:{cid}`)."""

    id: int
    held: set[str] = field(default_factory=set)  # Multifield keys the contact holds
    consent: dict[str, dict[str, str]] = field(default_factory=dict)


class Bitrix24Sink:
    """The `Sink` for Bitrix24 (bot.crm.sinks): one instance per process, its bucket shared in Redis."""

    name = NAME

    def __init__(self, redis: Redis, store: ContextStore, settings: Bitrix24Settings,
                 http: httpx.AsyncClient | None = None) -> None:
        self.redis, self.store, self.settings = redis, store, settings
        self.client = Bitrix24Client(redis, settings, http)

    async def aclose(self) -> None:
        await self.client.aclose()

    def wants(self, event_type: str) -> bool:
        return event_type in WANTED

    async def deliver(self, event: CloudEvent) -> None:
        model = EVENT_TYPES.get(event.type)
        if model is None or event.type not in WANTED:
            raise Reject(f"{NAME} does not take {event.type}")
        try:
            data = model.model_validate(event.data)
        except ValidationError as exc:
            raise Reject(f"{event.type} {event.id}: bad data: {exc.errors()[0]['msg']}") from None
        if isinstance(data, events.ContactCreated | events.ContactUpdated):
            await self._sync(data.contact)
        elif isinstance(data, events.ContactErased):
            for cid in (data.contact_id, *data.absorbed):  # each key alone: they sit in different slots
                await self.redis.delete(mapping_key(cid))
            log.info("Bitrix24: forgot contact %s (erased); its Bitrix24 record stays", data.contact_id)
        elif isinstance(data, events.HandoffRequested):
            await self._once(event, data.contact_id, lambda b24: self._lead(b24, data))
        elif isinstance(data, events.ConversationResolved):
            await self._once(event, data.contact_id, lambda b24: self._transcript(b24, data, event.time))
        elif isinstance(data, events.ConsentChanged):
            await self._once(event, data.contact_id, lambda b24: self._consent(b24, data))

    async def _sync(self, contact: ContactData) -> B24Contact:
        """Find or create the contact in Bitrix24 and bring it up to date; remembers the mapping."""
        known = await self._recall(contact.id)
        if known is None:
            found = await self._find(contact.phone)
            if found is None:
                return await self._add(contact)
            known = B24Contact(found, await self._held(found))
        known.consent = _consent_of(contact)
        fresh = [m for m in multifields(contact) if m.key not in known.held]
        fields = {**self._fields(contact.name, contact.language, known.consent), **_multifield_fields(fresh)}
        try:
            if fields:
                await self.client.call("crm.contact.update", {"id": known.id, "fields": fields})
        except Bitrix24Refusal as refusal:
            if not refusal.not_found:
                raise
            log.warning("Bitrix24 contact %s of %s is gone from the portal: adding it again", known.id, contact.id)
            return await self._add(contact)
        known.held |= {m.key for m in fresh}
        await self._remember(contact.id, known)
        return known

    async def _add(self, contact: ContactData) -> B24Contact:
        values = multifields(contact)
        fields = {**self._fields(contact.name, contact.language, contact.consent), **_multifield_fields(values),
                  "SOURCE_ID": self.settings.lead_source_id, "ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": contact.id}
        created = B24Contact(int(await self.client.call("crm.contact.add", {"fields": fields})),
                            {m.key for m in values}, _consent_of(contact))
        await self._remember(contact.id, created)
        return created

    async def _find(self, phone: str | None) -> int | None:
        """The oldest Bitrix24 contact with this phone (a portal may hold duplicates already)."""
        if not phone:
            return None
        found = await self.client.call("crm.duplicate.findbycomm",
                                       {"entity_type": "CONTACT", "type": "PHONE", "values": [phone]})
        ids = found.get("CONTACT") if isinstance(found, dict) else None  # nothing found is `[]`
        return min(int(i) for i in ids) if ids else None

    async def _held(self, b24_id: int) -> set[str]:
        """The phones and IMs a contact we did not create (or forgot) holds, so none is added twice."""
        record = await self.client.call("crm.contact.get", {"id": b24_id})
        return {Multifield(kind, str(v.get("VALUE_TYPE", "")), str(v.get("VALUE", ""))).key
                for kind in ("PHONE", "IM") for v in record.get(kind) or []}

    def _fields(self, name: str | None, language: str | None, consent: Mapping[str, Mapping[str, str]]) -> Params:
        fields: Params = {"NAME": name} if name else {}
        if self.settings.language_field and language:
            fields[self.settings.language_field] = language
        if self.settings.consent_field and consent:
            fields[self.settings.consent_field] = consent_text(consent)
        return fields

    async def _contact_of(self, cid: str) -> B24Contact | None:
        """The Bitrix24 contact of one of ours, found or created from our profile; None if we have none."""
        known = await self._recall(cid)
        if known is not None:
            return known
        snapshot = await self.store.load(cid)
        if not snapshot.profile:
            return None
        identities = [Identity.model_validate(i) for i in snapshot.identities]
        profile = snapshot.profile
        return await self._sync(ContactData(id=cid, name=profile.get("name"), phone=profile.get("phone"),
                                            language=profile.get("lang"), identities=identities))

    async def _recall(self, cid: str) -> B24Contact | None:
        stored = await self.redis.hgetall(mapping_key(cid))
        if "id" not in stored:
            return None
        held, consent = set(orjson.loads(stored.get("fm", "[]"))), orjson.loads(stored.get("consent", "{}"))
        return B24Contact(int(stored["id"]), held, consent)

    async def _remember(self, cid: str, known: B24Contact) -> None:
        await self.redis.hset(mapping_key(cid), mapping={
            "id": str(known.id), "fm": orjson.dumps(sorted(known.held)), "consent": orjson.dumps(known.consent)})

    async def _once(self, event: CloudEvent, cid: str, make: Callable[[B24Contact], Awaitable[int]]) -> None:
        """Run `make(contact)` once per event: its result id is remembered after Bitrix24 answered."""
        done = f"{mapping_key(cid)}:ev:{event.id}"
        if await self.redis.exists(done):
            return
        contact = await self._contact_of(cid)
        if contact is None:
            log.info("Bitrix24: %s %s skipped: contact %s is not (any more) in the hub", event.type, event.id, cid)
            return
        try:
            created = await make(contact)
        except Bitrix24Refusal as refusal:
            if not refusal.not_found:
                raise
            await self.redis.delete(mapping_key(cid))
            raise Retry(f"Bitrix24 contact {contact.id} is gone from the portal; it will be found or added again",
                        after=0) from None
        await self.redis.set(done, str(created), ex=EVENT_MEMORY_SECONDS)

    async def _lead(self, contact: B24Contact, data: events.HandoffRequested) -> int:
        channel = data.channel or "unknown channel"
        title = f"Omnihub: {channel} conversation handed to people" + (f" — {data.reason}" if data.reason else "")
        comments = "\n".join(f"{label}: {value}" for label, value in (
            ("Conversation", data.conversation_id), ("Channel", data.channel), ("Team", data.team),
            ("Reason", data.reason)) if value)
        fields = {"TITLE": title, "CONTACT_ID": contact.id, "SOURCE_ID": self.settings.lead_source_id,
                  "SOURCE_DESCRIPTION": f"Omnihub, {channel}", "COMMENTS": comments,
                  "ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": data.conversation_id}
        return int(await self.client.call("crm.lead.add", {"fields": fields}))

    async def _transcript(self, contact: B24Contact, data: events.ConversationResolved, resolved_at: str) -> int:
        entries: list[HistoryEntry] = []
        while True:  # the capped list, page by page, oldest first
            total, page = await self.store.history(data.contact_id, len(entries), _PAGE)
            entries += page
            if not page or len(entries) >= total:
                break
        until = datetime.fromisoformat(resolved_at).timestamp()
        lines = transcript(entries, data.conversation_id, until) or ["(no messages kept)"]
        head = f"Omnihub conversation {data.conversation_id}" + (f" ({data.channel})" if data.channel else "")
        comment = f"{head}, resolved by agent {data.agent_id}. Times UTC.\n" + "\n".join(lines)
        fields = {"ENTITY_ID": contact.id, "ENTITY_TYPE": "contact", "COMMENT": comment}
        return int(await self.client.call("crm.timeline.comment.add", {"fields": fields}))

    async def _consent(self, contact: B24Contact, data: events.ConsentChanged) -> int:
        contact.consent.setdefault(data.channel, {})[data.purpose] = data.state
        note = (f"Omnihub: consent for {data.purpose} messages on {data.channel} is now {data.state} "
                f"(source: {data.source})")
        commands: dict[str, tuple[str, Params]] = {}
        if self.settings.consent_field:
            commands["contact"] = ("crm.contact.update", {
                "id": contact.id, "fields": {self.settings.consent_field: consent_text(contact.consent)}})
        commands["note"] = ("crm.timeline.comment.add",
                            {"fields": {"ENTITY_ID": contact.id, "ENTITY_TYPE": "contact", "COMMENT": note}})
        results = await self.client.batch(commands)
        await self._remember(data.contact_id, contact)
        return int(results["note"])


def mapping_key(cid: str) -> str:
    return f"omni:b24:{{{cid}}}"


def multifields(contact: ContactData) -> list[Multifield]:
    """The contact's phones (its own, its WhatsApp/SMS identities) and messenger ids, each once."""
    phones = [contact.phone] if contact.phone else []
    phones += [i.id for i in contact.identities if i.channel in ("whatsapp", "sms")]
    values = [Multifield("PHONE", "MOBILE", p) for p in phones]
    values += [Multifield("IM", _IM_TYPES[i.channel], i.id) for i in contact.identities if i.channel in _IM_TYPES]
    seen: dict[str, Multifield] = {}
    return [seen.setdefault(v.key, v) for v in values if v.key not in seen]


def _consent_of(contact: ContactData) -> dict[str, dict[str, str]]:
    return {channel: dict(purposes) for channel, purposes in contact.consent.items()}


def _multifield_fields(values: list[Multifield]) -> Params:
    """PHONE / IM arrays as crm.contact.add/update take them: a value without ID is added."""
    fields: Params = {}
    for value in values:
        fields.setdefault(value.type_id, []).append({"VALUE": value.value, "VALUE_TYPE": value.value_type})
    return fields


def consent_text(consent: Mapping[str, Mapping[str, str]]) -> str:
    """One line a person reads in the CRM: `sms marketing: out; telegram service: in`."""
    return "; ".join(f"{channel} {purpose}: {state}" for channel in sorted(consent)
                     for purpose, state in sorted(consent[channel].items()))


def transcript(entries: list[HistoryEntry], conversation_id: str, until: float) -> list[str]:
    """The lines of one conversation: "YYYY-MM-DD HH:MM:SS · who: text", notes left out.

    A conversation id is `<contact id>-<entry id>` and its first entry id a stream id `<ms>-<seq>`,
    so the conversation is what the history holds from that moment (an entry's `at` is when it was
    processed, never before its stream entry) up to `until`, the moment it was resolved. An entry
    processed after a newer message arrived (a slow reply to the previous conversation) may fall in.
    """
    ms = conversation_id.partition("-")[2].partition("-")[0]
    since = int(ms) / 1000 if ms.isdigit() else 0.0
    lines = []
    for entry in entries:
        if entry.direction == "note" or not since <= entry.at <= until:
            continue
        who = f"agent {entry.agent_id}" if entry.author == "agent" and entry.agent_id else entry.author
        text = entry.text or (f"[button {entry.payload}]" if entry.payload else "") or _media(entry)
        moment = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{moment} · {who}: {text}")
    return lines


def _media(entry: HistoryEntry) -> str:
    where = entry.location and f"[location {entry.location.latitude},{entry.location.longitude}]"
    phone = entry.contact_phone and f"[phone {entry.contact_phone}]"
    return " ".join(f"[{a.type} {a.url or a.name or '-'}]" for a in entry.attachments) or where or phone or "[empty]"


def php_query(params: Mapping[str, Any]) -> str:
    """Parameters as one `batch` command carries them: PHP's http_build_query (`fields[PHONE][0][VALUE]=…`)."""
    pairs: list[tuple[str, str]] = []

    def walk(name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{name}[{key}]", item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(f"{name}[{index}]", item)
        else:
            pairs.append((name, "" if value is None else str(value)))

    for key, value in params.items():
        walk(key, value)
    return urlencode(pairs)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
