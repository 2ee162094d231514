"""The Redis key schema, in one place.

Every key of one contact carries the hash tag `{<contact id>}` so that, on Redis Cluster, a contact's
profile, conversation and history live in one slot and can change in one MULTI. Pipeline streams carry
the tag of their partition (`{p3}`), so a partition's inbound stream, outbound stream, event stream and
dedupe keys share a slot too. Identity and phone indexes are single keys of their own.

The segment indexes (bot.context.indexes, bot.campaigns.segments) — tags, channels, consent,
language, attributes, dates and conversion totals — all carry the one hash tag `{ix}`: a segment is
evaluated by SINTERSTORE / SUNIONSTORE / SDIFFSTORE / ZINTERSTORE across them, and on Redis Cluster
a multi-key command must stay in one slot. The price is a hot slot: every index write and every
evaluation lands on the one master that owns `{ix}` (roughly 15 small writes per turn that changes
the profile, and a few hundred bytes per contact there); shard by a prefix of the contact id when
one master is not enough.

| key                          | type   | what                                            |
|------------------------------|--------|-------------------------------------------------|
| omni:id:<channel>:<user id>  | string | channel identity -> contact id                  |
| omni:id:phone:<E.164>        | string | phone -> contact id (WhatsApp and SMS use this) |
| omni:{cid}:c                 | hash   | contact profile (see context.store)             |
| omni:{cid}:v                 | hash   | current conversation                            |
| omni:{cid}:h                 | list   | unified history, JSON entries, capped           |
| omni:phrases                 | hash   | digest -> the dialogs' fixed words (see phrases)|
| omni:{cid}:consent           | list   | consent changes, capped (see context.consent)   |
| omni:{cid}:dd                | zset   | this contact's dedupe keys, score = expiry (s)  |
| omni:{cid}:j                 | hash   | journal of a merge/fold/unmerge absorbing cid   |
| omni:{cid}:j:<c|v|h|...>     | *      | the journal's copy of cid's keys at its start   |
| omni:{cid}:applied           | hash   | journal ids already applied to cid (survivor)   |
| omni:journals                | zset   | contacts with a journal, score = start (sweeper)|
| omni:{ix}:tag:<tag>          | set    | contact ids carrying the tag (superset index)   |
| omni:{ix}:all                | set    | every contact with a profile (segment universe) |
| omni:{ix}:ch:<channel>       | set    | contacts with an identity on the channel        |
| omni:{ix}:cs:<ch>:<purpose>:<in|out> | set | contacts by consent state (bot.context.consent) |
| omni:{ix}:lang:<language>    | set    | contacts by language (lang_set, else lang)      |
| omni:{ix}:a:<name>=<value>   | set    | contacts by attribute value (first 100 chars)   |
| omni:{ix}:z:<seen|created|cv:last|cv:n|cv:sum> | zset | contacts by date / conversion total |
| omni:{ix}:tmp:<id>           | set    | a segment's evaluation, TTL (bot.campaigns.segments) |
| omni:segments                | hash   | saved segments, name -> JSON                    |
| omni:link:<code>             | string | link code -> "<cid>:<expiry>" or "used", TTL    |
| omni:lt:<channel>:<user id>  | string | wrong link codes of an identity, TTL            |
| omni:campaign:<id>           | string | a campaign: definition, status (bot.campaigns)  |
| omni:campaigns               | zset   | campaign ids by creation                        |
| omni:cmpdue:{p<n>}           | zset   | "<campaign>|<cid>|<step>|send/check" -> due time |
| omni:cmpstat:{<campaign>}    | hash   | a campaign's counters (bot.campaigns.stats)     |
| omni:cmpseen:{<campaign>}    | hash   | what was counted per recipient and step, once   |
| omni:cmpttr:{<campaign>}:<ch>| zset   | "<cid>|<step>" -> seconds from send to read     |
| omni:{cid}:cmp               | hash   | campaign id -> the contact's state in it (JSON) |
| omni:{cid}:ev                | list   | events of unfinished entries (bot.crm.outbox), TTL |
| omni:conv:<mode>             | zset   | contact ids by mode (superset), score = `ms`    |
| omni:in:{p<n>}               | stream | inbound events of partition n (live lane)       |
| omni:inb:{p<n>}              | stream | receipts and campaign steps (bulk inbound lane) |
| omni:out:{p<n>}              | stream | outbound messages of partition n (live lane)    |
| omni:bulk:{p<n>}             | stream | bulk (campaign) messages of partition n         |
| omni:dd:{p<n>}:<digest>      | string | provider-id dedupe, TTL (see `dedupe`)          |
| omni:{cid}:res:<command id>  | list   | a command's outcome for whoever waits, TTL 60 s |
| omni:att:{p<n>}              | hash   | failed attempts per inbound entry id            |
| omni:attb:{p<n>}             | hash   | the same for the bulk inbound lane              |
| omni:dead:{p<n>}             | stream | dead letters of partition n (entry + error)     |
| omni:ev:{p<n>}               | stream | the CRM feed of partition n (bot.crm.outbox)    |
| omni:evs:{p<n>}:<event id>   | string | an event appended by emit_once, TTL 7 days      |
| omni:wh                      | hash   | webhook subscriptions, id -> JSON (bot.crm)     |
| omni:wha:{p<n>}              | hash   | a delivery's failed attempts: "<sink> <entry>"  |
| omni:whdead:{p<n>}           | stream | events a sink gave up on (bot.crm.delivery)     |
| omni:whm:{p<n>}              | hash   | delivery counters per sink (delivered, retried...) |
| omni:lease:<n>               | string | which worker owns partition n, TTL              |
| omni:workers                 | zset   | live workers, score = lease expiry              |
| omni:rl:<ch>:<sender>[:<chat>] | hash | send rate token bucket (pipeline.ratelimit)     |
| omni:agent:{a<id>}           | hash   | an agent (bot.handoff.agents), password hashed  |
| omni:agent:{a<id>}:load      | zset   | contact ids the agent holds, score = since (ms) |
| omni:agent:email:<email>     | string | lower-cased email -> agent id (unique)          |
| omni:agents                  | set    | every agent id                                  |
| omni:agents:seen             | zset   | agent id -> last heartbeat (s); 0 = offline     |
| omni:teams                   | hash   | team name -> JSON settings (CLI; wins over yaml)|
| omni:sla                     | zset   | "first:<cid>" / "reply:<cid>" -> deadline (ms)  |
| omni:lease:router            | string | which process routes, TTL                       |
| omni:session:<sha256>        | hash   | a console session (bot.console.sessions), TTL   |
| omni:login:<sha256>          | string | failed console logins per email + address, TTL  |
| omni:rasa:fallbacks          | hash   | "<mode>:<reason>" -> turns Rasa did not answer  |
"""

from __future__ import annotations

import base64
import hashlib
import zlib

PHONE_CHANNELS = frozenset({"whatsapp", "sms"})
WORKERS = "omni:workers"
GROUP = "workers"
JOURNALS = "omni:journals"
PHRASES = "omni:phrases"
WEBHOOKS = "omni:wh"


def identity(channel: str, user_id: str) -> str:
    if channel in PHONE_CHANNELS:
        return phone(user_id)
    return f"omni:id:{channel}:{user_id}"


def phone(e164: str) -> str:
    return f"omni:id:phone:{e164}"


def contact(cid: str) -> str:
    return f"omni:{{{cid}}}:c"


def conversation(cid: str) -> str:
    return f"omni:{{{cid}}}:v"


def history(cid: str) -> str:
    return f"omni:{{{cid}}}:h"


def consent(cid: str) -> str:
    return f"omni:{{{cid}}}:consent"


def deduped(cid: str) -> str:
    return f"omni:{{{cid}}}:dd"


def journal(cid: str) -> str:
    return f"omni:{{{cid}}}:j"


def journal_copy(cid: str, part: str) -> str:
    return f"omni:{{{cid}}}:j:{part}"


def applied(cid: str) -> str:
    return f"omni:{{{cid}}}:applied"


INDEX = "omni:{ix}"  # the hash tag every segment index shares (see the module docstring)
EVERYONE = f"{INDEX}:all"
SAVED_SEGMENTS = "omni:segments"


def tag(name: str) -> str:
    return f"{INDEX}:tag:{name}"


def with_channel(channel: str) -> str:
    return f"{INDEX}:ch:{channel}"


def with_consent(channel: str, purpose: str, state: str) -> str:
    return f"{INDEX}:cs:{channel}:{purpose}:{state}"


def with_language(language: str) -> str:
    return f"{INDEX}:lang:{language}"


def with_attribute(name: str, value: str) -> str:
    return f"{INDEX}:a:{name}={value}"


def ranked(score: str) -> str:
    """A sorted set of contacts: `seen`, `created`, `cv:last`, `cv:n`, `cv:sum`."""
    return f"{INDEX}:z:{score}"


def segment_scratch(token: str) -> str:
    return f"{INDEX}:tmp:{token}"


def link_code(code: str) -> str:
    return f"omni:link:{code}"


def link_tries(channel: str, user_id: str) -> str:
    return f"omni:lt:{channel}:{user_id}"


def by_mode(mode: str) -> str:
    return f"omni:conv:{mode}"


def partition_of(cid: str, partitions: int) -> int:
    return zlib.crc32(cid.encode()) % partitions


def inbound(p: int) -> str:
    return f"omni:in:{{p{p}}}"


def inbound_bulk(p: int) -> str:
    return f"omni:inb:{{p{p}}}"


def outbound(p: int) -> str:
    return f"omni:out:{{p{p}}}"


def bulk(p: int) -> str:
    return f"omni:bulk:{{p{p}}}"


def dedupe(p: int, event_key: str) -> str:
    """The key that says `event_key` was accepted. Named by a 96-bit digest of the event key (16
    characters): a Twilio status key (`whatsapp:status:SM<32 hex>:undelivered`) would make the name 75
    characters, and the contact's note of it (`omni:{cid}:dd`) would then overflow Redis' 64-byte
    listpack member limit and cost ~150 B a member instead of ~40."""
    digest = base64.urlsafe_b64encode(hashlib.blake2b(event_key.encode(), digest_size=12).digest()).decode()
    return f"omni:dd:{{p{p}}}:{digest}"


def dedupe_legacy(p: int, event_key: str) -> str:
    """The name `dedupe` gave before it digested the event key: still looked at, so that a provider's
    retry of an event accepted just before an upgrade is dropped. Remove once every key of that form
    has expired (24 h after the upgrade)."""
    return f"omni:dd:{{p{p}}}:{event_key}"


def command_result(cid: str, command_id: str) -> str:
    return f"omni:{{{cid}}}:res:{command_id}"


def attempts(p: int) -> str:
    return f"omni:att:{{p{p}}}"


def bulk_attempts(p: int) -> str:
    return f"omni:attb:{{p{p}}}"


def dead(p: int) -> str:
    return f"omni:dead:{{p{p}}}"


def events(p: int) -> str:
    return f"omni:ev:{{p{p}}}"


def event_seen(p: int, event_id: str) -> str:
    return f"omni:evs:{{p{p}}}:{event_id}"


def delivery_attempts(p: int) -> str:
    return f"omni:wha:{{p{p}}}"


def delivery_dead(p: int) -> str:
    return f"omni:whdead:{{p{p}}}"


def delivery_counts(p: int) -> str:
    return f"omni:whm:{{p{p}}}"


CAMPAIGNS = "omni:campaigns"


def campaign(campaign_id: str) -> str:
    return f"omni:campaign:{campaign_id}"


def campaign_due(p: int) -> str:
    return f"omni:cmpdue:{{p{p}}}"


def campaign_stats(campaign_id: str) -> str:
    return f"omni:cmpstat:{{{campaign_id}}}"


def campaign_seen(campaign_id: str) -> str:
    return f"omni:cmpseen:{{{campaign_id}}}"


def campaign_read_times(campaign_id: str, channel: str) -> str:
    return f"omni:cmpttr:{{{campaign_id}}}:{channel}"


def campaign_states(cid: str) -> str:
    return f"omni:{{{cid}}}:cmp"


def outbox(cid: str) -> str:
    return f"omni:{{{cid}}}:ev"


def lease(p: int) -> str:
    return f"omni:lease:{p}"


def rate_bucket(channel: str, sender: str, chat: str | None = None) -> str:
    return f"omni:rl:{channel}:{sender}" + (f":{chat}" if chat is not None else "")


AGENTS = "omni:agents"
AGENTS_SEEN = "omni:agents:seen"
TEAMS = "omni:teams"
SLA = "omni:sla"
ROUTER_LEASE = "omni:lease:router"


def agent(agent_id: str) -> str:
    return f"omni:agent:{{a{agent_id}}}"


def agent_load(agent_id: str) -> str:
    return f"omni:agent:{{a{agent_id}}}:load"


def agent_email(email: str) -> str:
    return f"omni:agent:email:{email.strip().lower()}"


RASA_FALLBACKS = "omni:rasa:fallbacks"
