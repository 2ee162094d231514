"""A loopback Bitrix24 portal as an inbound webhook sees it: the REST wire format, its errors and its limit.

`/rest/{user}/{code}/{method}` with or without `.json`, by GET (query) or POST (JSON, or a form body
with PHP-style keys `fields[PHONE][0][VALUE]`), answered `{"result": ..., "time": {...}}` or
`{"error", "error_description"}` with the HTTP status the docs give (tests/payloads/bitrix24 holds
the recorded shapes). A wrong user or code is 401 NO_AUTH_FOUND; an unknown method 404.

Methods: `crm.duplicate.findbycomm`, `crm.contact.add` / `update` / `get`, `crm.lead.add`,
`crm.timeline.comment.add` and `batch` (`cmd` of `method?query`, `halt`, `$result[cmd][field]`
references, at most 50). As on a portal, unknown fields are ignored — custom `UF_` fields only exist
if named in `user_fields` — and a PHONE/IM value without ID is added to the contact's, with ID replaced
or (with DELETE=Y or an empty VALUE) removed. Contacts, leads and comments live in memory.

The request limit is the docs' leaky bucket: each request adds 1 to a counter that drains by `rate`
per second; a request that would take it over `threshold` gets 503 QUERY_LIMIT_EXCEEDED.

Control routes (not Bitrix24): `GET /_/state` (contacts, leads, comments, and every request with its
time and status) and `POST /_/faults` (`{"status": 503}` answers QUERY_LIMIT_EXCEEDED, 500
INTERNAL_SERVER_ERROR, 429 OPERATION_TIME_LIMIT, 401 expired_token, 403 INVALID_CREDENTIALS).
"""

from __future__ import annotations

import hmac
import itertools
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox.emulator_kit import ControlError, Fault, Faults, json_response, read_model

Params = dict[str, Any]
BATCH_MAX = 50
COMMON_FIELDS = frozenset({"NAME", "LAST_NAME", "SECOND_NAME", "TITLE", "SOURCE_ID", "SOURCE_DESCRIPTION",
                           "COMMENTS", "TYPE_ID", "STATUS_ID", "ASSIGNED_BY_ID", "OPENED", "ORIGINATOR_ID",
                           "ORIGIN_ID", "CONTACT_ID", "COMPANY_ID"})
MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM")
_FAULTS = {503: ("QUERY_LIMIT_EXCEEDED", "Too many requests"),
           500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
           429: ("OPERATION_TIME_LIMIT", "Accumulated method execution time exceeded the limit"),
           401: ("expired_token", "The access token provided has expired"),
           403: ("INVALID_CREDENTIALS", "Invalid request credentials")}
_REFERENCE = re.compile(r"\$result\[(\w+)\]((?:\[\w+\])*)")


class B24Error(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def body(self) -> Params:
        return {"error": self.error, "error_description": self.description}


class LeakyBucket:
    """Bitrix24's request counter: +1 per request, draining `rate` per second, `threshold` at most."""

    def __init__(self, rate: float, threshold: int) -> None:
        self.rate, self.threshold = rate, threshold
        self.level, self._at = 0.0, time.monotonic()

    def admit(self) -> bool:
        now = time.monotonic()
        self.level, self._at = max(0.0, self.level - (now - self._at) * self.rate), now
        if self.level + 1 > self.threshold:
            return False
        self.level += 1
        return True


class Bitrix24Emulator:
    def __init__(self, user: str, code: str, rate: float, threshold: int, user_fields: frozenset[str]) -> None:
        self.user, self._code = user, code.encode()
        self.bucket = LeakyBucket(rate, threshold)
        self.user_fields = user_fields
        self.faults = Faults()
        self.contacts: dict[int, Params] = {}
        self.leads: dict[int, Params] = {}
        self.comments: dict[int, Params] = {}
        self.requests: list[Params] = []  # {"at": epoch seconds, "method", "status"}
        self._ids = {kind: itertools.count(1) for kind in ("contact", "lead", "comment", "multifield")}
        self.methods: dict[str, Callable[[Params], Awaitable[Any]]] = {
            "crm.duplicate.findbycomm": self._findbycomm,
            "crm.contact.add": self._contact_add,
            "crm.contact.update": self._contact_update,
            "crm.contact.get": self._contact_get,
            "crm.lead.add": self._lead_add,
            "crm.timeline.comment.add": self._comment_add,
        }

    # --- the REST API ----------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        method = request.path_params["method"].removesuffix(".json")
        started = time.time()
        fault = self.faults.take()
        if fault is not None:
            error, description = _FAULTS.get(fault.status, ("", "Bad request"))
            status, body, headers = fault.status, {"error": error, "error_description": description}, fault.headers()
        else:
            (status, body), headers = await self._answer(request, method, started), None
        self.requests.append({"at": started, "method": method, "status": status})
        return json_response(body, status, headers)

    async def _answer(self, request: Request, method: str, started: float) -> tuple[int, Params]:
        if not self.bucket.admit():
            return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        code = request.path_params["code"].encode()
        if request.path_params["user"] != self.user or not hmac.compare_digest(code, self._code):
            return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}
        try:
            params = await _params(request)
            if method == "batch":
                result = await self._batch(params)
            elif method in self.methods:
                result = await self.methods[method](params)
            else:
                raise B24Error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        except B24Error as refusal:
            return refusal.status, refusal.body()
        return 200, {"result": result, "time": _time(started)}

    async def _batch(self, params: Params) -> Params:
        commands = params.get("cmd")
        if isinstance(commands, list):
            commands = {str(i): c for i, c in enumerate(commands)}
        if not isinstance(commands, dict) or not commands:
            raise B24Error(400, "INVALID_ARG_VALUE", "Parameter 'cmd' must be a non-empty array")
        if len(commands) > BATCH_MAX:
            raise B24Error(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = str(params.get("halt", "0")).lower() in ("1", "true", "y")
        results: Params = {}
        errors: Params = {}
        times: Params = {}
        for name, command in commands.items():
            started = time.time()
            method, _, query = str(command).partition("?")
            try:
                if method == "batch":
                    raise B24Error(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                handler = self.methods.get(method)
                if handler is None:
                    raise B24Error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
                results[name] = await handler(php_parse(_resolve(query, results)))
                times[name] = _time(started)
            except B24Error as refusal:
                errors[name] = refusal.body()
                if halt:
                    break
        # PHP's empty arrays are JSON lists: an empty part of the answer is [] on a real portal too
        return {"result": results or [], "result_error": errors or [], "result_total": [], "result_next": [],
                "result_time": times or []}

    async def _findbycomm(self, params: Params) -> Any:
        kind = str(params.get("type") or "")
        if not kind:
            raise B24Error(400, "Communication type is not defined", "Parameter 'type' is required.")
        if kind not in ("PHONE", "EMAIL"):
            raise B24Error(400, f"Communication type '{kind}' is not supported in current context", "")
        values = params.get("values")
        if not isinstance(values, list) or not values:
            raise B24Error(400, "Communication values is not defined", "Parameter 'values' is required.")
        wanted = {_comparable(kind, str(v)) for v in values[:20]}
        found: Params = {}
        entity = str(params.get("entity_type") or "")
        for name, records in (("LEAD", self.leads), ("CONTACT", self.contacts)):
            if entity in ("", name):
                ids = [i for i, r in records.items()
                       if wanted & {_comparable(kind, v["VALUE"]) for v in r.get(kind, [])}]
                if ids:
                    found[name] = ids[:20]
        return found or []

    async def _contact_add(self, params: Params) -> int:
        fields = _fields(params)
        contact_id = next(self._ids["contact"])
        now = _now()
        self.contacts[contact_id] = {"ID": str(contact_id), "DATE_CREATE": now, "DATE_MODIFY": now}
        self._apply(self.contacts[contact_id], fields)
        return contact_id

    async def _contact_update(self, params: Params) -> bool:
        contact = self.contacts.get(_id(params))
        fields = _fields(params)
        if contact is None:
            raise B24Error(400, "", "Contact is not found")
        self._apply(contact, fields)
        contact["DATE_MODIFY"] = _now()
        return True

    async def _contact_get(self, params: Params) -> Params:
        contact = self.contacts.get(_id(params))
        if contact is None:
            raise B24Error(400, "", "Not found")
        return contact

    async def _lead_add(self, params: Params) -> int:
        fields = _fields(params)
        lead_id = next(self._ids["lead"])
        self.leads[lead_id] = {"ID": str(lead_id), "STATUS_ID": "NEW", "DATE_CREATE": _now()}
        self._apply(self.leads[lead_id], fields)
        return lead_id

    async def _comment_add(self, params: Params) -> int:
        fields = params.get("fields")  # since crm 23.100.0 only the lowercase key
        if not isinstance(fields, dict):
            raise B24Error(400, "100", "Required fields are not provided")
        owners = {"contact": self.contacts, "lead": self.leads}.get(str(fields.get("ENTITY_TYPE", "")).lower())
        if not fields.get("ENTITY_ID") or owners is None:
            raise B24Error(400, "100", "Required fields are not provided")
        if not str(fields.get("COMMENT") or "").strip():
            raise B24Error(400, "INVALID_ARG_VALUE", "Empty comment")
        if int(fields["ENTITY_ID"]) not in owners:
            raise B24Error(400, "NOT_FOUND", "Not found.")
        comment_id = next(self._ids["comment"])
        self.comments[comment_id] = {"ID": comment_id, "ENTITY_TYPE": str(fields["ENTITY_TYPE"]).lower(),
                                     "ENTITY_ID": int(fields["ENTITY_ID"]), "COMMENT": str(fields["COMMENT"]),
                                     "CREATED": _now()}
        return comment_id

    def _apply(self, record: Params, fields: Params) -> None:
        """Write `fields` as a portal does: unknown ones ignored, multifield values added/replaced/removed."""
        for name, value in fields.items():
            if name in COMMON_FIELDS or name in self.user_fields:
                record[name] = value
            elif name in MULTIFIELDS and isinstance(value, list):
                self._multifield(record, name, value)

    def _multifield(self, record: Params, kind: str, changes: list[Any]) -> None:
        values: list[Params] = record.setdefault(kind, [])
        for change in changes:
            if not isinstance(change, dict):
                continue
            existing = next((v for v in values if change.get("ID") and v["ID"] == str(change["ID"])), None)
            if existing is not None and (change.get("DELETE") == "Y" or not change.get("VALUE")):
                values.remove(existing)
            elif existing is not None:
                existing.update(VALUE=str(change["VALUE"]), VALUE_TYPE=str(change.get("VALUE_TYPE") or "WORK"))
            elif change.get("VALUE"):
                values.append({"ID": str(next(self._ids["multifield"])), "VALUE_TYPE": str(change.get("VALUE_TYPE")
                               or "WORK"), "VALUE": str(change["VALUE"]), "TYPE_ID": kind})

    # --- control ---------------------------------------------------------------------------------
    async def state(self, request: Request) -> Response:
        return json_response({"contacts": list(self.contacts.values()), "leads": list(self.leads.values()),
                              "comments": list(self.comments.values()), "requests": self.requests})

    async def set_fault(self, request: Request) -> Response:
        self.faults.add(await read_model(request, Fault))
        return json_response({"ok": True})


def create_bitrix24_emulator(
    user: str = "1",
    code: str = "sandboxcode",
    *,
    rate: float = 2.0,
    threshold: int = 50,
    user_fields: frozenset[str] = frozenset({"UF_CRM_OMNIHUB_CONSENT", "UF_CRM_OMNIHUB_LANG"}),
) -> Starlette:
    """The emulator as an ASGI app; `app.state.emulator` is the `Bitrix24Emulator`. The hub's webhook
    URL for it is `<base>/rest/<user>/<code>/`."""
    emulator = Bitrix24Emulator(user, code, rate, threshold, user_fields)
    app = Starlette(
        routes=[
            Route("/_/state", emulator.state, methods=["GET"]),
            Route("/_/faults", emulator.set_fault, methods=["POST"]),
            Route("/rest/{user}/{code}/{method}", emulator.api, methods=["GET", "POST"]),
        ],
        exception_handlers={ControlError: _control_error},
    )
    app.state.emulator = emulator
    return app


async def _control_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ControlError)  # registered for ControlError only
    return exc.response()


async def _params(request: Request) -> Params:
    """The call's parameters: the query string, then a JSON or form body over it."""
    params = php_parse(request.url.query)
    body = await request.body()
    if not body:
        return params
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise B24Error(400, "INVALID_REQUEST", "Body is not valid JSON") from None
        if not isinstance(data, dict):
            raise B24Error(400, "INVALID_REQUEST", "Body must be a JSON object")
        return {**params, **data}
    return {**params, **php_parse(body.decode())}


def php_parse(query: str) -> Params:
    """PHP's reading of `a[b][0][c]=v&a[b][]=w` into nested objects (all-digit keys become lists)."""
    root: Params = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        name, _, rest = key.partition("[")
        path = [name, *re.findall(r"([^\[\]]*)\]", "[" + rest)] if rest else [name]
        node = root
        for part in path[:-1]:  # an empty part (`a[]`) is the next index
            node = node.setdefault(part or str(len(node)), {})
        node[path[-1] or str(len(node))] = value
    parsed: Params = _listify(root)
    return parsed


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {k: _listify(v) for k, v in value.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _resolve(query: str, results: Params) -> str:
    """`$result[cmd][field]...` in a batch command: the value an earlier command returned."""

    def value(match: re.Match[str]) -> str:
        found: Any = results.get(match.group(1))
        for part in re.findall(r"\[(\w+)\]", match.group(2)):
            found = found[int(part)] if isinstance(found, list) and part.isdigit() else \
                (found.get(part) if isinstance(found, dict) else None)
        return "" if found is None else str(found)

    return _REFERENCE.sub(value, query)


def _fields(params: Params) -> Params:
    fields = params.get("fields", params.get("FIELDS"))
    if not isinstance(fields, dict):
        raise B24Error(400, "", "Parameter 'fields' must be array.")
    return fields


def _id(params: Params) -> int:
    raw = params.get("id", params.get("ID"))
    try:
        return int(str(raw))
    except ValueError:
        raise B24Error(400, "", "ID is not defined or invalid.") from None


def _comparable(kind: str, value: str) -> str:
    return "".join(c for c in value if c.isdigit()) if kind == "PHONE" else value.strip().lower()


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def _time(started: float) -> Params:
    finish = time.time()
    return {"start": started, "finish": finish, "duration": finish - started, "processing": finish - started,
            "date_start": datetime.fromtimestamp(started, UTC).astimezone().isoformat(timespec="seconds"),
            "date_finish": datetime.fromtimestamp(finish, UTC).astimezone().isoformat(timespec="seconds"),
            "operating_reset_at": int(started) + 600, "operating": 0}
