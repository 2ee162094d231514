"""`/api/v1/dead-letters`: entries that failed every attempt — inspect, put back, or drop them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, NoReturn

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from bot.api.deps import ApiKey, HubDep
from bot.pipeline.dead_letters import BadLetterId, StoredLetter

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])


class DeadLetterOut(BaseModel):
    id: str
    partition: int
    entry_id: str
    contact_id: str
    kind: str  # "event" or "command"
    body: str
    error: str
    attempts: int
    at: float


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]


def _out(stored: StoredLetter) -> DeadLetterOut:
    letter = stored.letter
    kind, body = ("command", letter.body["k"]) if "k" in letter.body else ("event", letter.body.get("e", ""))
    return DeadLetterOut(id=stored.id, partition=stored.partition, entry_id=letter.entry_id,
                         contact_id=letter.contact_id, kind=kind, body=body, error=letter.error,
                         attempts=letter.attempts, at=letter.at)


@router.get("", response_model=DeadLetterList)
async def list_dead_letters(hub: HubDep, _: ApiKey, limit: Annotated[int, Query(ge=1, le=1000)] = 100
                            ) -> DeadLetterList:
    return DeadLetterList(items=[_out(s) for s in await hub.dead_letters.list(limit)])


@router.post("/{letter_id}/retry", status_code=202)
async def retry_dead_letter(letter_id: str, hub: HubDep, _: ApiKey) -> Response:
    """Put the entry back on its partition (behind what the contact sent since)."""
    with letter_answers():
        found = await hub.dead_letters.retry(letter_id)
    return Response(status_code=202) if found else _missing(letter_id)


@router.delete("/{letter_id}", status_code=204)
async def drop_dead_letter(letter_id: str, hub: HubDep, _: ApiKey) -> Response:
    with letter_answers():
        found = await hub.dead_letters.drop(letter_id)
    return Response(status_code=204) if found else _missing(letter_id)


@contextlib.contextmanager
def letter_answers() -> Iterator[None]:
    try:
        yield
    except BadLetterId as exc:
        raise HTTPException(422, str(exc)) from None


def _missing(letter_id: str) -> NoReturn:
    raise HTTPException(404, f"no dead letter {letter_id!r}")
