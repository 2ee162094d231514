"""`docs/events.md`, the event catalogue, written from the models in `bot.crm.events` (and the test
ping): how an event reaches a receiver, then per type when it happens, its fields and JSON Schema.

`render()` is a pure function of the models, so the file can be checked as well as written
(`omnihub events catalogue --check`, and a test): the catalogue cannot drift from what is sent.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from bot.crm.events import EVENT_TYPES, EventData
from bot.crm.ping import Ping
from bot.settings import SVIX_SCHEDULE

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "events.md"

INTRO = """\
# The event feed: catalogue

<!-- Generated from bot/crm/events.py by `omnihub events catalogue`; do not edit by hand. -->

Omnihub tells a CRM what happens — contacts, consent, messages, conversations, ratings,
conversions — by POSTing one event per request to each webhook subscription that wants its type
(`POST /api/v1/webhooks`, `omnihub webhooks add`, or `crm.webhooks` in the configuration file).

## The envelope

Every request body is a [CloudEvents 1.0](https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md)
event in structured JSON mode (`content-type: application/cloudevents+json`):

```json
{
  "specversion": "1.0",
  "id": "0b5e8f0e-8a38-5d7e-9a53-1f4c3c8a2f11",
  "source": "/omnihub",
  "type": "omnihub.message.received",
  "time": "2026-03-01T12:00:00.000Z",
  "subject": "c_7f3a9e",
  "datacontenttype": "application/json",
  "data": {"message_id": "1740830400000-0", "contact_id": "c_7f3a9e", "channel": "telegram", "text": "hello"}
}
```

- `subject` is the contact's id: every event is about one contact (a webhook's own events are about
  the subscription, and carry its id).
- `id` is derived from what caused the event (the inbound message, the command, the merge): the
  same cause always gives the same id, so an event sent again — a retry, a redelivered dead letter,
  a replay — is recognisable as one already seen.
- `data` is the type's model below. Optional fields without a value are left out. Fields may be
  added in later versions; a receiver should ignore the ones it does not know.

## Headers and signature (Standard Webhooks)

Each request is signed as [Standard Webhooks](https://www.standardwebhooks.com/) prescribes:

| header | value |
|---|---|
| `webhook-id` | the event's `id`, the same on every retry |
| `webhook-timestamp` | seconds since the epoch, of this attempt |
| `webhook-signature` | `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" keyed by the \
base64-decoded secret>` |

The secret is `whsec_<base64>`, shown once when the subscription is made (and when it is rotated).
During a rotation (24 hours) `webhook-signature` carries one signature per secret, separated by
spaces; one that verifies is enough.

To verify in Python with the [`standardwebhooks`](https://pypi.org/project/standardwebhooks/) package:

```python
from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook("whsec_...")  # the subscription's secret
event = webhook.verify(body, headers)  # the raw body (bytes) and the request's headers; raises if forged or stale
if not already_seen(headers["webhook-id"]):  # at-least-once: drop what you had
    handle(event["type"], event["subject"], event["data"])
```

## Delivery

- **2xx** means delivered. **410 Gone** disables the subscription (`omnihub.webhook.disabled` goes
  to the other subscriptions). Anything else, or no answer within `crm.timeout_seconds` (15 s), is
  retried.
- **Retries**: after a failed attempt the next comes, in turn,
  {schedule} later ({attempts} attempts in all; `crm.retry_schedule_seconds`),
  or after the receiver's `Retry-After` when that is later. After the last attempt the event is a
  dead letter: `omnihub events dead` lists them, `omnihub events redeliver` sends one again.
  A subscription that fails for `crm.disable_after_days` (5) without one success is disabled.
- **Ordering**: the events of one contact arrive in the order they happened, one at a time; a
  contact's next event waits while an earlier one is retried. Different contacts' events travel
  in parallel, so events of different contacts may interleave in any order.
- **At least once**: a crash between a delivery and its record sends the event again, with the
  same `webhook-id`. Deduplicate by it.
- **Replays**: `omnihub events replay --subscription ID --since 2h` sends everything since then again
  (delivered events are kept `crm.retention_hours`, 72 h); the copies have their original ids.
- A subscription receives the event types it named (`omnihub.message.*` matches a family, `*` all).

## Event types

| type | when |
|---|---|
{index}
"""


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "immediately"
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _when(model: type[EventData]) -> str:
    return inspect.cleandoc(model.__doc__ or "").replace("\n", " ")


def _anchor(event_type: str) -> str:
    return "#" + event_type.replace(".", "")


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A property's schema in a few words."""
    if "$ref" in schema:
        return "object"
    if "anyOf" in schema:
        return " or ".join(_type(s, defs) for s in schema["anyOf"] if s.get("type") != "null")
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}), defs)}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of string to {_type(schema['additionalProperties'], defs)}"
    bounds = [f"≥ {schema['minimum']}"] if "minimum" in schema else []
    bounds += [f"≤ {schema['maximum']}"] if "maximum" in schema else []
    return f"{kind} ({' '.join(bounds)})" if bounds else str(kind)


def _target(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The object a property (or its array's items) refers to, whose fields are listed under it."""
    for candidate in (schema, schema.get("items", {}), *schema.get("anyOf", [])):
        ref = candidate.get("$ref")
        if ref:
            found: dict[str, Any] = defs[ref.rsplit("/", 1)[-1]]
            return found
    return None


def _rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> list[str]:
    rows: list[str] = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        nested = _target(prop, defs)
        suffix = "[]" if prop.get("type") == "array" and nested else ""
        words = prop.get("description", "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {_type(prop, defs)} | {'yes' if name in required else ''} | {words} |")
        if nested is not None:
            rows.extend(_rows(nested, defs, f"{prefix}{name}{suffix}."))
    return rows


def _section(model: type[EventData]) -> str:
    schema = model.model_json_schema()
    rows = _rows(schema, schema.get("$defs", {}))
    table = "\n".join(["| field | type | required | notes |", "|---|---|---|---|", *rows])
    return (f"### {model.type}\n\n{_when(model)}\n\n{table}\n\n<details><summary>JSON Schema of "
            f"<code>data</code></summary>\n\n```json\n{json.dumps(schema, indent=2, ensure_ascii=False)}\n```\n\n"
            "</details>\n")


def render() -> str:
    """The whole of docs/events.md."""
    models: list[type[EventData]] = [*EVENT_TYPES.values(), Ping]
    index = "\n".join(f"| [`{m.type}`]({_anchor(m.type)}) | {_when(m)} |" for m in models)
    filled = {"{schedule}": ", ".join(_duration(s) for s in SVIX_SCHEDULE[1:]),
              "{attempts}": str(len(SVIX_SCHEDULE)), "{index}": index}
    intro = INTRO
    for slot, text in filled.items():  # not str.format: the intro's JSON example is full of braces
        intro = intro.replace(slot, text)
    sections = [_section(m) for m in EVENT_TYPES.values()]
    ping = ("## Outside the feed\n\nSent only when someone tests a subscription; never retried, never "
            "replayed.\n\n" + _section(Ping))
    return intro + "\n" + "\n".join(sections) + "\n" + ping


def write(path: Path = DEFAULT_PATH) -> None:
    path.write_text(render(), encoding="utf-8")


def difference(path: Path = DEFAULT_PATH) -> str | None:
    """None when `path` is what the models make; else the first difference, in one line."""
    if not path.exists():
        return f"{path} does not exist"
    have, want = path.read_text(encoding="utf-8").splitlines(), render().splitlines()
    for number, (old, new) in enumerate(zip(have, want, strict=False), 1):
        if old != new:
            return f"{path} line {number} is {old[:80]!r}; the models make {new[:80]!r}"
    if len(have) != len(want):
        return f"{path} has {len(have)} lines; the models make {len(want)}"
    return None
